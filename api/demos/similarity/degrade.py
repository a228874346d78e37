"""Real degradations of real pictures, seeded: how one engraving looks in another scan, another
printing, another book. The test sets of tests/test_similarity.py and bench/similarity.py are made
of copies of real public-domain pictures (tests/data/similarity/) put through these operations.

Every operation is one a copy really goes through: rescaled (another resolution), rotated a little
(a skewed scan) or by quarter turns (a page scanned sideways), cropped (a tighter frame), JPEG
re-encoded (lossy storage), blurred (focus, ink spread), printed as halftone dots or as a threshold
of ink on paper (print-like), toned like old paper, mirrored (a reversed print, when asked).
"""
from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Recipe:
    scale: float = 1.0
    angle: float = 0.0  # degrees, counter-clockwise
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # kept box, relative (x0, y0, x1, y1)
    print_like: str = ""  # "" | halftone | threshold
    blur: float = 0.0
    jpeg: int = 0  # quality; 0: not re-encoded
    tone: bool = False
    mirror: bool = False

    def describe(self) -> str:
        parts = [f"scale {self.scale:.2f}"]
        if self.angle:
            parts.append(f"rotate {self.angle:+.1f}°")
        if self.crop != (0.0, 0.0, 1.0, 1.0):
            parts.append("crop " + ",".join(f"{v:.2f}" for v in self.crop))
        if self.print_like:
            parts.append(self.print_like)
        if self.blur:
            parts.append(f"blur {self.blur:.1f}")
        if self.jpeg:
            parts.append(f"jpeg q{self.jpeg}")
        if self.tone:
            parts.append("paper tone")
        if self.mirror:
            parts.append("mirror")
        return ", ".join(parts)


def random_recipe(rng: random.Random, mirror: bool = False, quarter_turns: bool = False) -> Recipe:
    """A plausible second copy: each operation drawn with its own probability."""
    x0, y0 = rng.uniform(0, 0.15), rng.uniform(0, 0.15)
    x1, y1 = rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)
    angle = rng.uniform(-6, 6) if rng.random() < 0.6 else 0.0
    if quarter_turns and rng.random() < 0.25:
        angle += rng.choice((90.0, 180.0, 270.0))
    return Recipe(scale=rng.uniform(0.45, 1.6), angle=round(angle, 2),
                  crop=(round(x0, 3), round(y0, 3), round(x1, 3), round(y1, 3)) if rng.random() < 0.7
                  else (0.0, 0.0, 1.0, 1.0),
                  print_like=rng.choice(("", "", "halftone", "threshold")),
                  blur=round(rng.uniform(0.4, 1.4), 2) if rng.random() < 0.5 else 0.0,
                  jpeg=rng.choice((0, 25, 40, 60, 85)), tone=rng.random() < 0.4, mirror=mirror)


def _halftone(gray: np.ndarray, cell: int = 4) -> np.ndarray:
    """Clustered-dot screen at 45°: each cell's dot grows with the darkness around it."""
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx + yy) / math.sqrt(2) * (2 * math.pi / cell)
    v = (xx - yy) / math.sqrt(2) * (2 * math.pi / cell)
    screen = (np.cos(u) + np.cos(v) + 2) / 4  # 0..1
    smooth = cv2.GaussianBlur(gray.astype(np.float32) / 255, (0, 0), cell / 3)
    return np.where(smooth > screen, 255, 0).astype(np.uint8)


def _threshold(gray: np.ndarray, rng: random.Random) -> np.ndarray:
    """Ink or no ink (Otsu, nudged), a little ink spread: a line block printed on paper."""
    level, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    level = float(np.clip(level + rng.uniform(-20, 20), 20, 235))
    ink = (gray < level).astype(np.uint8)
    if rng.random() < 0.5:
        ink = cv2.dilate(ink, np.ones((2, 2), np.uint8))
    return np.where(ink > 0, 0, 255).astype(np.uint8)


def apply(image: Image.Image, recipe: Recipe, seed: int = 0) -> Image.Image:
    """The copy `recipe` makes of `image` (RGB in, RGB out)."""
    rng = random.Random(seed)
    out = image.convert("RGB")
    if recipe.mirror:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = out.size
    x0, y0, x1, y1 = recipe.crop
    out = out.crop((round(x0 * w), round(y0 * h), max(round(x1 * w), round(x0 * w) + 8),
                    max(round(y1 * h), round(y0 * h) + 8)))
    if recipe.angle:
        out = out.rotate(recipe.angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    if recipe.scale != 1.0:
        out = out.resize((max(8, round(out.width * recipe.scale)), max(8, round(out.height * recipe.scale))),
                         Image.Resampling.LANCZOS if recipe.scale < 1 else Image.Resampling.BICUBIC)
    if recipe.print_like:
        gray = np.asarray(out.convert("L"))
        printed = _halftone(gray) if recipe.print_like == "halftone" else _threshold(gray, rng)
        out = Image.fromarray(printed).convert("RGB")
    if recipe.blur:
        out = out.filter(ImageFilter.GaussianBlur(recipe.blur))
    if recipe.tone:
        paper = np.array([rng.uniform(225, 245), rng.uniform(210, 232), rng.uniform(170, 205)], np.float32)
        ink = np.array([rng.uniform(20, 60), rng.uniform(15, 45), rng.uniform(10, 35)], np.float32)
        gray = np.asarray(out.convert("L"), np.float32)[..., None] / 255
        out = Image.fromarray((ink + (paper - ink) * gray).clip(0, 255).astype(np.uint8))
    if recipe.jpeg:
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=recipe.jpeg)
        out = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return out
