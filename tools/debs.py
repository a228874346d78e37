"""Debian packages as a source of real test material: downloaded by name and pinned version with
apt-get (the ordinary Debian client), checked against a SHA-256 we wrote down, unpacked with
`dpkg -x` into a folder of ours. Nothing is installed system-wide."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

COMPLETE = ".complete"  # the marker of a folder put in place whole


class FetchError(RuntimeError):
    """A package could not be had; the message says which and why."""


def download_unpacked(package: str, version: str, digest: str, work: Path) -> Path:
    """`work/x`: the package's files, after its .deb's checksum matched `digest`."""
    deb = _download(package, version, work)
    actual = hashlib.sha256(deb.read_bytes()).hexdigest()
    if actual != digest:
        raise FetchError(f"{deb.name}: sha256 {actual} is not the expected {digest}")
    unpacked = work / "x"
    subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
    return unpacked


def _download(package: str, version: str, folder: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise FetchError(f"apt-get is needed to fetch {package} (a Debian package)")
    spec = f"{package}={version}"
    for attempt in range(2):  # a fresh machine's package lists may be missing: update once
        result = subprocess.run(["apt-get", "download", spec], cwd=folder, capture_output=True, text=True,
                                check=False)
        found = sorted(folder.glob(f"{package}_*.deb"))
        if result.returncode == 0 and found:
            return found[0]
        if attempt == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
    raise FetchError(f"apt-get download {spec} failed: {result.stderr.strip()[-400:]}")


def complete(root: Path) -> bool:
    """Whether `root` was put in place whole by `publish` (an interrupted fetch leaves no marker)."""
    return (root / COMPLETE).exists()


def publish(folder: Path, root: Path, digest: str) -> None:
    """Move the finished `folder` to `root`, its marker already inside, so that `root` appears whole
    or not at all: two fetches at once (two benches, a test beside a bench) each unpack their own
    copy, the first to arrive stays and the second's is dropped with its temporary folder."""
    (folder / COMPLETE).write_text(digest + "\n")
    if complete(root):
        return
    if root.exists():  # what an interrupted fetch of an older layout left
        shutil.rmtree(root, ignore_errors=True)
    try:
        folder.rename(root)
    except OSError:
        if not complete(root):
            raise
