"""Synthetic book pages with figures pasted at known places: the regions demo's test and bench data.

Each page is paper-coloured, carries lines of "text" (dark strokes), and holds one to three
figures of two kinds: `illustration` (a framed, colourful picture) and `diagram` (black line
drawing of circles and segments on white). The boxes are exact, so a detector can be scored.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("illustration", "diagram")
YOLO_IMGSZ = 160  # the detector trained on these pages (conftest.py: trained_yolo) is trained and run at this size
TRAIN_THREADS = 2  # every machine trains it with this many threads: the same sums, so the same weights


@dataclass
class Page:
    image: Image.Image
    boxes: list[tuple[int, int, int, int, int]]  # (class index, x1, y1, x2, y2), pixels


def _illustration(rng: random.Random, w: int, h: int) -> Image.Image:
    base = tuple(rng.randint(40, 200) for _ in range(3))
    img = Image.new("RGB", (w, h), base)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(12, 30)):
        x, y = rng.randint(0, w), rng.randint(0, h)
        r = rng.randint(4, max(5, min(w, h) // 3))
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    ImageDraw.Draw(img).rectangle((0, 0, w - 1, h - 1), outline=(20, 15, 10), width=3)
    return img


def _diagram(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), (250, 248, 240))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 6)):
        cx, cy = rng.randint(w // 4, 3 * w // 4), rng.randint(h // 4, 3 * h // 4)
        r = rng.randint(min(w, h) // 8, max(min(w, h) // 8 + 1, min(w, h) // 2 - 2))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(10, 10, 10), width=2)
    for _ in range(rng.randint(4, 10)):
        draw.line((rng.randint(0, w), rng.randint(0, h), rng.randint(0, w), rng.randint(0, h)),
                  fill=(10, 10, 10), width=2)
    return img


def _overlaps(box, others, margin=12) -> bool:
    x1, y1, x2, y2 = box
    return any(x1 < b[3] + margin and b[1] < x2 + margin and y1 < b[4] + margin and b[2] < y2 + margin
               for b in others)


def make_page(seed: int, size: tuple[int, int] | None = None) -> Page:
    """One page; the same seed always gives the same page."""
    rng = random.Random(seed)
    width, height = size or (rng.randint(420, 640), rng.randint(560, 820))
    paper = (rng.randint(225, 245), rng.randint(215, 235), rng.randint(190, 215))
    page = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(page)
    boxes: list[tuple[int, int, int, int, int]] = []
    for _ in range(rng.randint(1, 3)):
        for _attempt in range(20):
            w = rng.randint(width // 4, int(width * 0.7))
            h = rng.randint(height // 7, int(height * 0.4))
            x1, y1 = rng.randint(20, width - w - 20), rng.randint(20, height - h - 20)
            box = (x1, y1, x1 + w, y1 + h)
            if not _overlaps(box, boxes):
                kind = rng.randrange(len(CLASSES))
                figure = _illustration(rng, w, h) if kind == 0 else _diagram(rng, w, h)
                page.paste(figure, box[:2])
                boxes.append((kind, *box))
                break
    # text lines around the figures
    y = 30
    while y < height - 30:
        x = 30
        while x < width - 60:
            word = rng.randint(15, 60)
            line = (x, y, min(x + word, width - 30), y + 6)
            if not _overlaps(line, boxes, margin=6):
                draw.rectangle(line, fill=(60, 50, 40))
            x += word + rng.randint(6, 12)
        y += rng.randint(16, 22)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    return Page(page, boxes)


def write_yolo_dataset(folder: Path, train: int, val: int, seed: int = 0) -> Path:
    """An ultralytics dataset (images + YOLO label files + data.yaml); returns the yaml's path."""
    for split, count, offset in (("train", train, seed), ("val", val, seed + 100_000)):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            page = make_page(offset + i)
            page.image.save(folder / "images" / split / f"{i:04d}.jpg", quality=90)
            w, h = page.image.size
            lines = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                     for c, x1, y1, x2, y2 in page.boxes]
            (folder / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    data = folder / "data.yaml"
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    data.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return data


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assert_same_detections(expected, found, conf: float, min_iou: float = 0.9, conf_tol: float = 0.05) -> int:
    """Both ways, every detection (with cls, confidence, x1..y2) above `conf` + `conf_tol` has a
    counterpart of its class in the other list, with IoU >= `min_iou` and a confidence within
    `conf_tol`. One closer to the threshold may fall either side of it in the other runtime, so
    it is not counted. Returns how many detections were compared."""
    compared = 0
    for ours, theirs in ((expected, found), (found, expected)):
        for det in ours:
            if det.confidence < conf + conf_tol:
                continue
            box = (det.x1, det.y1, det.x2, det.y2)
            same_class = [o for o in theirs if o.cls == det.cls]
            assert same_class, (det, theirs)
            best = max(same_class, key=lambda o: iou(box, (o.x1, o.y1, o.x2, o.y2)))
            assert iou(box, (best.x1, best.y1, best.x2, best.y2)) >= min_iou, (det, best)
            assert abs(best.confidence - det.confidence) <= conf_tol, (det, best)
            compared += 1
    return compared
