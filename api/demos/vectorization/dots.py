"""Small circles drawn with a pen as wide as their hole: dots.

A circle whose radius is not much more than the pen's width shows no hole (or one so small that
the binarizer fills it as a pinhole): a solid round blob, with the strokes that meet it leaving it.
Its skeleton is a point or a knot of junctions, so the chain route never sees a circle there.
Schematics are full of them (junction dots, terminals, a transformer's polarity dots) and CAD
drawings use them for small holes. A dot is found on the ink's distance transform: a local maximum
clearly deeper than a stroke, around which the ink ends at one distance on most rays (the free
outline of a disc; the rays along the strokes leaving it run on). Its circle is the outline less
half a pen width (the pen drew the circle's centre line). A dot where wires cross or tee shows its
outline only between the strokes leaving it, and gets a second look (_junction_dot).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .binarize import Band, discs
from .fitting import fit_circle, median
from .primitives import Primitive, circle
from .spatial import components, on_mask

RAYS = 32
DEPTH = 1.45  # a dot's middle lies this many stroke half-widths deep (a stroke's middle: 1)
CORNER_TURN = 70.0  # degrees: two strokes leaving a blob closer than this meet at a corner (dots._a_corner)
ROUND_SHARE = 0.6  # share of rays whose ink ends at the outline's radius (±1.5 px)
# a blob whose outline lies this many pen widths out may be a dot where strokes meet (dots._junction_dot) …
JUNCTION_OUTLINE = 1.4
# … when this share of the rays clear of the strokes leaving it end at its outline, evenly (their
# ends' standard deviation under JUNCTION_SPREAD px)
JUNCTION_SHARE, JUNCTION_SPREAD = 0.85, 0.7
JUNCTION_FIRST = 0.7  # … a first, cheap look from the deepest pixel: this share within 2.5 px of it


def find_dots(ink: np.ndarray, kept: np.ndarray, distance: np.ndarray, width: float, min_radius: float,
              max_radius: float | None = None, words: Sequence[Band] = ()) -> list[Primitive]:
    """Circles drawn as solid dots (see the module's doc). `ink`: all ink; `kept`: the ink less
    clutter (text: the joints of bold letters are deep too), a dot is looked for there or in a
    clutter component that is itself a round disc (a polarity dot standing alone, not in one of the
    `words`' bands: a bold asterisk, "REF**"); `distance`: the ink's distance transform, `width`:
    the pen width in px."""
    half = width / 2
    deep = max(DEPTH * (half + 0.5), half + 2.0)
    if not (distance >= deep).any():
        return []
    peaks = (distance >= deep) & (distance >= cv2.dilate(distance, np.ones((5, 5), np.uint8)))
    peaks &= kept | _discs(ink & ~kept, words)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-distance[ys, xs], kind="stable")
    found: list[tuple[float, float, float]] = []
    tried = _Tried(half)
    angles = np.linspace(0, 2 * math.pi, RAYS, endpoint=False)
    limit = int(max_radius if max_radius is not None else 4 * width) + int(3 * width) + 4
    rays = Rays(np.cos(angles), np.sin(angles), np.arange(0, limit, 0.5))
    for i in order:
        x, y = float(xs[i]), float(ys[i])
        depth = float(distance[ys[i], xs[i]])
        if any(math.hypot(x - fx, y - fy) < fr for fx, fy, fr in found) or \
                tried.near(x, y):
            continue
        tried.add(x, y)
        ends = rays.ends(ink, x, y)
        dot = _dot_at(ends, x, y, depth, width, rays) or _junction_dot(ink, ends, x, y, depth, width, rays)
        if dot is not None and dot[2] - half >= max(min_radius, 1.0) and \
                (max_radius is None or dot[2] - half <= max_radius):
            found.append(dot)
    return [circle(cx, cy, r - half) for cx, cy, r in found]


_BEFORE, _AFTER = np.roll(np.arange(RAYS), 1), np.roll(np.arange(RAYS), -1)  # each ray's neighbours round


class _Tried:
    """The peaks looked at so far, found by cells: a peak less than `half` px from one of them
    (Manhattan distance) is a pixel of the same blob, not looked at again."""

    def __init__(self, half: float):
        self.half, self.cell = half, max(1.0, math.ceil(half))
        self.cells: dict[tuple[int, int], list[tuple[float, float]]] = {}

    def near(self, x: float, y: float) -> bool:
        cx, cy = int(x // self.cell), int(y // self.cell)
        return any(abs(x - tx) + abs(y - ty) < self.half
                   for i in (cx - 1, cx, cx + 1) for j in (cy - 1, cy, cy + 1) for tx, ty in self.cells.get((i, j), ()))

    def add(self, x: float, y: float) -> None:
        self.cells.setdefault((int(x // self.cell), int(y // self.cell)), []).append((x, y))


@dataclass(frozen=True)
class Rays:
    """Rays cast from a point in RAYS directions, read every half pixel out to a limit."""
    cos: np.ndarray
    sin: np.ndarray
    steps: np.ndarray

    def ends(self, ink: np.ndarray, x: float, y: float) -> np.ndarray:
        """How far each ray from (x, y) runs on `ink` before it first meets paper (px)."""
        on = along_rays(ink, x, y, self.cos, self.sin, self.steps)
        return np.where((~on).any(axis=1), np.argmax(~on, axis=1), len(self.steps)) * 0.5


def _dot_at(ends: np.ndarray, x: float, y: float, depth: float, width: float, rays: Rays,
            junction: bool = False) -> tuple[float, float, float] | None:
    """The outline circle (cx, cy, r) of a dot whose deepest pixel is (x, y), `depth` deep, from
    how far `rays` cast from there run on ink (`ends`); None when the ink there is no dot.
    `junction`: (x, y) is the outline's centre, and the rays beside the strokes leaving it are set
    aside (_junction_dot)."""
    half = width / 2
    deep = max(DEPTH * (half + 0.5), half + 2.0)
    outline = float(median(ends))
    round_rays = np.abs(ends - outline) <= 1.5
    # the rays that miss the outline run along a stroke leaving the dot, for more than a pen
    # width; ink that stops a little further out is a wedge (acute corner, arrowhead, letter)
    runs_on = ends >= outline + 2 * width + 2.0
    beside = runs_on | runs_on[_BEFORE] | runs_on[_AFTER]
    if outline < deep - 1.0 or outline > depth + 2.5:
        return None
    if not junction and round_rays.mean() < ROUND_SHARE:
        return None
    if junction and (round_rays.sum() < JUNCTION_SHARE * max(1, int((~beside).sum())) or
                     len(_runs_round(runs_on)) < 2 or float(np.std(ends[round_rays])) > JUNCTION_SPREAD):
        return None
    between = (ends > outline + 1.5) & ~beside  # (a ray grazing a leaving stroke's side stops beside it)
    if junction:  # … and one stopping more than a pen out met another stroke, not a wedge's side
        between &= ends < outline + width + 2.0
    if between.sum() > 1:
        return None
    if not _narrow_gaps(~round_rays, outline, half) or _a_corner(runs_on):
        return None
    points = np.column_stack([x + rays.cos[round_rays] * ends[round_rays], y + rays.sin[round_rays] * ends[round_rays]])
    fit = fit_circle(points)
    if fit is None or math.hypot(fit.cx - x, fit.cy - y) > 2.0 or abs(fit.r - outline) > 2.0:
        return None
    return fit.cx, fit.cy, fit.r


def _junction_dot(ink: np.ndarray, ends: np.ndarray, x: float, y: float, depth: float, width: float,
                  rays: Rays) -> tuple[float, float, float] | None:
    """A second look (_dot_at) for a dot where wires cross or tee. Its outline shows only between
    the strokes leaving it, and each stroke takes the rays beside it too (they graze its sides),
    so too few rays end on the outline; the deepest pixel also lies up to a pixel off the dot's
    centre, which makes the ends uneven. Only a blob clearly wider than a stroke with two strokes
    leaving it or more is looked at again (JUNCTION_OUTLINE), from its outline's centre; the rays
    beside the strokes are set aside, and nearly all the others must end on the outline, evenly
    (JUNCTION_SHARE, JUNCTION_SPREAD): where strokes blurred by a scan meet without a dot, the
    corners between them are hollow, not round. The rays from the deepest pixel (`ends`) must show
    a blob like that already, more loosely (JUNCTION_FIRST), before it is looked at again."""
    outline = float(median(ends))
    if outline < JUNCTION_OUTLINE * width or outline > depth + 3.5:
        return None
    runs_on = ends >= outline + 2 * width + 2.0
    if len(_runs_round(runs_on)) < 2:
        return None
    beside = runs_on | runs_on[_BEFORE] | runs_on[_AFTER]
    if (np.abs(ends - outline) <= 2.5).sum() < JUNCTION_FIRST * (~beside).sum():
        return None
    near = np.abs(ends - outline) <= 3.0
    centre = fit_circle(np.column_stack([x + rays.cos[near] * ends[near], y + rays.sin[near] * ends[near]]))
    if centre is None or math.hypot(centre.cx - x, centre.cy - y) > 2.0:
        return None
    return _dot_at(rays.ends(ink, centre.cx, centre.cy), centre.cx, centre.cy, depth, width, rays, junction=True)


def along_rays(mask: np.ndarray, x: float, y: float, cos: np.ndarray, sin: np.ndarray,
               steps: np.ndarray) -> np.ndarray:
    """`mask` (bool H×W) read along rays from (x, y) in the directions (cos, sin), at the distances
    `steps`: rays × steps, False off the image."""
    return on_mask(mask, x + cos[:, None] * steps[None, :], y + sin[:, None] * steps[None, :])


def _a_corner(leaving: np.ndarray) -> bool:
    """Whether the strokes leaving a blob (`leaving`: the rays that run on, going round) are two
    meeting at an acute angle: a zigzag's or an arrow's corner that blur filled, not a dot."""
    runs = _runs_round(leaving)
    if len(runs) != 2:
        return False
    (first, a), (second, b) = runs
    apart = abs((second + (b - 1) / 2) - (first + (a - 1) / 2)) * 360.0 / len(leaving)
    return min(apart, 360.0 - apart) < CORNER_TURN


def _runs_round(flags: np.ndarray) -> list[tuple[int, int]]:
    """The runs of consecutive True rays going round (first ray, counted on past the last one so
    that a run never wraps; length); none when all rays or none are True."""
    n = len(flags)
    if not flags.any() or flags.all():
        return []
    start = int(np.argmin(flags))  # a False ray: runs do not wrap past it
    runs: list[tuple[int, int]] = []
    for k in range(1, n + 1):
        if flags[(start + k) % n]:
            if runs and runs[-1][0] + runs[-1][1] == start + k:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((start + k, 1))
    return runs


def _discs(mask: np.ndarray, words: Sequence[Band]) -> np.ndarray:
    """The components of `mask` that are solid discs (binarize.discs) not inside one of the
    `words`' bands."""
    count, labels, stats = components(mask)
    keep = discs(stats)
    x, y, w, h = (stats[:, k] for k in range(4))
    for x0, y0, x1, y1, _ in words:
        keep &= ~((x >= x0) & (y >= y0) & (x + w <= x1) & (y + h <= y1))
    keep[0] = False
    return np.take(keep, labels)


def _narrow_gaps(off: np.ndarray, outline: float, half: float) -> bool:
    """Whether each run of rays that miss the outline (going round) is no wider than one stroke
    leaving the dot: an arrowhead's tip or a letter's joint misses it over a broad sector."""
    if not off.any():
        return True
    if off.all():
        return False
    n = len(off)
    stroke = 2 * math.asin(min(1.0, (half + 1.0) / max(outline, 1e-6)))
    allowed = int(math.ceil(stroke / (2 * math.pi / n))) + 1
    return all(length <= allowed for _, length in _runs_round(off))
