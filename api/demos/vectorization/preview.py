"""The preview: the primitives drawn in colour over a faded copy of the image, so a reader sees at
a glance where the vectors sit on the ink (lines red, circles blue, arcs green)."""
from __future__ import annotations

import cv2
import numpy as np

from .primitives import Primitive

COLOURS = {"line": (220, 30, 30), "circle": (30, 80, 230), "arc": (20, 160, 40)}  # RGB


def draw_preview(rgb: np.ndarray, primitives: list[Primitive], mark_ends: bool = True) -> np.ndarray:
    base = rgb if rgb.ndim == 3 else np.dstack([rgb] * 3)
    canvas = (0.35 * base[..., :3].astype(np.float32) + 0.65 * 255).astype(np.uint8)
    h, w = canvas.shape[:2]
    thickness = max(1, round(max(h, w) / 700))
    shift = 4
    for p in primitives:
        colour = COLOURS[p.type]
        pts = np.round(np.array(p.points(step=2.0)) * (1 << shift)).astype(np.int32)
        cv2.polylines(canvas, [pts], p.type == "circle", colour, thickness, cv2.LINE_AA, shift)
        if mark_ends and p.type != "circle":
            for x, y in (pts[0], pts[-1]):
                cv2.circle(canvas, (int(x), int(y)), (thickness + 2) << shift, colour, thickness, cv2.LINE_AA, shift)
    return canvas
