"""Synthetic diagrams with exact ground truth, for the tests, the benchmark and the note's figures.

Historical diagrams have no vector ground truth, so we draw our own: lines (free, radii, chords,
triangles sharing corners), circles and arcs with varied stroke widths, a few text labels that are
not primitives, and, for `noisy=True`, what scanning does to paper: a tinted uneven background,
fibres, brownish ink of uneven strength, blur, sensor noise and specks. Strokes are placed so that
they cross but never run along each other or end on another stroke by accident, because such
drawings have no single right answer (two collinear touching lines *are* one line in the image).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np

from .primitives import Primitive, arc, circle, line
from .svg import to_svg

SHIFT = 4  # sub-pixel drawing: coordinates × 16
LETTERS = "ABCDEFGHKLMNPRSTabdeghkmnpqrst0123456789"


@dataclass
class Diagram:
    image: np.ndarray  # H×W×3 uint8 RGB
    primitives: list[Primitive]  # ground truth (text is not a primitive)
    seed: int
    noisy: bool


def generate(seed: int, size: int = 1000, noisy: bool = False, text: bool = True) -> Diagram:
    """One size×size diagram; the same seed always gives the same drawing and truth."""
    rng = random.Random(seed)
    scale = size / 1000.0
    canvas = _Canvas(size, scale)
    margin = 40 * scale
    for _ in range(rng.randint(2, 3)):
        canvas.try_many(rng, lambda: _random_circle(rng, size, margin, scale))
    for _ in range(rng.randint(2, 3)):
        canvas.try_many(rng, lambda: _random_arc(rng, size, margin, scale))
    for kind in ["radius", "chord", "triangle"] + ["free"] * rng.randint(5, 8):
        canvas.try_many(rng, lambda kind=kind: _random_lines(rng, kind, canvas, size, margin, scale))
    if text:
        canvas.add_text(rng, rng.randint(3, 6))
    image = _render(canvas, rng, noisy)
    for i, p in enumerate(canvas.primitives):
        p.id = f"gt{i}"
    return Diagram(image, canvas.primitives, seed, noisy)


class _Canvas:
    """The ink drawn so far (as a mask), to accept only candidates that cross it cleanly."""

    def __init__(self, size: int, scale: float):
        self.size, self.scale = size, scale
        self.mask = np.zeros((size, size), np.uint8)
        self.primitives: list[Primitive] = []
        self.widths: list[int] = []
        self.labels: list[tuple[str, tuple[int, int], float, int]] = []
        self._near_cache: np.ndarray | None = None

    def try_many(self, rng: random.Random, make, attempts: int = 60) -> None:
        for _ in range(attempts):
            candidate = make()
            if candidate is None:
                continue
            shapes, joined = candidate
            width = max(1, round(rng.uniform(2, 4.5) * self.scale))
            if all(self._fits(p, width, joined) for p in shapes):
                for p in shapes:
                    self._stroke(self.mask, p, width, 255)
                    self._near_cache = None
                    self.primitives.append(p)
                    self.widths.append(width)
                return

    def _fits(self, p: Primitive, width: int, joined: set) -> bool:
        points = np.array(p.points(step=1.0))
        if points.min() < 8 or points.max() > self.size - 9:
            return False
        clearance = 8 * self.scale + width
        ink = self._near
        xs, ys = points[:, 0].astype(int), points[:, 1].astype(int)
        near = ink[ys, xs] > 0
        if near.mean() > 0.12:  # runs along existing ink
            return False
        # each stretch near other ink must be short: a clean crossing, not a grazing touch
        longest = run = 0
        for flag in near:
            run = run + 1 if flag else 0
            longest = max(longest, run)
        if longest > clearance * 6:
            return False
        if p.type != "circle":
            ends = [points[0], points[-1]]
            for end in ends:
                key = (round(end[0], 1), round(end[1], 1))
                if key in joined:
                    continue
                if ink[int(end[1]), int(end[0])]:
                    return False
        return True

    @property
    def _near(self) -> np.ndarray:
        """The ink grown by a clearance, recomputed only after something was drawn."""
        if self._near_cache is None:
            radius = int(8 * self.scale + 6)
            paper = (self.mask == 0).astype(np.uint8)
            self._near_cache = cv2.distanceTransform(paper, cv2.DIST_L2, 3) <= radius
        return self._near_cache

    @staticmethod
    def _stroke(target: np.ndarray, p: Primitive, width: int, value: int) -> None:
        draw_stroke(target, p, width, value)

    def add_text(self, rng: random.Random, count: int) -> None:
        near = self._near
        for _ in range(count):
            for _ in range(80):
                word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 4)))
                font_scale = rng.uniform(0.5, 0.8) * self.scale
                thickness = max(1, round(1.5 * self.scale))
                (w, h), base = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
                x, y = rng.randint(10, self.size - w - 10), rng.randint(h + 10, self.size - base - 10)
                box = near[max(0, y - h - 6):y + base + 6, max(0, x - 6):x + w + 6]
                if box.any():
                    continue
                self.labels.append((word, (x, y), font_scale, thickness))
                cv2.putText(self.mask, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, thickness,
                            cv2.LINE_AA)
                self._near_cache = None
                near = self._near
                break


def _random_circle(rng: random.Random, size: int, margin: float, scale: float):
    r = rng.uniform(40, 200) * scale
    cx, cy = rng.uniform(margin + r, size - margin - r), rng.uniform(margin + r, size - margin - r)
    return [circle(cx, cy, r)], set()


def _random_arc(rng: random.Random, size: int, margin: float, scale: float):
    r = rng.uniform(60, 300) * scale
    cx, cy = rng.uniform(-r / 2, size + r / 2), rng.uniform(-r / 2, size + r / 2)
    start = rng.uniform(0, 360)
    return [arc(cx, cy, r, start, start + rng.uniform(60, 270))], set()


def _random_lines(rng: random.Random, kind: str, canvas: _Canvas, size: int, margin: float, scale: float):
    def point() -> tuple[float, float]:
        return rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)

    circles = [p.geometry for p in canvas.primitives if p.type == "circle"]
    if kind in ("radius", "chord"):
        if not circles:
            return None
        g = rng.choice(circles)
        a = rng.uniform(0, 2 * math.pi)
        on_a = (g["cx"] + g["r"] * math.cos(a), g["cy"] + g["r"] * math.sin(a))
        if kind == "radius":
            ends = [(g["cx"], g["cy"]), on_a]
        else:
            b = a + rng.uniform(0.6, 2.6)
            ends = [on_a, (g["cx"] + g["r"] * math.cos(b), g["cy"] + g["r"] * math.sin(b))]
        shapes = [line(*ends[0], *ends[1])]
        joined = {(round(x, 1), round(y, 1)) for x, y in ends}
        return shapes, joined
    if kind == "triangle":
        a, b, c = point(), point(), point()
        sides = [(a, b), (b, c), (c, a)]
        lengths = [math.dist(p, q) for p, q in sides]
        if min(lengths) < 150 * scale or max(lengths) > 600 * scale:
            return None
        angles = [_angle_at(a, b, c), _angle_at(b, c, a), _angle_at(c, a, b)]
        if min(angles) < 25:
            return None
        joined = {(round(x, 1), round(y, 1)) for x, y in (a, b, c)}
        return [line(*p, *q) for p, q in sides], joined
    a = point()
    angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(80, 500) * scale
    b = (a[0] + length * math.cos(angle), a[1] + length * math.sin(angle))
    return [line(*a, *b)], set()


def _angle_at(a, b, c) -> float:
    v1, v2 = np.subtract(b, a), np.subtract(c, a)
    cos = float(np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _render(canvas: _Canvas, rng: random.Random, noisy: bool) -> np.ndarray:
    size = canvas.size
    ink = np.zeros((size, size), np.float32)
    layer = np.zeros((size, size), np.uint8)
    for p, width in zip(canvas.primitives, canvas.widths, strict=True):
        layer[:] = 0
        _Canvas._stroke(layer, p, width, 255)
        strength = rng.uniform(0.75, 1.0) if noisy else 1.0
        np.maximum(ink, layer.astype(np.float32) / 255 * strength, out=ink)
    layer[:] = 0
    for word, origin, font_scale, thickness in canvas.labels:
        cv2.putText(layer, word, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, thickness, cv2.LINE_AA)
    np.maximum(ink, layer.astype(np.float32) / 255, out=ink)
    if not noisy:
        grey = (255 * (1 - ink)).clip(0, 255).astype(np.uint8)
        return np.dstack([grey] * 3)
    return print_on_paper(ink, rng, canvas.scale)


def draw_stroke(target: np.ndarray, p: Primitive, width: int, value: int) -> None:
    """The primitive drawn anti-aliased with sub-pixel precision, `width` px wide."""
    pts = np.round(np.array(p.points(step=1.5)) * (1 << SHIFT)).astype(np.int32)
    cv2.polylines(target, [pts], p.type == "circle", value, width, cv2.LINE_AA, SHIFT)


def print_on_paper(ink: np.ndarray, rng: random.Random, scale: float) -> np.ndarray:
    """What scanning an old print does to an ink layer (H×W float, 1 = full ink): RGB uint8 of
    faded brownish ink on tinted, unevenly lit, fibrous paper with specks, blur and sensor noise."""
    size = ink.shape[0]
    assert ink.shape[0] == ink.shape[1], "square pages"
    ink = ink.copy()
    nprng = np.random.default_rng(rng.randrange(2**32))
    # uneven ink: strength varies slowly along the strokes (worn quill, faded print)
    fade = _smooth_noise(nprng, size, 12 * scale)
    ink *= np.clip(0.85 + 0.15 * fade, 0.55, 1.0)
    paper = np.array([rng.uniform(225, 245), rng.uniform(212, 232), rng.uniform(180, 205)], np.float32)
    light = 1.0 + 0.10 * _smooth_noise(nprng, size, 120 * scale)  # uneven lighting / foxing
    fibres = cv2.GaussianBlur(nprng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.5)
    fibres = 6 * fibres / (fibres.std() + 1e-6)
    colour = np.array([rng.uniform(40, 70), rng.uniform(30, 50), rng.uniform(20, 35)], np.float32)
    image = paper[None, None, :] * light[..., None] + fibres[..., None]
    image = image * (1 - ink[..., None]) + colour[None, None, :] * ink[..., None]
    for _ in range(int(60 * scale ** 2)):  # specks and small stains
        x, y = nprng.integers(0, size, 2)
        radius = float(nprng.uniform(0.6, 2.5) * scale)
        cv2.circle(image, (int(x), int(y)), max(1, int(round(radius))), colour.tolist(), -1, cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), 0.9 * max(1.0, scale))
    image += nprng.normal(0, 7, image.shape).astype(np.float32)
    return image.clip(0, 255).astype(np.uint8)


def _smooth_noise(nprng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian noise blurred by `sigma` px, unit spread; made small and scaled up (same look,
    without a blur kernel thousands of pixels wide)."""
    factor = max(1, int(sigma // 3))
    small = max(2, size // factor + 1)
    field = cv2.GaussianBlur(nprng.normal(0, 1, (small, small)).astype(np.float32), (0, 0), sigma / factor)
    field = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    return field / (field.std() + 1e-6)


def ground_truth_svg(diagram: Diagram) -> str:
    """The truth as our own SVG (what `evaluate` reads)."""
    height, width = diagram.image.shape[:2]
    return to_svg(diagram.primitives, width, height)

