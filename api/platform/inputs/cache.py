"""Folders of derived files (extracted zip members, rendered PDF pages), built once and shared.

A folder is keyed by the sha256 of its source file, built in a temp folder beside it and renamed
into place with its index, so it is either complete or absent: a killed worker leaves no half
folder, and of two workers building the same one, the first rename wins and the other's is dropped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..storage import TEMP_PREFIX, atomic_write

INDEX = "index.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mark_used(entry: Path) -> None:
    """Record that a job read this cache entry now: the mtime of its folder is its last use, which
    the retention sweeper evicts by, least recently used first (atime is no use: relatime and
    noatime mounts do not keep it). A failure only makes the entry look older."""
    with contextlib.suppress(OSError):
        os.utime(entry)


def build_once(folder: Path, build: Callable[[Path], list[str]]) -> list[Path]:
    """The files of `folder`, in order; `build(tmp)` writes them into an empty folder and returns
    their names, unless a complete `folder` already exists. `build`'s exceptions pass through."""
    index = folder / INDEX
    if not index.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=folder.parent))
        try:
            atomic_write(tmp / INDEX, json.dumps(build(tmp)))
            try:
                os.replace(tmp, folder)
            except OSError:
                if not index.is_file():  # not "someone else finished first"
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    mark_used(folder)
    return [folder / name for name in json.loads(index.read_text())]
