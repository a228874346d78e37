"""What a client asks a job to read: documents, validated once at submit time.

A document is a URL (an image, a list of image URLs, a IIIF manifest, a zip, a PDF) or an upload
the API saved on disk. Validation happens here, in the API process, so a bad request is a 400
naming the field instead of a job that fails later in a worker. The worker only trusts what this
module produced (`Document.from_dict` of a job's stored documents).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from ..clientjson import loads
from ..config import Config
from ..errors import InputError
from ..netguard import check_url
from .names import SAFE_NAME, slugify, unique

DOCUMENT_TYPES = ("img", "url_list", "iiif", "zip", "pdf")
# Made by the platform or a demo, never accepted from a client: "dir" is a folder of images under
# DATA_FOLDER (e.g. the crops of an earlier job, see Demo.extra_documents).
INTERNAL_TYPES = ("dir",)
DOCUMENT_KEYS = ("type", "src", "uid")
MAX_URL_LENGTH = 8192


@dataclass(frozen=True)
class Document:
    type: str  # one of DOCUMENT_TYPES or INTERNAL_TYPES
    uid: str  # safe as a folder name (names.SAFE_NAME)
    src: str | None = None  # http(s) URL
    path: str | None = None  # absolute local path of an upload saved by the API

    def to_dict(self) -> dict:
        """The JSON-safe form stored with the job (None fields left out)."""
        return {k: v for k, v in (("type", self.type), ("uid", self.uid), ("src", self.src),
                                  ("path", self.path)) if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Document:
        if d.get("type") not in DOCUMENT_TYPES + INTERNAL_TYPES or not SAFE_NAME.match(str(d.get("uid", ""))):
            raise ValueError(f"not a stored document: {d!r}")
        path = d.get("path")
        return cls(type=d["type"], uid=d["uid"], src=d.get("src"), path=str(path) if path is not None else None)


def parse_documents(raw: Any, cfg: Config) -> list[Document]:
    """Validate the client's `documents`: a list of {"type", "src", "uid"?}, or a JSON string of one
    (discover-demo sends that); None or "" count as an empty list (uploads may carry the images).

    Raises InputError naming the field, e.g. `documents[1].type`. Every src is checked by the SSRF
    guard now (host resolved), so a job never starts on a URL it would refuse to fetch."""
    items = _as_list(raw)
    if len(items) > cfg.max_images_per_job:
        raise InputError("documents", f"{len(items)} documents; the limit is {cfg.max_images_per_job} "
                                      "(MAX_IMAGES_PER_JOB)")
    taken: set[str] = set()
    parsed: list[tuple[str, str, str | None]] = []
    for i, item in enumerate(items):
        field = f"documents[{i}]"
        if not isinstance(item, dict):
            raise InputError(field, "must be an object with type, src and optionally uid")
        unknown = sorted(set(item) - set(DOCUMENT_KEYS))
        if unknown:
            raise InputError(field, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                                    f"{', '.join(DOCUMENT_KEYS)}")
        doc_type = item.get("type")
        if doc_type not in DOCUMENT_TYPES:
            raise InputError(f"{field}.type", f"must be one of {', '.join(DOCUMENT_TYPES)}")
        src = _checked_src(item.get("src"), f"{field}.src", cfg)
        uid = item.get("uid")
        if "uid" in item:  # optional, but when given a name (null is no name: 400, as for every field)
            if not isinstance(uid, str) or not SAFE_NAME.match(uid):
                raise InputError(f"{field}.uid", "must be 1-128 characters from A-Z a-z 0-9 . _ -, "
                                                 "starting with a letter or digit")
            if uid in taken:
                raise InputError(f"{field}.uid", f"{uid!r} is used by another document of this job")
            taken.add(uid)
        parsed.append((doc_type, src, uid))
    # Defaults come after every client uid is known, so a default never takes a client's uid.
    return [Document(type=doc_type, uid=uid or unique(_default_uid(src), taken), src=src)
            for doc_type, src, uid in parsed]


def document_from_upload(path: Path, filename: str, taken_uids: set[str]) -> Document:
    """An uploaded file the API saved at `path`. Its type comes from its first bytes, not its name
    (zip, PDF, else an image); its uid from the file name, made unique against `taken_uids`."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        doc_type = "zip"
    elif b"%PDF-" in head:  # PDF readers accept the header anywhere in the first 1024 bytes
        doc_type = "pdf"
    else:
        doc_type = "img"
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    uid = unique(slugify(stem, "upload"), taken_uids)
    return Document(type=doc_type, uid=uid, path=str(Path(path).resolve()))


def _as_list(raw: Any) -> list:
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        return []
    if isinstance(raw, (str, bytes)):
        raw = loads(raw, "documents")
    if not isinstance(raw, list):
        raise InputError("documents", "must be a list of documents (or a JSON string of one)")
    return raw


def _checked_src(src: Any, field: str, cfg: Config) -> str:
    if not isinstance(src, str) or not src.strip():
        raise InputError(field, "required: the document's http(s) URL")
    src = src.strip()
    if len(src) > MAX_URL_LENGTH:
        raise InputError(field, f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        check_url(src, allow_private=cfg.allow_private_urls, allowed_hosts=cfg.allowed_source_hosts)
    except ValueError as exc:  # AddressNotAllowed is a ValueError too
        raise InputError(field, str(exc)) from None
    return src


def _default_uid(src: str) -> str:
    """The URL's last path segment (without extension) and a short hash of the whole URL."""
    parts = urlsplit(src)
    segments = [s for s in parts.path.split("/") if s]
    base = PurePosixPath(unquote(segments[-1])).stem if segments else parts.hostname or ""
    digest = hashlib.sha256(src.encode()).hexdigest()[:8]
    return f"{slugify(base, 'doc', 60)}-{digest}"
