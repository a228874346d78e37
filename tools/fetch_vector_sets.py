#!/usr/bin/env python3
"""Fetch the real vector collections the vectorization evaluation renders (cached, checksummed).

Three Debian packages hold real drawings with exact geometry:
- kicad-symbols: KiCad's schematic symbol library (.kicad_sym: polylines, rectangles, circles,
  three-point arcs, pins) — a tuning collection;
- kicad-footprints: KiCad's PCB footprint library (.kicad_mod: lines, rectangles, circles,
  three-point arcs on the fabrication layer; pads) — a tuning collection;
- librecad-data: LibreCAD's parts library (.dxf: LINE, ARC, CIRCLE, bulged LWPOLYLINE, ELLIPSE,
  TEXT) — held out of tuning.

Each .deb is downloaded with apt-get (the ordinary Debian client, by name and pinned version),
its SHA-256 checked against the value below, and unpacked with `dpkg -x` into the cache folder
(never installed system-wide). A second run finds the unpacked folder and does nothing.

    python tools/fetch_vector_sets.py [--cache DIR]      # prints the folder of each collection

The cache is $VECTOR_SETS_CACHE, else ~/.cache/vector-sets.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.debs import FetchError, complete, download_unpacked, publish

# name: (Debian package, version, sha256 of the .deb, folder inside the package)
PACKAGES = {
    "kicad": ("kicad-symbols", "6.0.10-1",
              "173f87b977361e65518ca4726b1f435b085e0d5c748bc44a043d334e6a5de164", "usr/share/kicad/symbols"),
    "footprints": ("kicad-footprints", "6.0.11-1",
                   "06c022eae7d40181238f86dc4d2d4d257364880ab89b9e41f553b690e5c502c1", "usr/share/kicad/footprints"),
    "librecad": ("librecad-data", "2.2.0-1",
                 "b70127aabec619cf830c6316ac1866b0871d9fe3d38575a6ce0ba89aa4554566", "usr/share/librecad/library"),
}


def cache_folder() -> Path:
    return Path(os.environ.get("VECTOR_SETS_CACHE") or Path.home() / ".cache" / "vector-sets")


def fetch(name: str, cache: Path | None = None) -> Path:
    """The unpacked folder of collection `name`, downloading and checking it the first time."""
    package, version, digest, inner = PACKAGES[name]
    root = (cache or cache_folder()) / f"{package}_{version}"
    if complete(root):
        return root / inner
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as work:
        publish(download_unpacked(package, version, digest, Path(work)), root, digest)
    return root / inner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("names", nargs="*", default=list(PACKAGES))
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            print(f"{name}\t{fetch(name, args.cache)}")
    except (FetchError, subprocess.CalledProcessError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
