"""From an ink mask to ordered pixel chains along the strokes' centre lines.

The skeleton (one pixel wide) is cut at its junctions (pixels with three or more neighbours), so
each remaining piece is a simple path or a closed loop; each is walked into an ordered list of
points. Fitting lines and arcs to ordered points is then one-dimensional, and the pieces a
junction cut apart are joined again later by geometry (collinear lines, cocircular arcs).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import skeletonize

from .spatial import components

# a chain loses at most this share of its points at each end to trimming: a small circle crossed by a
# line through its centre is two half-circle chains between junctions, and trimmed by a quarter at
# both ends what is left is too short and too flat to be an arc any more
TRIM_SHARE = 6
NEIGHBOURS_4 = ((0, 1), (1, 0), (0, -1), (-1, 0))
NEIGHBOURS_8 = NEIGHBOURS_4 + ((1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass
class Chain:
    points: np.ndarray  # N×2 float (x, y), in walking order
    closed: bool  # a loop with no end (e.g. a circle nothing touches)
    at_junction: tuple[bool, bool] = (False, False)  # whether its first / last point touches a junction

    def trimmed(self, n: int) -> Chain:
        """Without `n` points at each end that touches a junction, where skeletons bend towards the
        other stroke; a chain never loses more than a TRIM_SHARE-th of its points at either end."""
        first, last = self.at_junction
        total = len(self.points)
        n = min(n, total // TRIM_SHARE)
        if n <= 0 or not (first or last):
            return self
        lo = n if first else 0
        hi = total - n if last else total
        return Chain(self.points[lo:hi], self.closed, self.at_junction)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """skimage's skeletonize (Zhang-Suen), to the pixel, one connected component at a time in its
    own box: thinning looks at a pixel's 8 neighbours only, which are its component's or paper, but
    each pass scans the whole image it is given, and a page is mostly paper (12 KiCad pages: 20 →
    13 ms a page clean, 39 → 19 ms scan-like)."""
    count, labels, stats = components(mask)
    out = np.zeros(mask.shape, bool)
    h, w = mask.shape
    for k in range(1, count):
        x, y, bw, bh, _ = (int(v) for v in stats[k])
        x0, y0, x1, y1 = max(0, x - 1), max(0, y - 1), min(w, x + bw + 1), min(h, y + bh + 1)
        out[y0:y1, x0:x1] |= skeletonize(labels[y0:y1, x0:x1] == k)
    return out


RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))  # round a pixel, in order
_CODES = np.arange(256)
_BITS = (_CODES[:, None] >> np.arange(8)) & 1  # code → its ring's 8 neighbours, RING's order
RING_COUNT = _BITS.sum(axis=1).astype(np.uint8)  # code → how many neighbours are set
# code → how many separate groups they form: neighbours next to each other on the ring are one
# group, so a group begins at each unset → set step going round
RING_GROUPS = ((_BITS == 0) & (np.roll(_BITS, -1, axis=1) == 1)).sum(axis=1).astype(np.uint8)
_WEIGHTS = np.zeros((3, 3), np.float32)  # RING[i]'s weight in a pixel's byte: 2 ** i
_WEIGHTS[[1 + dy for dy, _ in RING], [1 + dx for _, dx in RING]] = 2.0 ** np.arange(8)


def ring_codes(skel: np.ndarray) -> np.ndarray:
    """Each pixel's 8 neighbours as one byte (bit i: RING[i] is set), to look up what is asked of
    them in a table (RING_COUNT, RING_GROUPS) in one pass over the page: a correlation with the
    bits' weights (exact in float32: sums of distinct powers of two up to 255)."""
    return cv2.filter2D(skel.astype(np.uint8), cv2.CV_32F, _WEIGHTS, borderType=cv2.BORDER_CONSTANT).astype(np.uint8)


def chains_of(skel: np.ndarray, min_points: int = 3, spur: int = 0) -> list[Chain]:
    """Ordered chains of the skeleton with its junction pixels removed. `spur`: with it, clusters
    of crowded pixels where at least three branches of `spur` pixels or more meet are junctions
    too (see _cluster_junctions); 0: single-pixel junctions only."""
    code = ring_codes(skel)
    count = RING_COUNT[code]
    junction = skel & (count >= 3)
    # A pixel with 3 neighbours on a staircase is not a junction: keep it when its neighbours do
    # not fall into three separate groups around it.
    junction &= RING_GROUPS[code] >= 3
    if spur:
        junction |= _cluster_junctions(skel, count, spur)
    body = skel & ~junction
    n, labels, _ = components(body)
    ys, xs = np.nonzero(body)
    order = np.argsort(labels[ys, xs], kind="stable")
    ys, xs = ys[order], xs[order]
    bounds = np.searchsorted(labels[ys, xs], np.arange(1, n + 1))
    near_junction = cv2.dilate(junction.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    chains = []
    for k in range(1, n):
        lo, hi = bounds[k - 1], bounds[k]
        if hi - lo < min_points:
            continue
        for chain in _walk(list(zip(ys[lo:hi].tolist(), xs[lo:hi].tolist(), strict=True))):
            if len(chain.points) < min_points:
                continue
            (x0, y0), (x1, y1) = chain.points[0].astype(int), chain.points[-1].astype(int)
            chain.at_junction = (bool(near_junction[y0, x0]), bool(near_junction[y1, x1]))
            chains.append(chain)
    return chains


def _cluster_junctions(skel: np.ndarray, count: np.ndarray, spur: int) -> np.ndarray:
    """Junctions the one-pixel test misses: where thick strokes meet, the skeleton's crowded
    pixels (three or more neighbours) come in clusters of two or more, none of which has three
    separate groups of neighbours by itself, and the walk went straight through them, joining a
    diode's sides to its bar and the wire through it into one chain that turns anywhere. A
    cluster is a junction when the skeleton leaving it falls into three or more groups, each on a
    branch of at least `spur` pixels: a staircase has two, and the short spurs a thick stroke's
    skeleton sprouts along its side do not count (cutting there would cut lines and arcs in two)."""
    crowded = skel & (count >= 3)
    body = skel & ~crowded
    _, body_labels, body_stats = components(body)
    long_branch = body_stats[:, cv2.CC_STAT_AREA] >= spur
    n, labels, stats = components(crowded)
    found = np.zeros_like(skel, dtype=bool)
    h, w = skel.shape
    ring_kernel = np.ones((3, 3), np.uint8)
    for k in range(1, n):
        x, y, bw, bh, _ = (int(v) for v in stats[k])
        x0, y0, x1, y1 = max(0, x - 1), max(0, y - 1), min(w, x + bw + 1), min(h, y + bh + 1)
        mine = labels[y0:y1, x0:x1] == k
        ring = (cv2.dilate(mine.astype(np.uint8), ring_kernel) > 0) & body[y0:y1, x0:x1]
        groups, group_labels, _ = components(ring)
        if groups - 1 < 3:
            continue
        owners = body_labels[y0:y1, x0:x1]
        branches = sum(bool(long_branch[owners[group_labels == g]].any()) for g in range(1, groups))
        if branches >= 3:
            found[y0:y1, x0:x1] |= mine
    return found


def _walk(pixels: list[tuple[int, int]]) -> list[Chain]:
    """Walk a component from one of its ends (or anywhere, for a loop); what one walk leaves
    behind (a branch the junction test missed) is walked again."""
    remaining = set(pixels)
    chains = []
    while len(remaining) >= 3:
        chains.append(_walk_once(remaining, [p for p in pixels if p in remaining]))
    return chains


def _walk_once(remaining: set, pixels: list[tuple[int, int]]) -> Chain:
    def degree(p) -> int:
        y, x = p
        return sum((y + dy, x + dx) in remaining for dy, dx in NEIGHBOURS_8)

    start = next((p for p in pixels if degree(p) <= 1), None)
    closed = start is None
    if closed:
        start = pixels[0]
    path = [start]
    remaining.discard(start)
    current = start
    while True:
        y, x = current
        step = None
        for dy, dx in NEIGHBOURS_8:  # side neighbours first: a staircase is walked stair by stair
            if (y + dy, x + dx) in remaining:
                step = (y + dy, x + dx)
                break
        if step is None:
            break
        remaining.discard(step)
        path.append(step)
        current = step
    if closed:
        y0, x0 = start
        y1, x1 = path[-1]
        closed = max(abs(y0 - y1), abs(x0 - x1)) <= 1 and len(path) > 8
    points = np.array([(x, y) for y, x in path], np.float64)
    return Chain(points=points, closed=closed)
