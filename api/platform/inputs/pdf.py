"""PDFs → one PNG per page, rendered in-process by pdfium (never a shell command).

Pages are rendered at PDF_DPI into `cache/pdf/<sha256 of the pdf>-<dpi>dpi/`, once per distinct
file. A page so large that it would exceed MAX_IMAGE_PIXELS at that resolution is rendered smaller
instead, so one oversized page neither fails the document nor exhausts memory.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

import pypdfium2 as pdfium

from ..config import Config
from .cache import build_once, sha256_file
from .names import numbered
from .sources import DocumentError, ImageSource, check_count

POINTS_PER_INCH = 72
_PDFIUM = threading.Lock()  # pdfium is not thread-safe: one document at a time per process


def pdf_sources(path: Path, doc_uid: str, cfg: Config) -> list[ImageSource]:
    """The rendered pages of the PDF at `path`."""
    folder = cfg.cache_folder / "pdf" / f"{sha256_file(path)}-{cfg.pdf_dpi}dpi"
    files = build_once(folder, lambda tmp: _render(path, tmp, cfg))
    return [ImageSource(doc_uid=doc_uid, name=f.stem, index=i, path=f) for i, f in enumerate(files)]


def _render(path: Path, dest: Path, cfg: Config) -> list[str]:
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"not a readable PDF ({exc})") from None
        try:
            count = len(pdf)
            if count == 0:
                raise DocumentError("the PDF has no pages")
            check_count(count, cfg)
            names = []
            for index in range(count):
                name = f"{numbered(index, count)}.png"
                _render_page(pdf, index, cfg).save(dest / name, "PNG", compress_level=1)
                names.append(name)
            return names
        finally:
            pdf.close()


def _render_page(pdf: pdfium.PdfDocument, index: int, cfg: Config):
    try:
        page = pdf[index]
        try:
            width, height = page.get_size()  # in points
            scale = cfg.pdf_dpi / POINTS_PER_INCH
            if width * height * scale * scale > cfg.max_image_pixels:
                scale = math.sqrt(cfg.max_image_pixels / (width * height))
            return page.render(scale=scale).to_pil().convert("RGB")
        finally:
            page.close()
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"page {index + 1} of the PDF cannot be rendered ({exc})") from None
