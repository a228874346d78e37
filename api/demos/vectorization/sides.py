"""Lines along the straight sides of the ink that nothing found explains.

The skeleton route loses a stroke when other ink touches it along its length: a label's letters
standing on a box's edge, a narrow triangle whose sides meet at a tip, a stroke between two that
run close beside it. Its middle line wanders off into the other ink at every touch and no piece of
it comes out straight. Its sides are still straight where paper is: the ink's outline runs along
the stroke half a pen from its middle. Here the outline of the ink is cut into straight runs
(Douglas–Peucker, SIDE_STRAIGHT px); each run long enough, with deep ink half a pen inside it, and
along which nothing found already lies, gives the line half a pen inside it. Both sides of one
stroke give the same line, and pieces of one line cut where other strokes join it run on from each
other: such lines are made one (`join_runs`), and so are a new line and a found one it runs on
from. Letters touching a stroke have straight sides too: a run beside the letters binarize set
aside as clutter (the rest of a word) gives no line.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .primitives import Primitive, line

SIDE_FLOOR, SIDE_PENS = 15.0, 2.5  # a side shorter than max(these px, this many pen widths) gives no line
SIDE_STRAIGHT = 1.0  # px: how far the outline may stray from a straight side
SIDE_DEPTH = 0.7  # the ink half a pen inside a side is at least this share of half a pen deep (a stroke, not a rim)
EXPLAINED = 0.5  # a side with this share of its line under what was found already gives nothing new
WORD_PENS = 3.0  # a side with letters set aside as clutter within this many pen widths is a letter's
JOIN_TURN = 4.0  # degrees: lines joined end to end run this close to one direction (join_runs)


def side_lines(covered: np.ndarray, mask: np.ndarray, clutter: np.ndarray, distance: np.ndarray,
               width: float, least: float) -> list[Primitive]:
    """The lines half a pen inside the straight sides of `mask` (bool H×W) at least `least` px long
    that `covered` (what was found, drawn a little wider than the pen) does not explain and that do
    not stand among `clutter`'s letters; `distance`: the ink's distance transform. Their ends are
    where the sides' straight runs end, not settled on the ink yet."""
    h, w = mask.shape
    inset = (width - 1) / 2  # outline pixels' centres lie half a pixel inside the ink's edge
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    found = []
    for contour in contours:
        if len(contour) < 2 * least:
            continue
        corners = cv2.approxPolyDP(contour, SIDE_STRAIGHT, True)[:, 0, :].astype(np.float64)
        for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
            span = math.dist(a, b)
            if span < least:
                continue
            normal = np.array([a[1] - b[1], b[0] - a[0]]) / span
            middle = (a + b) / 2
            side = 1.0 if _on(mask, middle + normal * inset) else -1.0 if _on(mask, middle - normal * inset) else 0.0
            if not side:
                continue
            start, stop = a + side * inset * normal, b + side * inset * normal
            points = start + np.linspace(0.0, 1.0, max(2, int(span)))[:, None] * (stop - start)
            xs = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
            ys = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
            if covered[ys, xs].mean() >= EXPLAINED or np.median(distance[ys, xs]) < SIDE_DEPTH * width / 2:
                continue
            if _near(clutter, start, stop, WORD_PENS * width):
                continue
            found.append(line(*(float(v) for v in (*start, *stop))))
    return join_runs(found, width)


def join_runs(lines: list[Primitive], width: float, fixed: int = 0) -> list[Primitive]:
    """`lines` with each one that lies on an earlier one's line (within JOIN_TURN degrees and a
    quarter pen) and overlaps it or nearly meets it end to end (a pen apart) taken into it: the
    earlier line is lengthened, in place, to span both. The first `fixed` lines are only ever
    lengthened (lines found already, which new ones may run on from)."""
    reach, off = max(3.0, width), max(1.5, width / 4)
    sine = math.sin(math.radians(JOIN_TURN))
    kept: list[Primitive] = []
    for index, p in enumerate(lines):
        g = p.geometry
        q = np.array([[g["x1"], g["y1"]], [g["x2"], g["y2"]]])
        for k in kept if index >= fixed else ():
            o = k.geometry
            a, b = np.array([o["x1"], o["y1"]]), np.array([o["x2"], o["y2"]])
            span = math.dist(a, b)
            if span == 0 or q[0].tolist() == q[1].tolist():
                continue
            u = (b - a) / span
            v = (q[1] - q[0]) / math.dist(q[0], q[1])
            if abs(u[0] * v[1] - u[1] * v[0]) > sine or np.abs((q - a) @ np.array([-u[1], u[0]])).max() > off:
                continue
            along = np.sort((q - a) @ u)
            if along[0] > span + reach or along[1] < -reach:
                continue
            low, high = min(0.0, along[0]), max(span, along[1])
            ends = (a[0] + low * u[0], a[1] + low * u[1], a[0] + high * u[0], a[1] + high * u[1])
            o.update(zip(("x1", "y1", "x2", "y2"), (float(v) for v in ends), strict=True))
            break
        else:
            kept.append(p)
    return kept


def _on(mask: np.ndarray, point: np.ndarray) -> bool:
    x, y = int(round(point[0])), int(round(point[1]))
    return 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and bool(mask[y, x])


def _near(pixels: np.ndarray, start: np.ndarray, stop: np.ndarray, reach: float) -> bool:
    """Whether any of `pixels` (bool H×W) lies within `reach` px of the segment start–stop."""
    h, w = pixels.shape
    x0, y0 = (max(0, int(math.floor(min(start[i], stop[i]) - reach))) for i in (0, 1))
    x1, y1 = int(math.ceil(max(start[0], stop[0]) + reach)) + 1, int(math.ceil(max(start[1], stop[1]) + reach)) + 1
    ys, xs = np.nonzero(pixels[y0:min(h, y1), x0:min(w, x1)])
    if not len(xs):
        return False
    points = np.column_stack([xs + x0, ys + y0]).astype(np.float64)
    v = stop - start
    t = np.clip(((points - start) @ v) / max(float(v @ v), 1e-12), 0.0, 1.0)
    return bool((np.hypot(*(points - start - t[:, None] * v).T) <= reach).any())
