"""What a document expands into: image sources, one per image, in reading order."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config


@dataclass(frozen=True)
class ImageSource:
    doc_uid: str
    name: str  # unique within its document, safe as a file-name stem (e.g. "0001", "scans_p1")
    index: int  # 0-based position within the document
    url: str | None = None  # to download
    path: Path | None = None  # already local: an upload, an extracted zip member, a rendered PDF page
    canvas: dict | None = None  # IIIF: {"id", "width", "height", "label", "manifest"}


class DocumentError(Exception):
    """A whole document cannot be used (manifest missing or malformed, corrupt or hostile archive,
    unreadable PDF, too many images). The message is meant for the client, in plain words."""


def check_count(count: int, cfg: Config) -> None:
    """Refuse a document with more images than a job may have, before any work is done on them."""
    if count > cfg.max_images_per_job:
        raise DocumentError(f"{count} images; the limit is {cfg.max_images_per_job} per job (MAX_IMAGES_PER_JOB)")
