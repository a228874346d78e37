"""The platform's inputs: client documents → local, decoded images.

In the API, `parse_documents` / `document_from_upload` validate what a job will read. In the
worker, `expand` turns each document into image sources (downloading manifests, extracting zips,
rendering PDFs into the cache), and an `ImageFeed` downloads and decodes those images ahead of
the model. Every download goes through `Fetcher` (SSRF guard, size cap, shared cache).
"""
from .documents import DOCUMENT_TYPES, INTERNAL_TYPES, Document, document_from_upload, parse_documents
from .expansion import expand
from .feed import ImageFeed, LoadedImage, UnreadableImage, configure_pillow, decode_image
from .fetch import DownloadError, Fetcher
from .sources import DocumentError, ImageSource

__all__ = [
    "DOCUMENT_TYPES", "INTERNAL_TYPES", "Document", "DocumentError", "DownloadError", "Fetcher", "ImageFeed",
    "ImageSource",
    "LoadedImage", "UnreadableImage", "configure_pillow", "decode_image", "document_from_upload", "expand",
    "parse_documents",
]
