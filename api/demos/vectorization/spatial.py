"""A grid of buckets, so that merging and snapping look only at nearby things; groups of linked
things; the connected components of a mask, and an ellipse's closing (both faster than OpenCV's own calls).

Dense pages (hatching, tables, a page of text that passed the clutter filter) hold thousands of
fragments; comparing every pair made one test page take minutes. Each item is registered in the
cells its bounding box covers, and a query returns the items registered in the cells a box covers.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

Box = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


class Grid:
    def __init__(self, cell: float):
        self.cell = max(float(cell), 1.0)
        self.cells: dict[tuple[int, int], set[int]] = defaultdict(set)
        self.boxes: dict[int, Box] = {}

    def _keys(self, box: Box) -> Iterable[tuple[int, int]]:
        x0, y0, x1, y1 = (math.floor(v / self.cell) for v in box)
        if (x1 - x0 + 1) * (y1 - y0 + 1) > 1_000_000:  # a huge box (a giant circle): clamp
            x1, y1 = x0 + 999, y0 + 999
        for i in range(x0, x1 + 1):
            for j in range(y0, y1 + 1):
                yield i, j

    def add(self, item: int, box: Box) -> None:
        self.remove(item)
        self.boxes[item] = box
        for key in self._keys(box):
            self.cells[key].add(item)

    def remove(self, item: int) -> None:
        box = self.boxes.pop(item, None)
        if box is None:
            return
        for key in self._keys(box):
            self.cells[key].discard(item)

    def query(self, box: Box) -> list[int]:
        """Items whose cells meet the box's, in the order they were numbered."""
        found: set[int] = set()
        for key in self._keys(box):
            found |= self.cells.get(key, set())
        return sorted(found)


def grown(box: Box, margin: float) -> Box:
    return box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin


def box_of(points) -> Box:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def groups(n: int, links: list[tuple[int, int]]) -> np.ndarray:
    """For each of `n` things, the number of its group, the groups being those that the `links`
    (pairs of indices) join directly or through others (a run of dashes, a coil's turns, a row of rings)."""
    rows = np.array([i for i, _ in links], dtype=np.int64)
    cols = np.array([j for _, j in links], dtype=np.int64)
    _, group = connected_components(coo_matrix((np.ones(len(links)), (rows, cols)), shape=(n, n)), directed=False)
    return group


def group_sizes(n: int, links: list[tuple[int, int]]) -> np.ndarray:
    """For each of `n` things, how many things its group holds (groups)."""
    group = groups(n, links)
    return np.bincount(group)[group]


def at_points(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`image`'s values at the pixels nearest `points` (N×2, x y), a point off the image read at
    its nearest edge. np.rint and np.minimum/np.maximum, not np.round and np.clip: the same
    values, without their overhead on the short walks and gaps read thousands of times a page."""
    h, w = image.shape[:2]
    xs = np.minimum(np.maximum(np.rint(points[:, 0]).astype(int), 0), w - 1)
    ys = np.minimum(np.maximum(np.rint(points[:, 1]).astype(int), 0), h - 1)
    return image[ys, xs]


def on_mask(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`mask` (bool) at the pixels nearest (xs, ys), arrays of one shape, False off the image: the
    ink under a walk, a ray or a primitive's samples (np.rint: np.round's values, faster)."""
    h, w = mask.shape
    px, py = np.rint(xs).astype(int), np.rint(ys).astype(int)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    out = np.zeros(px.shape, bool)
    out[inside] = mask[py[inside], px[inside]]
    return out


def components(mask: np.ndarray, connectivity: int = 8) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, labels, stats) of a mask's connected components, as cv2.connectedComponentsWithStats
    gives them (label 0: the background), labelled on one thread with the BBDT algorithm.

    OpenCV labels in parallel whenever it may use several threads, and on ink (sparse) that cost
    three times the CPU of one thread and was slower too (a 1000 px page on this project's 2-core
    machine: 9.9 ms CPU and 4.9 ms wall against 3.0 ms); the labels are the same. The thread
    count is OpenCV's process-wide setting, put back at once."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
            mask.astype(np.uint8), connectivity, cv2.CV_32S, cv2.CCL_GRANA)
    finally:
        cv2.setNumThreads(threads)
    return count, labels, stats


def close(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """cv2.morphologyEx(image, cv2.MORPH_CLOSE, kernel) for a kernel whose rows are each one run
    (an ellipse), to the bit, in half the CPU: OpenCV walks a non-rectangular kernel's every row
    over the image, while a row's run is a one-row kernel OpenCV slides fast, and rows of equal
    runs (an ellipse's mirror halves, its flat top) share it."""
    return _by_rows(_by_rows(image, kernel, cv2.dilate, np.maximum), kernel, cv2.erode, np.minimum)


def _by_rows(image: np.ndarray, kernel: np.ndarray, morph, pick) -> np.ndarray:
    """Dilation or erosion (`morph`, `pick`: cv2.dilate, np.maximum or cv2.erode, np.minimum) by
    `kernel`, anchored at its centre, as one row-run pass per distinct run, each shifted into
    place; rows beyond the image are left out, as OpenCV's default border does."""
    centre = kernel.shape[0] // 2
    runs: dict[tuple[int, int], list[int]] = {}
    for dy, row in enumerate(kernel):
        on = np.flatnonzero(row)
        if on.size:
            runs.setdefault((int(on[0]), int(on[-1])), []).append(dy - centre)
    h = image.shape[0]
    out: np.ndarray | None = None
    for (first, last), shifts in sorted(runs.items(), key=lambda item: 0 not in item[1]):  # the centre row's first
        run = np.zeros((1, kernel.shape[1]), np.uint8)
        run[0, first:last + 1] = 1
        along = morph(image, run)
        if out is None:
            out = along.copy()
        for shift in shifts:  # out[y] takes along[y + shift]
            if abs(shift) >= h:
                continue
            if shift >= 0:
                pick(out[:h - shift], along[shift:], out=out[:h - shift])
            else:
                pick(out[-shift:], along[:h + shift], out=out[-shift:])
    assert out is not None, "an empty kernel"
    return out
