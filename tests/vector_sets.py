"""Real drawings for the vectorization tests: the collections of realsets.py, fetched by the
project's own script (tools/fetch_vector_sets.py: Debian packages by pinned version, SHA-256
checked, cached in $VECTOR_SETS_CACHE or ~/.cache/vector-sets), so a fresh CI machine gets them
the same way a developer does. Nothing is mocked: a failed fetch fails the test with its reason."""
from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@cache
def folder(name: str) -> Path:
    """The unpacked collection `name` (fetched the first time)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from fetch_vector_sets import fetch
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return fetch(name)


def sheets(name: str, pages: int, scan: bool = False, first: int = 0):
    """Pages of a real collection with their exact truth (realsets.Sheet)."""
    from api.demos.vectorization.realsets import sheets as render

    return render(name, folder(name), pages, scan=scan, first=first)
