"""Line pieces along the straight sides of holes: the strokes round a small closed shape.

A small triangle, an hourglass or an arrowhead drawn with a thick pen is almost all ink: its
skeleton is a loop round a tiny hole, rounded at every corner and cut wherever a wire runs
through, so it gives arcs and stubs, not the shape's sides. The hole itself keeps the shape: the
paper a closed shape encloses (the ink kept, less clutter: a letter's counter is not there) is
the shape shrunk by half a pen, with sharp corners, and a wire through it cuts it into holes that
are polygons too. Each straight side of a hole, moved half a pen outwards, lies along the middle
of the stroke bounding it. These sides are handed to the line merging as pieces, like the
skeleton's (lines.cluster_lines): sides of the two halves of a hole cut by a wire join into one
line, and a side lying along a stroke the skeleton does follow joins its pieces.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from .fitting import Piece, fit_line
from .primitives import Primitive
from .spatial import at_points, components

LEAST_PENS = 2.0  # a hole's side at least this many pen widths long (shorter: a rounded bit, a notch)
SIDE_STRAIGHT = 1.25  # px: the hole's outline stays this close to a side all along it (a circle's hole does not)
BULGE = 0.5  # px: the middle half of a side lies on it this closely on average (a chord of a round hole does not)
POLYGON_MOST, POLYGON_PENS = 6, 0.8  # a hole that is a polygon of so few sides, all straight: sides this long count
ROW_SINE = 0.05  # runs this parallel (sine of the angle between them) may be one side cut by letters
DEEP = 0.6  # share of half a pen the ink is deep all along the side moved out (it lies in a stroke)
TANGENT_EDGE = 1.5  # px: a straight run of the outline this close to a circle's tangent moved half a pen out: a side
SIDE_ENDS = 0.75  # … when it passes the tangent point, both its ends this many pens beyond the circle (corners)
CROWDED = 0.25  # … looked for round a circle with ink just outside its stroke on this share of the rays round it


Holes = tuple[int, np.ndarray, np.ndarray]  # the paper's 4-connected components: count, labels, stats


def holes_of(kept: np.ndarray) -> Holes:
    """The paper of `kept` (bool H×W, the ink less clutter: a letter's counter is not a hole) in
    4-connected components: the holes, and the paper round the drawing touching the border."""
    return components((~kept).astype(np.uint8), connectivity=4)


def inner_holes(holes: Holes, wanted: Callable[[int, int], bool]) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """The holes (holes_of) not touching the border whose box's width and height are `wanted`:
    each one's label, its box's corner (x, y) and its pixels in that box (uint8, 1 in the hole)."""
    count, labels, stats = holes
    h, w = labels.shape
    for k in range(1, count):
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        if x > 0 and y > 0 and x + bw < w and y + bh < h and wanted(bw, bh):
            yield k, x, y, (labels[y:y + bh, x:x + bw] == k).astype(np.uint8)


def hole_sides(holes: Holes, distance: np.ndarray, width: float) -> list[Piece]:
    """Line pieces (1 px apart) along the middle of the strokes that bound the straight sides of
    the `holes` (holes_of); `distance`: the ink's distance transform; `width`: the pen width in px."""
    labels = holes[1]
    least = LEAST_PENS * width
    shift = 0.5 + width / 2  # from the hole's edge pixels' centres to the stroke's middle
    pieces: list[Piece] = []
    for k, x, y, crop in inner_holes(holes, lambda bw, bh: max(bw, bh) >= least):
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            pieces += _sides(contour[:, 0, :].astype(np.float64) + (x, y), labels, k, least, shift, distance, width)
    return pieces


def _sides(outline: np.ndarray, labels: np.ndarray, hole: int, least: float, shift: float,
           distance: np.ndarray, width: float) -> list[Piece]:
    """The straight runs of a hole's `outline` long enough (`_runs`), each moved `shift` px away
    from the hole (its pixels labelled `hole`) where the ink is that deep all along."""
    runs = [(run, _straight(run, labels, hole)) for run in _runs(outline, width)]
    polygon = len(runs) <= POLYGON_MOST and all(frame is not None for _, frame in runs)
    shortest = POLYGON_PENS * width if polygon else least
    out = []
    for i, (run, frame) in enumerate(runs):
        if frame is None or frame[0] < POLYGON_PENS * width:
            continue
        if frame[0] < shortest and not _in_a_row(i, runs, least):
            continue
        length, ux, uy, nx, ny = frame
        steps = np.arange(0.0, length + 0.5, 1.0)
        points = np.column_stack([run[0, 0] + steps * ux + shift * nx, run[0, 1] + steps * uy + shift * ny])
        if at_points(distance, points).min() >= DEEP * width / 2:
            out.append(Piece("line", points))
    return out


def _in_a_row(i: int, runs: list, least: float) -> bool:
    """Whether the straight run `i` of a hole's outline lies on one line with another straight run
    of it, the two spanning at least `least` px: a box's side that letters standing on it cut
    into short stretches between them."""
    run, (_, ux, uy, nx, ny) = runs[i]
    spans = []
    for other, frame in runs:
        if frame is None or abs(ux * frame[2] - uy * frame[1]) > ROW_SINE or ux * frame[1] + uy * frame[2] < 0:
            continue  # bent, or not heading the same way
        if np.abs((other - run[0]) @ np.array([nx, ny])).max() > SIDE_STRAIGHT + 0.5:
            continue
        along = (other - run[0]) @ np.array([ux, uy])
        spans.append((along.min(), along.max()))
    return len(spans) >= 2 and max(b for _, b in spans) - min(a for a, _ in spans) >= least


def _runs(outline: np.ndarray, width: float) -> list[np.ndarray]:
    """A hole's `outline` (its edge pixels in order) cut at the corners of the polygon that
    approximates it: the runs between corners, each a side when it is straight. Sides are kept
    at least LEAST_PENS pens long, or POLYGON_PENS pens when the hole is a polygon of a few sides
    all straight (a small triangle's half on either side of a wire: its short sides are strokes
    too, not rounded bits) or when they lie in a row along one line (`_in_a_row`)."""
    if len(outline) < 8:
        return []
    corners = cv2.approxPolyDP(outline.astype(np.float32).reshape(-1, 1, 2), max(1.0, width / 6), True)
    # each corner's first place on the outline (the corners are outline pixels): pixels as numbers,
    # each number's first place, looked up for all corners at once
    stride = int(outline[:, 0].max()) + 2
    places, first = np.unique(outline[:, 1].astype(np.int64) * stride + outline[:, 0].astype(np.int64),
                              return_index=True)
    keys = np.rint(corners[:, 0, 1]).astype(np.int64) * stride + np.rint(corners[:, 0, 0]).astype(np.int64)
    index = sorted(set(first[np.searchsorted(places, keys)].tolist()))
    return [outline[a:b + 1] if a < b else np.concatenate([outline[a:], outline[:b + 1]])
            for a, b in zip(index, index[1:] + index[:1], strict=True)]


def _straight(run: np.ndarray, labels: np.ndarray, hole: int) -> tuple[float, float, float, float, float] | None:
    """(length, direction, normal pointing away from the hole, whose pixels are labelled `hole`)
    of a straight run; None when it bends."""
    x0, y0, x1, y1 = float(run[0, 0]), float(run[0, 1]), float(run[-1, 0]), float(run[-1, 1])
    length = math.hypot(x1 - x0, y1 - y0)  # plain floats: thousands of short runs a page
    if length < 2:
        return None
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    nx, ny = -uy, ux
    px, py = round((x0 + x1) / 2 + nx), round((y0 + y1) / 2 + ny)
    if 0 <= py < labels.shape[0] and 0 <= px < labels.shape[1] and labels[py, px] == hole:  # that way is the hole
        nx, ny = -nx, -ny
    dx, dy = run[:, 0] - x0, run[:, 1] - y0
    off = dx * nx + dy * ny
    if np.abs(off).max() > SIDE_STRAIGHT + 0.5:
        return None
    along = dx * ux + dy * uy
    middle = (along > length / 4) & (along < 3 * length / 4)
    if middle.any() and abs(off[middle].mean()) > BULGE:  # a chord of a round hole: the outline bulges off it
        return None
    return length, float(ux), float(uy), float(nx), float(ny)


def tangent_sides(kept: np.ndarray, circles: list[Primitive], width: float) -> list[Piece]:
    """Line pieces along the sides that touch each of `circles` from outside with their strokes
    merged (a nut's hexagon round its chamfer circle): where they merge the skeleton runs between
    the two, but the ink's outer outline still runs straight along the side, half a pen out from
    the line tangent to the circle. Each straight run of the outline that far from the circle's
    centre gives a piece on that tangent line, as long as the run. `kept`: the ink less clutter.
    The outlines are the whole page's (a crop would cut a neighbour open, and its hole's edge
    would pass for an outer one)."""
    circles = [c for c in circles if _crowded(kept, c.geometry, width)]
    if not circles:
        return []
    contours, hierarchy = cv2.findContours(kept.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outlines = [c[:, 0, :].astype(np.float64) for c, link in zip(contours, hierarchy[0], strict=True) if link[3] < 0]
    boxes = np.array([[o[:, 0].min(), o[:, 1].min(), o[:, 0].max(), o[:, 1].max()] for o in outlines])
    runs: dict[int, list[np.ndarray]] = {}
    pieces: list[Piece] = []
    for ring in circles:
        cx, cy, r = ring.geometry["cx"], ring.geometry["cy"], ring.geometry["r"]
        reach = r + 3 * width
        near = (boxes[:, 0] <= cx + reach) & (boxes[:, 2] >= cx - reach) & \
            (boxes[:, 1] <= cy + reach) & (boxes[:, 3] >= cy - reach)
        for k in np.flatnonzero(near):
            if k not in runs:  # an outline near several circles is cut into runs once
                runs[k] = _runs(outlines[k], width)
            for run in runs[k]:
                side = _tangent_side(run, ring.geometry, width)
                if side is not None:
                    pieces.append(Piece("line", side))
    return pieces


def _crowded(kept: np.ndarray, ring: dict, width: float) -> bool:
    """Whether ink lies just outside the circle's stroke on at least CROWDED of the rays round it
    (sides merging with it; wires running into it cross a ray or two)."""
    angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
    radius = ring["r"] + width / 2 + 1.5
    xs, ys = ring["cx"] + radius * np.cos(angles), ring["cy"] + radius * np.sin(angles)
    return float(at_points(kept, np.column_stack([xs, ys])).mean()) >= CROWDED


def _tangent_side(run: np.ndarray, ring: dict, width: float) -> np.ndarray | None:
    """The points (1 px apart) of the side along the circle `ring` whose outer edge the outline's
    `run` is, or None: the run is straight, long enough, half a pen out from a tangent of the
    circle, and passes the tangent point with both its ends well beyond the circle (corners; a
    line running into the circle leaves the outline along the circle's edge)."""
    if len(run) < LEAST_PENS * width:
        return None
    fit = fit_line(run)
    if fit.residuals.max() > SIDE_STRAIGHT + 0.5:
        return None
    centre, r = np.array([ring["cx"], ring["cy"]]), ring["r"]
    normal = np.array([-fit.direction[1], fit.direction[0]])
    off = float((fit.centre - centre) @ normal)
    if abs(abs(off) - _edge(r, width)) > TANGENT_EDGE:
        return None
    out = math.copysign(1.0, off) * normal
    along = (run - centre) @ fit.direction
    if not along.min() < 0 < along.max() or float(np.hypot(*(run[[0, -1]] - centre).T).min()) < r + SIDE_ENDS * width:
        return None
    steps = np.arange(float(along.min()), float(along.max()) + 0.5, 1.0)
    return centre + r * out + steps[:, None] * fit.direction


def _edge(r: float, width: float) -> float:
    """How far from a circle's centre the pixels of its stroke's outer outline lie."""
    return r + width / 2 - 0.5
