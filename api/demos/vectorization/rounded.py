"""Rounded corners the chains took for two lines: the arc put back between them.

An outline's corner rounded with a radius of two or three pens (a connector's body,
footprints-003) is too short a curve for the chain cutter to fit an arc to, and too little bent for
it to cut a corner there: the two sides are fitted as lines, and each side's end walks straight on
through the curved ink until it leaves it, short of where the sides' lines cross. That crossing
tells the two apart. At a sharp corner it lies in the ink (the strokes overlap there); at a corner
rounded with radius r it lies r (1 / sin(θ / 2) - 1) outside the arc's middle, off the ink once
that is more than half a pen. Walking from it along the bisector into the corner, the first ink
crossed is the arc's stroke: its middle gives r. The arc tangent to both sides with that radius
is kept when its ink is there all along with paper a pen out on both sides (no letter's stroke
against it) and nothing else found passes its middle (a transistor's base bar between its legs);
the sides then end at its tangent points. A chamfer two pens long inks nearly as such an arc
does, and is taken for one (footprints-011).
"""
from __future__ import annotations

import math

import numpy as np

from .ends import distance_to, end_point, set_end_point
from .primitives import Primitive, arc, arc_point, sample_array
from .spatial import Grid, grown, on_mask

CORNER_REACH = 3.0  # pens: each side's end lies this close to where the sides' lines cross
CORNER_ANGLES = (30.0, 150.0)  # degrees between the sides: a corner, not a bend of one line
CORNER_RADII = (1.5, 6.0)  # pens: rounder than a pen's own cap; larger ones the chains find
CORNER_PAPER = 1.5  # px: the crossing lies on paper this far round at least
CORNER_INKED = 0.9  # share of the arc's samples on ink
CORNER_BESIDE, CORNER_BARE = 0.9, 0.8  # pens out from the arc each side: this share on paper


def rounded_corners(primitives: list[Primitive], ink: np.ndarray, width: float) -> list[Primitive]:
    """The arcs put back at rounded corners between two of the lines in `primitives` (whose ends
    are moved onto the arcs' tangent points, in place). `ink`: bool H×W; `width`: the pen in px."""
    lines = [p for p in primitives if p.type == "line"]
    reach = CORNER_REACH * width
    grid = Grid(cell=max(64.0, reach))
    for index, p in enumerate(lines):
        grid.add(index, p.bounds())
    taken: set[tuple[int, int]] = set()
    arcs = []
    for i, a in enumerate(lines):
        for ea in (0, 1):
            if (i, ea) in taken:
                continue
            pa = end_point(a, ea)
            for j in grid.query(grown((pa[0], pa[1], pa[0], pa[1]), 2 * reach)):
                if j <= i:
                    continue
                found = next(((eb, corner) for eb in (0, 1) if (j, eb) not in taken and
                              math.dist(pa, end_point(lines[j], eb)) <= 2 * reach
                              for corner in (_corner(a, ea, lines[j], eb, ink, width),)
                              if corner and not _drawn(corner[0], primitives, (a, lines[j]), width)), None)
                if found is None:
                    continue
                eb, (rounding, ta, tb) = found
                set_end_point(a, ea, ta)
                set_end_point(lines[j], eb, tb)
                arcs.append(rounding)
                taken |= {(i, ea), (j, eb)}
                break
    return arcs


Corner = tuple[Primitive, tuple[float, float], tuple[float, float]]  # the arc, each side's tangent point


def _corner(a: Primitive, ea: int, b: Primitive, eb: int, ink: np.ndarray, width: float) -> Corner | None:
    """(arc, a's tangent point, b's) when a's end `ea` and b's end `eb` are a rounded corner."""
    pa, fa, pb, fb = end_point(a, ea), end_point(a, 1 - ea), end_point(b, eb), end_point(b, 1 - eb)
    da, db = _unit(fa, pa), _unit(fb, pb)  # along each side, away from the corner
    if da is None or db is None:
        return None
    angle = math.degrees(math.acos(max(-1.0, min(1.0, da[0] * db[0] + da[1] * db[1]))))
    if not CORNER_ANGLES[0] <= angle <= CORNER_ANGLES[1]:
        return None
    det = _cross(da, db)
    if abs(det) < 1e-6:
        return None
    t = _cross((pb[0] - pa[0], pb[1] - pa[1]), db) / det
    cx, cy = pa[0] + t * da[0], pa[1] + t * da[1]  # where the sides' lines cross
    reach = CORNER_REACH * width
    for p, d in ((pa, da), (pb, db)):
        short = (p[0] - cx) * d[0] + (p[1] - cy) * d[1]  # how far the end stops short of the crossing
        if not -width / 2 <= short <= reach:
            return None
    corner = np.array([cx, cy])
    da, db = np.array(da), np.array(db)
    ring = np.linspace(0.0, 2 * math.pi, 8, endpoint=False)
    around = corner + CORNER_PAPER * np.column_stack([np.cos(ring), np.sin(ring)])
    points = np.vstack([corner[None, :], around])
    if on_mask(ink, points[:, 0], points[:, 1]).any():
        return None  # the sides' strokes overlap there: a sharp corner
    half = math.radians(angle) / 2
    inward = (da + db) / float(np.hypot(*(da + db)))
    steps = np.arange(0.0, reach + 1.0, 0.5)
    walk = corner + steps[:, None] * inward
    inked = on_mask(ink, walk[:, 0], walk[:, 1])
    if not inked.any():
        return None
    first = int(np.argmax(inked))
    past = np.flatnonzero(~inked[first:])
    if not len(past):
        return None
    middle = (steps[first] + steps[first + int(past[0]) - 1]) / 2
    r = middle / (1 / math.sin(half) - 1)
    if not CORNER_RADII[0] * width <= r <= CORNER_RADII[1] * width:
        return None
    tangent = r / math.tan(half)
    if min(math.dist(corner, fa), math.dist(corner, fb)) <= tangent + width:
        return None  # a side no longer than its part of the arc
    centre = corner + inward * (r / math.sin(half))
    ta, tb = corner + da * tangent, corner + db * tangent
    start = math.degrees(math.atan2(ta[1] - centre[1], ta[0] - centre[0]))
    end = math.degrees(math.atan2(tb[1] - centre[1], tb[0] - centre[0]))
    if (end - start) % 360.0 > 180.0:
        start, end = end, start
    rounding = arc(float(centre[0]), float(centre[1]), float(r), start, end)
    samples = sample_array("arc", rounding.geometry, 1.0)
    if on_mask(ink, samples[:, 0], samples[:, 1]).mean() < CORNER_INKED:
        return None
    if not _bare_beside(rounding.geometry, ink, width):
        return None
    return rounding, (float(ta[0]), float(ta[1])), (float(tb[0]), float(tb[1]))


def _bare_beside(g: dict[str, float], ink: np.ndarray, width: float) -> bool:
    """Whether the arc's stroke has paper on both sides, a pen out from its middle (the middle
    of its sweep: its ends run into the sides): no stroke of a letter against it."""
    sweep = g["end"] - g["start"]
    degrees = np.linspace(g["start"] + sweep / 5, g["end"] - sweep / 5, 9)
    for r in (g["r"] + CORNER_BESIDE * width, g["r"] - CORNER_BESIDE * width):
        if r <= 0:
            continue
        xs = g["cx"] + r * np.cos(np.radians(degrees))
        ys = g["cy"] + r * np.sin(np.radians(degrees))
        if on_mask(ink, xs, ys).mean() > 1 - CORNER_BARE:
            return False
    return True


def _drawn(rounding: Primitive, primitives: list[Primitive], sides: tuple[Primitive, Primitive],
           width: float) -> bool:
    """Whether something other than the two sides passes the arc's middle within half a pen: the
    ink the corner's bisector met is that one's (a transistor's base bar between its two legs), or
    an arc found there already."""
    g = rounding.geometry
    middle = np.array([arc_point(g, (g["start"] + g["end"]) / 2)])
    return any(distance_to(p, middle)[0] <= width / 2 for p in primitives if p is not sides[0] and p is not sides[1])


def _cross(u: tuple[float, float], v: tuple[float, float]) -> float:
    return u[0] * v[1] - u[1] * v[0]


def _unit(to: tuple[float, float], frm: tuple[float, float]) -> tuple[float, float] | None:
    dx, dy = to[0] - frm[0], to[1] - frm[1]
    n = math.hypot(dx, dy)
    return (dx / n, dy / n) if n > 1e-9 else None
