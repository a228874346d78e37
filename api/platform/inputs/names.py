"""Safe names: document uids and image names end up as folder and file names, so they are slugs.

Everything that turns client text (a URL, an upload's file name, a zip member, a IIIF label) into
a name goes through `slugify`, and everything that must be unique goes through `unique`.
"""
from __future__ import annotations

import re

# A document uid, and the shape of every name made here: starts alphanumeric, no slash, no "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_NAME = 128
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(text: str, default: str, max_length: int = 80) -> str:
    """`text` with every run of unsafe characters made "_", trimmed to start and end alphanumeric;
    `default` when nothing usable is left."""
    slug = _UNSAFE_RUN.sub("_", text)[:max_length]
    slug = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", slug)
    return slug or default


def unique(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... whichever is not in `taken`; added to `taken`."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        suffix = f"-{n}"
        candidate = name[:MAX_NAME - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


def natural_key(text: str) -> list:
    """Sort key putting "page2" before "page10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def numbered(index: int, total: int) -> str:
    """The name of the `index`-th (0-based) of `total` pages: "0001", zero-padded to sort in order."""
    return f"{index + 1:0{max(4, len(str(total)))}d}"
