"""Photo-like table scenes with exact boxes and group labels, for the tests, the benchmark and a
first locator when a user has no labelled photos yet.

A scene is a textured wooden table under uneven light, a few containers (grey bins with a rim and
an inner shadow) and items of a few *kinds* (a kind = shape + colour, the ground-truth group).
Items cast a soft shadow, are rotated, and their colours vary a little, so that neither the
locator nor the grouping can succeed by reading one exact pixel value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .embed import crop  # the demo's cutting rule, so test crops are cut as the demo cuts them

ITEM, CONTAINER = 1, 2
CLASSES = ["background", "item", "container"]

# kind → (shape, RGB); distinct in colour AND shape, like bricks, screws or fruit of a few sorts
KINDS: list[tuple[str, tuple[int, int, int]]] = [
    ("disc", (200, 40, 35)),
    ("square", (40, 80, 190)),
    ("triangle", (45, 160, 60)),
    ("bar", (230, 190, 40)),
    ("ring", (150, 60, 170)),
    ("cross", (240, 130, 30)),
]


@dataclass
class Scene:
    """One photo and its truth: boxes (x0, y0, x1, y1) in pixels, labels (ITEM / CONTAINER) and,
    for items, the kind (-1 for containers)."""

    image: Image.Image
    boxes: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    centers: list[tuple[float, float]] = field(default_factory=list)

    @property
    def item_boxes(self) -> np.ndarray:
        return self.boxes[self.labels == ITEM]

    @property
    def item_kinds(self) -> np.ndarray:
        return self.kinds[self.labels == ITEM]


def table_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Wood-like grain, per-scene tint, a light gradient and sensor noise (float RGB 0..255)."""
    base = np.array(rng.choice([[150, 110, 75], [185, 160, 120], [120, 95, 70], [200, 190, 170]]), float)
    base += rng.normal(0, 8, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    angle = rng.uniform(-0.3, 0.3)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    grain = np.sin(v / rng.uniform(3, 7) + 2.5 * np.sin(u / rng.uniform(40, 90))) * rng.uniform(6, 14)
    img = base[None, None, :] + grain[..., None]
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    light = 1.0 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    img *= light[..., None]
    img += rng.normal(0, 4, img.shape)
    return img


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A white-on-black mask of one item, `size` px across, rotated at random."""
    big = size * 4
    mask = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(mask)
    m = big * 0.12
    if kind == "disc":
        d.ellipse([m, m, big - m, big - m], fill=255)
    elif kind == "square":
        d.rectangle([m * 1.4, m * 1.4, big - m * 1.4, big - m * 1.4], fill=255)
    elif kind == "triangle":
        d.polygon([(big / 2, m), (big - m, big - m), (m, big - m)], fill=255)
    elif kind == "bar":
        d.rectangle([m, big * 0.36, big - m, big * 0.64], fill=255)
    elif kind == "ring":
        d.ellipse([m, m, big - m, big - m], fill=255)
        d.ellipse([big * 0.33, big * 0.33, big * 0.67, big * 0.67], fill=0)
    elif kind == "cross":
        d.rectangle([m, big * 0.38, big - m, big * 0.62], fill=255)
        d.rectangle([big * 0.38, m, big * 0.62, big - m], fill=255)
    mask = mask.rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR)
    return mask.resize((size, size), Image.LANCZOS)


def _paste(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray, x: int, y: int,
           shade: np.ndarray | None = None) -> None:
    """Alpha-blend a flat colour (times an optional shading field) through `mask` at (x, y)."""
    h, w = mask.shape
    region = canvas[y:y + h, x:x + w]
    alpha = mask[: region.shape[0], : region.shape[1], None]
    fill = colour[None, None, :] * (shade[: region.shape[0], : region.shape[1], None] if shade is not None else 1.0)
    region[...] = region * (1 - alpha) + fill * alpha


def _free(box: tuple[float, float, float, float], taken: list[tuple[float, float, float, float]], gap: float) -> bool:
    x0, y0, x1, y1 = box
    return all(x1 + gap < a0 or a1 + gap < x0 or y1 + gap < b0 or b1 + gap < y0 for a0, b0, a1, b1 in taken)


def _draw_container(canvas: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    rim = np.array(rng.choice([[90, 90, 95], [60, 65, 75], [225, 225, 220], [70, 110, 120]]), float)
    rim += rng.normal(0, 6, 3)
    outer = Image.new("L", (w, h), 0)
    radius = int(min(w, h) * 0.18)
    ImageDraw.Draw(outer).rounded_rectangle([0, 0, w - 1, h - 1], radius=radius, fill=255)
    # drop shadow, then the rim, then a darker inside with a shadow along its top edge
    shadow = np.asarray(outer.filter(ImageFilter.GaussianBlur(4)), float) / 255 * 0.45
    sx, sy = x0 + 4, y0 + 5
    sh = canvas[sy:sy + h, sx:sx + w]
    sh *= 1 - shadow[: sh.shape[0], : sh.shape[1], None]
    _paste(canvas, np.asarray(outer, float) / 255, rim, x0, y0)
    t = max(4, int(min(w, h) * 0.12))
    inner = Image.new("L", (w, h), 0)
    ImageDraw.Draw(inner).rounded_rectangle([t, t, w - 1 - t, h - 1 - t], radius=max(1, radius - t), fill=255)
    yy = np.linspace(0.55, 0.85, h)[:, None] * np.ones((1, w))
    _paste(canvas, np.asarray(inner, float) / 255, rim * 0.8, x0, y0, shade=yy / 0.85)


def _draw_item(canvas: np.ndarray, rng: np.random.Generator, kind: int, x: int, y: int,
               size: int) -> tuple[float, float, float, float]:
    """Draw one item with its shadow; return its exact box (where its mask is at least half on)."""
    shape, colour = KINDS[kind]
    mask = np.asarray(_shape_mask(shape, size, rng), float) / 255
    shadow = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)), float)
    sx, sy = x + 2, y + 3
    region = canvas[sy:sy + size, sx:sx + size]
    region *= 1 - (shadow[: region.shape[0], : region.shape[1], None] / 255) * 0.5
    col = np.clip(np.array(colour, float) * rng.uniform(0.85, 1.1) + rng.normal(0, 8, 3), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size]
    shade = 1.05 - 0.25 * ((xx + yy) / (2 * size))  # light from the top left
    _paste(canvas, mask, col, x, y, shade=shade)
    ys, xs = np.nonzero(mask >= 0.5)
    return (x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1)


def make_scene(seed: int, width: int = 320, height: int = 240, n_containers: int | None = None,
               n_items: int | None = None, kinds: list[int] | None = None) -> Scene:
    """One table photo. `kinds`: which kinds may appear (default: as many as containers)."""
    rng = np.random.default_rng(seed)
    scale = min(width, height) / 240
    n_containers = n_containers if n_containers is not None else int(rng.integers(2, 4))
    kinds = kinds if kinds is not None else list(range(max(1, n_containers)))
    n_items = n_items if n_items is not None else int(rng.integers(5, 10))
    canvas = table_texture(rng, width, height)
    boxes, labels, item_kinds, taken = [], [], [], []
    for _ in range(n_containers):
        for _attempt in range(200):
            w = int(rng.uniform(55, 80) * scale)
            h = int(rng.uniform(45, 70) * scale)
            x0 = int(rng.integers(2, max(3, width - w - 8)))
            y0 = int(rng.integers(2, max(3, height - h - 8)))
            box = (x0, y0, x0 + w, y0 + h)
            if _free(box, taken, 8 * scale):
                taken.append(box)
                _draw_container(canvas, rng, box)
                boxes.append(box)
                labels.append(CONTAINER)
                item_kinds.append(-1)
                break
    for i in range(n_items):
        kind = kinds[i % len(kinds)] if i < len(kinds) else int(rng.choice(kinds))
        for _attempt in range(200):
            size = int(rng.uniform(20, 30) * scale)
            x0 = int(rng.integers(2, width - size - 5))
            y0 = int(rng.integers(2, height - size - 5))
            if _free((x0, y0, x0 + size, y0 + size), taken, 5 * scale):
                taken.append((x0, y0, x0 + size, y0 + size))
                boxes.append(_draw_item(canvas, rng, kind, x0, y0, size))
                labels.append(ITEM)
                item_kinds.append(kind)
                break
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    b = np.array(boxes, float).reshape(-1, 4)
    return Scene(image, b, np.array(labels, int), np.array(item_kinds, int),
                 [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in b])


def make_scenes(n: int, seed: int = 0, **kwargs) -> list[Scene]:
    return [make_scene(seed * 100_003 + i, **kwargs) for i in range(n)]


def item_crops(scene: Scene, margin: float = 0.15) -> list[Image.Image]:
    """The true item boxes cut out of the photo (with a small margin, as the demo cuts them)."""
    return [crop(scene.image, box, margin) for box in scene.item_boxes]


def to_coco(scenes: list[Scene], names: list[str]) -> dict:
    """A COCO detection file for `scenes` saved under `names` (what `train.py` reads)."""
    images, annotations = [], []
    for i, (scene, name) in enumerate(zip(scenes, names, strict=True)):
        images.append({"id": i + 1, "file_name": name, "width": scene.image.width, "height": scene.image.height})
        for box, label in zip(scene.boxes, scene.labels, strict=True):
            x0, y0, x1, y1 = map(float, box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": ITEM, "name": "item"}, {"id": CONTAINER, "name": "container"}]}
