"""`expand`: one document → its image sources, in reading order.

This runs in the worker before the model loads. Whatever makes a whole document unusable (its
manifest, archive or PDF cannot be downloaded or read) is a DocumentError; single images are only
downloaded later, by the ImageFeed, where a failure costs one image, not the document.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ..config import Config
from ..netguard import check_url
from .archives import zip_sources
from .documents import Document
from .fetch import DownloadError, Fetcher
from .iiif import manifest_sources
from .names import slugify, unique
from .pdf import pdf_sources
from .sources import DocumentError, ImageSource, check_count

_WHAT = {"text": "URL list", "manifest": "IIIF manifest", "zip": "zip archive", "pdf": "PDF"}


def expand(doc: Document, fetcher: Fetcher, cfg: Config) -> list[ImageSource]:
    """The images of `doc`, in order; DocumentError when the document as a whole cannot be used."""
    if doc.type == "img":
        sources = [ImageSource(doc_uid=doc.uid, name=_stem(doc.src or doc.path or "", doc.uid), index=0,
                               url=doc.src, path=Path(doc.path) if doc.path else None)]
    elif doc.type == "url_list":
        sources = _url_list_sources(doc, _local_file(doc, fetcher, "text"), cfg)
    elif doc.type == "iiif":
        sources = manifest_sources(_local_file(doc, fetcher, "manifest"), doc.src or "", doc.uid, cfg)
    elif doc.type == "zip":
        sources = zip_sources(_local_file(doc, fetcher, "zip"), doc.uid, cfg)
    elif doc.type == "pdf":
        sources = pdf_sources(_local_file(doc, fetcher, "pdf"), doc.uid, cfg)
    else:
        raise DocumentError(f"unknown document type {doc.type!r}")
    check_count(len(sources), cfg)
    return sources


def _local_file(doc: Document, fetcher: Fetcher, kind: str) -> Path:
    """The document's file: the upload itself, or its download (cached)."""
    if doc.path:
        path = Path(doc.path)
        if not path.is_file():
            raise DocumentError("the uploaded file is gone")
        return path
    if not doc.src:
        raise DocumentError("the document has neither a URL nor a file")
    try:
        return fetcher.fetch(doc.src, kind=kind)
    except DownloadError as exc:
        raise DocumentError(f"cannot download the {_WHAT[kind]}: {exc}") from None


def _url_list_sources(doc: Document, path: Path, cfg: Config) -> list[ImageSource]:
    """One image URL per line; blank lines and lines starting with # are skipped."""
    lines = path.read_bytes().decode("utf-8-sig", errors="replace").splitlines()
    urls = [(number, line.strip()) for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")]
    if not urls:
        raise DocumentError("the URL list has no URLs")
    check_count(len(urls), cfg)
    taken: set[str] = set()
    sources = []
    for index, (number, url) in enumerate(urls):
        try:
            # Not resolved here (one DNS query per line); the fetcher checks the address it reaches.
            check_url(url, allow_private=cfg.allow_private_urls, resolve=False)
        except ValueError as exc:
            raise DocumentError(f"line {number} of the URL list: {exc}") from None
        sources.append(ImageSource(doc_uid=doc.uid, name=unique(_stem(url, "image"), taken), index=index, url=url))
    return sources


def _stem(location: str, default: str) -> str:
    """A safe name from the last path segment of a URL or file path, without its extension."""
    path = unquote(urlsplit(location).path) if "://" in location else location
    return slugify(PurePosixPath(path.replace("\\", "/")).stem, default)
