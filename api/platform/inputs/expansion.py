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
from .names import IMAGE_SUFFIXES, slugify, unique
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
    elif doc.type == "dir":
        sources = _folder_sources(doc, cfg)
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


def _folder_sources(doc: Document, cfg: Config) -> list[ImageSource]:
    """The images of a folder inside DATA_FOLDER, by file name (the platform made this document,
    but the folder is still checked to lie in DATA_FOLDER: a job never reads elsewhere)."""
    folder = Path(doc.path or "").resolve()
    if not folder.is_relative_to(cfg.data_folder.resolve()) or not folder.is_dir():
        raise DocumentError("the folder of images is gone")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    check_count(len(files), cfg)
    taken: set[str] = set()
    return [ImageSource(doc_uid=doc.uid, name=unique(_stem(str(p), "image"), taken), index=i, path=p)
            for i, p in enumerate(files)]


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
            # Not resolved here (one DNS query per line): the fetcher's session resolves each host and
            # checks its addresses before it connects.
            check_url(url, allow_private=cfg.allow_private_urls, resolve=False,
                      allowed_hosts=cfg.allowed_source_hosts)
        except ValueError as exc:
            raise DocumentError(f"line {number} of the URL list: {exc}") from None
        sources.append(ImageSource(doc_uid=doc.uid, name=unique(_stem(url, "image"), taken), index=index, url=url))
    return sources


def _stem(location: str, default: str) -> str:
    """A safe name from the last path segment of a URL or file path, without its extension."""
    path = unquote(urlsplit(location).path) if "://" in location else location
    return slugify(PurePosixPath(path.replace("\\", "/")).stem, default)
