"""The contact sheet a person checks first: one row per best pair, the two items side by side, the
keypoints that agree joined by lines, the pair's score, inliers and transform written above."""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 320
GAP = 16
TITLE = 22
MAX_LINES = 80
LINE_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (0, 128, 128)]


@dataclass
class Row:
    thumb_a: bytes  # JPEG
    thumb_b: bytes
    points_a: np.ndarray  # inliers in the thumbnails' pixels
    points_b: np.ndarray
    title: str


def thumbnail(image: Image.Image, side: int = CELL) -> tuple[bytes, int]:
    """A JPEG of the item at most `side` px long (what the sheet draws, kept per item in memory),
    and its width."""
    small = image.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85)
    return buffer.getvalue(), small.width


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(rows: Sequence[Row]) -> Image.Image:
    font = _font(14)
    width = 2 * CELL + 3 * GAP
    height = max(1, len(rows)) * (CELL + TITLE + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    if not rows:
        draw.text((GAP, GAP), "no pair above the threshold", fill=(240, 240, 240), font=font)
        return sheet
    rng = np.random.default_rng(0)
    for r, row in enumerate(rows):
        top = GAP + r * (CELL + TITLE + GAP)
        draw.text((GAP, top), row.title, fill=(240, 240, 240), font=font)
        origins = []
        for c, data in enumerate((row.thumb_a, row.thumb_b)):
            picture = Image.open(io.BytesIO(data)).convert("RGB")
            x = GAP + c * (CELL + GAP) + (CELL - picture.width) // 2
            y = top + TITLE + (CELL - picture.height) // 2
            sheet.paste(picture, (x, y))
            origins.append((x, y))
        n = len(row.points_a)
        shown = np.sort(rng.choice(n, MAX_LINES, replace=False)) if n > MAX_LINES else np.arange(n)
        (xa, ya), (xb, yb) = origins
        for i, k in enumerate(shown):
            colour = LINE_COLOURS[i % len(LINE_COLOURS)]
            pa = (xa + float(row.points_a[k][0]), ya + float(row.points_a[k][1]))
            pb = (xb + float(row.points_b[k][0]), yb + float(row.points_b[k][1]))
            draw.line([pa, pb], fill=colour, width=1)
            for px, py in (pa, pb):
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], outline=colour)
    return sheet
