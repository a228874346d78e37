"""Result files: where they live, how they are written (atomically) and how they are served.

Layout: `DATA_FOLDER/results/<app>/<tracking_id>/` holds `job.json`, the demo's outputs and, once
the job succeeded, `result.zip`. Every file appears whole or not at all (temp file, then rename),
so a reader never sees half a result, even if a worker is killed mid-write.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Iterator
from urllib.parse import quote

from flask import Response, send_file

from .config import Config
from .errors import InputError, NotFound

TRACKING_ID = re.compile(r"^[0-9a-f]{32}$")
APP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ZIP_NAME = "result.zip"
JOB_FILE = "job.json"
TEMP_PREFIX = ".tmp-"
# Served as downloads, never rendered inline by the API's origin (they could carry script).
ATTACHMENT_SUFFIXES = {".svg", ".html", ".htm", ".xml", ".xhtml", ".js"}


def is_tracking_id(value: str) -> bool:
    return bool(TRACKING_ID.match(value or ""))


def job_folder(cfg: Config, app: str, tracking_id: str) -> Path:
    """The job's result folder; ids are validated before they touch the disk."""
    if not APP_NAME.match(app) or not is_tracking_id(tracking_id):
        raise NotFound(f"no job {tracking_id!r} in {app!r}")
    return cfg.results_folder / app / tracking_id


def safe_relpath(relpath: str) -> PurePosixPath:
    """A relative path with no `..`, no absolute root, no backslash, no hidden temp file."""
    path = PurePosixPath(relpath)
    if (not relpath or path.is_absolute() or "\\" in relpath or "\x00" in relpath
            or any(part in ("", ".", "..") for part in relpath.split("/"))
            or any(part.startswith(TEMP_PREFIX) for part in path.parts)):
        raise InputError("path", f"not a safe relative path: {relpath!r}")
    return path


def safe_join(root: Path, relpath: str) -> Path:
    target = root.joinpath(*safe_relpath(relpath).parts)
    if not target.resolve().is_relative_to(root.resolve()):  # a symlink pointing out
        raise InputError("path", f"not a safe relative path: {relpath!r}")
    return target


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file beside `path`, fsync, then rename over it; on error, leave nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str))


def result_files(folder: Path) -> list[Path]:
    """Every finished file of a job (temp files and the zip itself left out), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(TEMP_PREFIX) and p != folder / ZIP_NAME)


def build_zip(folder: Path) -> Path:
    """`result.zip` of the job's files, built once when the job ends."""
    target = folder / ZIP_NAME
    with atomic_open(target) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in result_files(folder):
            archive.write(path, path.relative_to(folder).as_posix())
    return target


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def serve_file(cfg: Config, app: str, tracking_id: str, relpath: str, *, download_name: str | None = None) -> Response:
    """The file, through nginx (`X-Accel-Redirect`) when USE_XACCEL is on, else by Flask."""
    path = safe_join(job_folder(cfg, app, tracking_id), relpath)
    if not path.is_file():
        raise NotFound(f"no file {relpath!r} in job {tracking_id}")
    name = download_name or path.name
    attachment = path.suffix.lower() in ATTACHMENT_SUFFIXES or relpath == ZIP_NAME
    if cfg.use_xaccel:
        response = _accel(cfg, f"{app}/{tracking_id}/{quote(relpath)}",
                          f'attachment; filename="{name}"' if attachment else None)
    else:
        response = send_file(path, as_attachment=attachment, download_name=name, conditional=True, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def serve_data_file(cfg: Config, path: Path, download_name: str) -> Response:
    """A file elsewhere in DATA_FOLDER (the input cache, uploads), through nginx when USE_XACCEL is
    on: `X-Accel-Redirect: <XACCEL_PREFIX>/_data/<path in DATA_FOLDER>` (an internal location)."""
    relative = path.resolve().relative_to(cfg.data_folder.resolve())
    if cfg.use_xaccel:
        response = _accel(cfg, f"_data/{quote(relative.as_posix())}", f'inline; filename="{download_name}"')
    else:
        response = send_file(path, download_name=download_name, conditional=True, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def clear_job_files(cfg: Config, app: str, tracking_id: str) -> int:
    """Delete a job's results and uploads; returns the bytes freed."""
    freed = 0
    for folder in (job_folder(cfg, app, tracking_id), cfg.uploads_folder / tracking_id):
        if folder.is_dir():
            freed += folder_size(folder)
            shutil.rmtree(folder, ignore_errors=True)
    return freed


def _accel(cfg: Config, internal: str, disposition: str | None) -> Response:
    """An empty answer that lets nginx send the file at XACCEL_PREFIX/<internal> itself."""
    response = Response(status=200)
    response.headers["X-Accel-Redirect"] = f"{cfg.xaccel_prefix.rstrip('/')}/{internal}"
    response.headers["Content-Type"] = ""  # let nginx pick it from the extension
    if disposition:
        response.headers["Content-Disposition"] = disposition
    return response
