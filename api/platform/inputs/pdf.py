"""PDFs → one PNG per page, rendered in-process by pdfium (never a shell command).

Pages are rendered at PDF_DPI into `cache/pdf/<sha256 of the pdf>-<dpi>dpi/`, once per distinct
file. A page so large that it would exceed MAX_IMAGE_PIXELS at that resolution is rendered smaller
instead, so one oversized page neither fails the document nor exhausts memory. The size of each
page's bitmap is worked out, with pdfium's own rounding (up), before anything is rendered.
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
            width, height = page.get_size()
            scale = render_scale(width, height, cfg)
            # RGB bytes, copied once into an RGB image (no second copy by a convert("RGB"));
            # the bitmap is freed as soon as this returns.
            return page.render(scale=scale, rev_byteorder=True).to_pil()
        finally:
            page.close()
    except (pdfium.PdfiumError, ValueError) as exc:
        raise DocumentError(f"page {index + 1} of the PDF cannot be rendered ({exc})") from None


def render_scale(width: float, height: float, cfg: Config) -> float:
    """Pixels per point for a page of `width` x `height` points: PDF_DPI, or less where the bitmap
    would exceed MAX_IMAGE_PIXELS. The bitmap's size is checked here, before rendering, so a page
    that cannot fit costs no memory. Raises ValueError for a page that cannot be rendered."""
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"its size is {width}x{height} points")
    scale = cfg.pdf_dpi / POINTS_PER_INCH
    if _pixels(width, height, scale) > cfg.max_image_pixels:
        scale = _largest_fitting_scale(width, height, cfg.max_image_pixels)
    columns, rows = bitmap_size(width, height, scale)
    if columns < 1 or rows < 1 or columns * rows > cfg.max_image_pixels:
        raise ValueError(f"{width:g}x{height:g} points do not fit in {cfg.max_image_pixels} pixels "
                         "(MAX_IMAGE_PIXELS)")
    return scale


def bitmap_size(width: float, height: float, scale: float) -> tuple[int, int]:
    """The bitmap pdfium renders a page to at `scale`: each side rounded up (PdfPage.render)."""
    return math.ceil(width * scale), math.ceil(height * scale)


def _pixels(width: float, height: float, scale: float) -> int:
    columns, rows = bitmap_size(width, height, scale)
    return columns * rows


def _largest_fitting_scale(width: float, height: float, max_pixels: int) -> float:
    """The scale whose bitmap has the sides of the exact fit, sqrt(max / area), rounded DOWN: the
    exact fit gives fractional sides that pdfium rounds up, a few rows over the limit. 0 when
    the page is so thin that one of its sides would have no pixel."""
    exact = math.sqrt(max_pixels / (width * height))
    columns, rows = math.floor(width * exact), math.floor(height * exact)
    if columns < 1 or rows < 1:
        return 0.0
    scale = min(columns / width, rows / height)
    for _ in range(16):  # the divisions may land a few ulps high, and pdfium rounds those up
        if _pixels(width, height, scale) <= max_pixels:
            break
        scale = math.nextafter(scale, 0.0)
    return scale
