"""Zip archives → their image members, extracted into the cache.

An archive is hostile until proven otherwise: a member named `../x` or `/x` (zip slip) refuses the
whole archive, and so does one that would expand past MAX_ZIP_BYTES in total or MAX_ZIP_RATIO
times its compressed size (zip bomb). Header sizes are checked before anything is written and the
bytes are counted again while extracting, since headers can lie. Only image files are extracted,
in natural order ("p2" before "p10"), into `cache/zip/<sha256 of the archive>/`.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..config import Config
from .cache import build_once, sha256_file
from .names import IMAGE_SUFFIXES, natural_key, slugify, unique
from .sources import DocumentError, ImageSource, check_count

CHUNK = 1 << 20
CORRUPT_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def zip_sources(path: Path, doc_uid: str, cfg: Config) -> list[ImageSource]:
    """The images of the zip at `path`, extracted once per distinct archive."""
    folder = cfg.cache_folder / "zip" / sha256_file(path)
    files = build_once(folder, lambda tmp: _extract(path, tmp, cfg))
    return [ImageSource(doc_uid=doc_uid, name=f.stem, index=i, path=f) for i, f in enumerate(files)]


def _extract(path: Path, dest: Path, cfg: Config) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = _image_members(archive.infolist())
            check_count(len(members), cfg)
            _check_declared_sizes(members, cfg)
            taken: set[str] = set()
            names, budget = [], cfg.max_zip_bytes
            for info in members:
                name = unique(_member_stem(info.filename), taken) + PurePosixPath(info.filename).suffix.lower()
                budget -= _copy_member(archive, info, dest / name, budget, cfg)
                names.append(name)
            return names
    except CORRUPT_ZIP as exc:  # RuntimeError: an encrypted member
        raise DocumentError(f"not a readable zip archive: {exc}") from None


def _image_members(infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The image files, naturally sorted; refuses the archive if any member path is unsafe."""
    members = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise DocumentError(f"the zip member {info.filename!r} has an unsafe path (absolute or with '..')")
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
        if not info.is_dir() and not hidden and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
            members.append(info)
    return sorted(members, key=lambda info: natural_key(info.filename))


def _check_declared_sizes(members: list[zipfile.ZipInfo], cfg: Config) -> None:
    total = sum(info.file_size for info in members)
    if total > cfg.max_zip_bytes:
        raise DocumentError(f"the zip's images take {total} bytes uncompressed; the limit is "
                            f"{cfg.max_zip_bytes} (MAX_ZIP_BYTES)")
    for info in members:
        if info.file_size > cfg.max_zip_ratio * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise DocumentError(f"the zip member {info.filename!r} expands {ratio} times; "
                                f"the limit is {cfg.max_zip_ratio} (MAX_ZIP_RATIO)")


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, cfg: Config) -> int:
    """Extract one member, counting what really comes out; the bytes written."""
    limit = min(budget, cfg.max_zip_ratio * max(info.compress_size, 1))
    written = 0
    with archive.open(info) as source, open(target, "wb") as out:
        while block := source.read(CHUNK):
            written += len(block)
            if written > limit:
                raise DocumentError(f"the zip member {info.filename!r} expands past the limits "
                                    "(MAX_ZIP_BYTES, MAX_ZIP_RATIO)")
            out.write(block)
    return written


def _member_stem(filename: str) -> str:
    """"scans/p 1.jpg" → "scans_p_1": the member's path without extension, as one safe name."""
    path = PurePosixPath(filename.replace("\\", "/"))
    return slugify("_".join([*path.parent.parts, path.stem]), "image")
