"""Real drawings for the vectorization tests: the collections of realsets.py, fetched by the
project's own script (tools/fetch_vector_sets.py: Debian packages by pinned version, SHA-256
checked, cached in $VECTOR_SETS_CACHE or ~/.cache/vector-sets), so a fresh CI machine gets them
the same way a developer does. Nothing is mocked: a failed fetch fails the test with its reason."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from tools.fetch_vector_sets import fetch


@cache
def folder(name: str) -> Path:
    """The unpacked collection `name` (fetched the first time)."""
    return fetch(name)


def sheets(name: str, pages: int, scan: bool = False, first: int = 0):
    """Pages of a real collection with their exact truth (realsets.Sheet)."""
    from api.demos.vectorization.realsets import sheets as render

    return render(name, folder(name), pages, scan=scan, first=first)
