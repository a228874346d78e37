"""Safe names: document uids and image names end up as folder and file names, so they are slugs.

Everything that turns client text (a URL, an upload's file name, a zip member, a IIIF label) into
a name goes through `slugify`, and everything that must be unique goes through `unique`.
"""
from __future__ import annotations

import re
import unicodedata

# The image files a folder, an archive or an upload may hold, by extension (decoded by Pillow).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".jp2"})
# A document uid, and the shape of every name made here: starts alphanumeric, no slash, no "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_NAME = 128
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
# What one path component may take on the filesystems DATA_FOLDER lives on (ext4, XFS, NFS): bytes.
MAX_FILE_NAME_BYTES = 255
MAX_SUFFIX = 16  # characters of an extension kept apart from the stem ("." included)
# A file name's unsafe runs: anything but letters, digits (any script), ".", "_", "-".
_UNSAFE_FILE_RUN = re.compile(r"[^\w.-]+|_+")


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (IMAGE_SUFFIXES), whatever its case."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_SUFFIXES


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


def safe_filename(filename: str, default: str, taken: set[str] | None = None,
                  max_bytes: int = MAX_FILE_NAME_BYTES) -> str:
    """A name an uploaded file can be saved under: the client's last path component with unsafe
    runs made "_", no leading dot or dash (never hidden, never a temp file, never an option),
    shortened to `max_bytes` of UTF-8 (a character is never cut in two) with its extension kept,
    and, when `taken` is given, made unique against it (`name-2.ext`, ...) and added to it.
    `default` (plus the extension) stands in for a name with nothing usable left.

    Why bytes: the filesystem limits a name to 255 bytes, and one letter of a non-Latin script
    is 2-4 of them, so a 300-character name must be cut before it reaches `open()`."""
    base = unicodedata.normalize("NFC", filename.replace("\\", "/").rsplit("/", 1)[-1])
    base = _UNSAFE_FILE_RUN.sub("_", base).lstrip("._-")
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem or len(ext) >= MAX_SUFFIX or not ext.isalnum():
        stem, ext = base, ""
    suffix = f".{ext.lower()}" if ext else ""
    stem = stem.rstrip("._-") or default
    name, n = _fit(stem, suffix, max_bytes), 1
    while taken is not None and name in taken:
        n += 1
        name = _fit(stem, f"-{n}{suffix}", max_bytes)
    if taken is not None:
        taken.add(name)
    return name


def _fit(stem: str, tail: str, max_bytes: int) -> str:
    """`stem + tail` cut to `max_bytes` of UTF-8 from the stem's end (whole characters only)."""
    room = max_bytes - len(tail.encode())
    return stem.encode()[:room].decode("utf-8", "ignore").rstrip("._-") + tail


def natural_key(text: str) -> list:
    """Sort key putting "page2" before "page10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def numbered(index: int, total: int) -> str:
    """The name of the `index`-th (0-based) of `total` pages: "0001", zero-padded to sort in order."""
    return f"{index + 1:0{max(4, len(str(total)))}d}"
