"""Circles found from their holes: small rings that lines cross, larger ones others merge with.

A terminal, a crystal's pin or a drilled hole's centre mark is a small circle that a line runs
through or into. Its skeleton is a knot of junctions: the chains cut the ring into arcs a few
pixels long, too short to fit, and its hole is cut into sectors, so neither the chain route nor
the dots (which need a solid blob) see a circle there. The hole's sectors are still there: paper
enclosed by the ink kept (a letter's hole is clutter). Each hole's box gives candidate centres:
its middle, the middle of its sides and its corners (half or a quarter of a ring's hole has the
ring's centre there), and those moved half a pen further out (the line through the centre lies
between). A candidate is a ring of radius R when, looking from it along RAYS rays, the ink lies
at R on nearly every ray (RING_INK), paper lies just outside the pen on most rays (RING_PAPER)
and just inside it on some (RING_HOLE: the lines fill the rest, and the smallest sectors were
filled as pinholes), and the pen crossed on the clean rays (paper, ink, paper) is as wide as the
pen all round (RING_EVEN: not a letter's bowl against its stem, nor a small triangle's corners).
The circle is fitted to the pen's middles on those rays. Where blur closed the hole (a scan of a
ring this small) there is nothing to find here.

Larger circles are found by the chains, unless something merges with their stroke all round the
outside (a nut's hexagon tangent to its circle, a square round one): the skeleton then runs
between the two. The hole inside is still a disc, whatever it holds (round_holes); and where
things merge with a circle inside (a bearing's balls), the ring of paper round it has the
circle's outside for the edge of its island.

A drilled pad round its hole, the two strokes closer than the pen, is one band of ink round the
hole, wider than a pen: the skeleton runs down its middle and no ring is a pen wide. The band's
inner and outer edges are the two circles (_annulus_at), found where the band is at its narrowest:
pads in a header touch their neighbours and the body's outline, which only widen it. Such pairs
come back apart (a Pad), so that the circle the chains found down the band's middle gives way.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .dots import along_rays
from .fitting import fit_circle
from .holes import Holes, inner_holes
from .primitives import Primitive, circle
from .spatial import components

RAYS = 32
RING_INK = 0.9  # share of rays with ink at the ring's radius
RING_PAPER = 0.5  # share of rays with paper half a pen (+1.5 px) outside the ring
RING_HOLE = 0.25  # … and inside it (lines crossing the hole fill it; its smallest sectors are filled as pinholes)
RING_FIT = 1.0  # px: rms distance of the pen's middles from the fitted circle
RING_INSIDE = 1.5  # px: the hole a ring is found round lies inside its pen's inner edge, this close
RING_EVEN = 0.3  # the pen crossed on a clean ray is as wide as the pen within this share (or 1.5 px)
# a ring's band of ink this many pens wide is two concentric circles' strokes, as wide as at its
# narrowest on this share of the rays at least (the rest run into what touches it: _annulus_at)
ANNULUS_PENS, ANNULUS_EVEN = 1.4, 0.25
ANNULUS_CONCENTRIC = 0.15  # pens: the band's edges' circles share a centre this close (not a small triangle's)
HOLE_ROUND = 0.5  # px: rms distance of a round hole's outline from its circle (pixel steps give ~0.3)
HOLE_SIDE = 0.25  # quantile of the pen crossed from a round edge into the ink that is its own (more: what touches it)


Pad = tuple[Primitive, Primitive]  # a pad's circle and its hole's, their strokes one band of ink


def find_rings(ink: np.ndarray, kept: np.ndarray, width: float, min_radius: float,
               max_radius: float) -> tuple[list[Primitive], list[Pad]]:
    """Circles of radius up to `max_radius` drawn round a hole that lines cut into sectors (see the
    module's doc), and the pairs of concentric circles whose strokes are one band round a hole
    (a Pad: inner first). `ink`: all ink (bool H×W); `kept`: the ink less clutter (a letter's bowl is
    not a ring); `width`: the pen width in px."""
    half = width / 2
    least = max(min_radius, half + 2.0)  # the hole shows: paper inside the pen
    if least > max_radius:
        return [], []
    h, w = ink.shape
    paper = (~ink).astype(np.uint8)
    count, labels, stats = components(paper, connectivity=4)
    size = 2 * (max_radius - half) + 2
    angles = np.linspace(0, 2 * math.pi, RAYS, endpoint=False)
    cos, sin = np.cos(angles), np.sin(angles)
    radii = np.arange(least, max_radius + 0.25, 0.5)
    found: list[tuple[float, float, float]] = []
    pads: list[tuple[tuple[float, float, float], ...]] = []  # (inner, outer)
    tried: set[tuple[int, int]] = set()
    for k in _largest_first(stats):
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        if x == 0 or y == 0 or x + bw == w or y + bh == h or max(bw, bh) > size or stats[k, 4] < 6:
            continue
        if not (kept[y + bh // 2, x - 1] and kept[y + bh // 2, x + bw] and kept[y - 1, x + bw // 2] and
                kept[y + bh, x + bw // 2]):
            continue  # a letter's hole (clutter), or paper reaching round
        pair = _annulus_at(ink, x + (bw - 1) / 2, y + (bh - 1) / 2, half, max_radius, cos, sin)
        if pair is not None:  # a pad round its hole, a pixel apart or touching: one wide band of ink
            new = [r for r in pair if not any(math.hypot(r[0] - fx, r[1] - fy) < 2.0 and abs(r[2] - fr) < 2.0
                                              for fx, fy, fr in found)]
            found += new
            if len(new) == 2:
                pads.append(pair)
            continue
        for cx, cy in _centres(x, y, bw, bh, half + 0.5):
            key = (int(round(cx)), int(round(cy)))
            if key in tried or any(math.hypot(cx - fx, cy - fy) < fr for fx, fy, fr in found):
                continue
            tried.add(key)
            ring = _ring_at(ink, kept, cx, cy, radii, half, cos, sin)
            if ring is not None and math.hypot(ring[0] - cx, ring[1] - cy) > 1.0:  # looked at off its centre
                ring = _ring_at(ink, kept, ring[0], ring[1], radii, half, cos, sin)
            if ring is not None and _encloses(ring, labels[y:y + bh, x:x + bw] == k, x, y, half) and \
                    not any(math.hypot(ring[0] - fx, ring[1] - fy) < 2.0 and abs(ring[2] - fr) < 2.0
                            for fx, fy, fr in found):
                found.append(ring)
    paired = {r for pair in pads for r in pair}
    return [circle(cx, cy, r) for cx, cy, r in found if (cx, cy, r) not in paired], \
        [(circle(*inner), circle(*outer)) for inner, outer in pads]


def _largest_first(stats: np.ndarray) -> np.ndarray:
    """The holes' labels (not the paper's, 0) by area, largest first: a pad's whole drill hole
    before the slivers of paper left between its ring and the pad's outline, whose rings, looked
    for first, run through both strokes off the pad's centre and take its place."""
    return 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable")


def _encloses(ring: tuple[float, float, float], hole: np.ndarray, x: int, y: int, half: float) -> bool:
    """Whether the hole it was looked for from (`hole`: its pixels in its box at x, y) lies inside
    the ring, within its pen's inner edge (+ RING_INSIDE px): a circle inscribed in a sector that
    lines cut from a larger circle touches the sector's three sides all round when the pen is
    thick, but the sector's corners reach beyond it."""
    ys, xs = np.nonzero(hole)
    cx, cy, r = ring
    return float(np.hypot(xs + x - cx, ys + y - cy).max()) <= r - half + RING_INSIDE


def _centres(x: int, y: int, bw: int, bh: int, past: float) -> list[tuple[float, float]]:
    """Where the centre of a ring may lie, given a hole's box: its middle (a whole hole), the middle
    of a side or a corner (half or a quarter of the hole, a line along that side), and those
    points moved `past` further out (the line runs through the centre: half a pen beyond)."""
    x0, y0, x1, y1 = x - 0.5, y - 0.5, x + bw - 0.5, y + bh - 0.5
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    centres = [(mx, my)]
    for sx, sy in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)):
        px = mx if sx == 0 else x0 if sx < 0 else x1
        py = my if sy == 0 else y0 if sy < 0 else y1
        centres += [(px, py), (px + sx * past, py + sy * past)]
    return centres


def _ring_at(ink: np.ndarray, kept: np.ndarray, cx: float, cy: float, radii: np.ndarray, half: float,
             cos: np.ndarray, sin: np.ndarray) -> tuple[float, float, float] | None:
    """The ring round (cx, cy) whose radius in `radii` the rays best support, fitted; or None."""
    radii = radii[along_rays(kept, cx, cy, cos, sin, radii).mean(axis=0) >= RING_INK]
    if not len(radii):
        return None
    inner = (~along_rays(ink, cx, cy, cos, sin, radii - half - 1.5)).mean(axis=0)
    outer = (~along_rays(ink, cx, cy, cos, sin, radii + half + 1.5)).mean(axis=0)
    good = (inner >= RING_HOLE) & (outer >= RING_PAPER)
    if not good.any():
        return None
    radius = float(radii[int(np.argmax(np.where(good, inner + outer, -1.0)))])
    # the pen's middle along each ray that crosses it cleanly: paper, ink, paper
    steps = np.arange(0.0, radius + 2 * half + 3, 0.5)
    profile = along_rays(ink, cx, cy, cos, sin, steps)
    start = int(round((radius - half - 1.5) / 0.5))  # half a pen inside the ring: paper on a clean ray
    points, thickness = [], []
    for ray, row in enumerate(profile):
        if start <= 0 or row[start]:
            continue
        edge_in = start + int(np.argmax(row[start:]))
        if not row[edge_in]:
            continue
        edge_out = edge_in + int(np.argmax(~row[edge_in:])) if (~row[edge_in:]).any() else -1
        if edge_out < 0:
            continue
        middle = (steps[edge_in] + steps[edge_out] - 0.5) / 2
        points.append((cx + cos[ray] * middle, cy + sin[ray] * middle))
        thickness.append(steps[edge_out] - steps[edge_in])
    if len(points) < RAYS * RING_HOLE:
        return None
    if (np.abs(np.array(thickness) - 2 * half) <= max(1.5, RING_EVEN * 2 * half)).mean() < 0.8:
        return None  # a pen of one width all round: not a letter's bowl against its stem, nor a triangle's corners
    fit = fit_circle(np.array(points))
    if fit is None or math.hypot(fit.cx - cx, fit.cy - cy) > half + 1.5 or abs(fit.r - radius) > 1.5:
        return None
    if float(np.sqrt(np.mean(fit.residuals ** 2))) > RING_FIT:
        return None
    return fit.cx, fit.cy, fit.r


def _annulus_at(ink: np.ndarray, cx: float, cy: float, half: float, max_radius: float,
                cos: np.ndarray, sin: np.ndarray) -> tuple[tuple[float, float, float], ...] | None:
    """Two concentric circles whose strokes are one band of ink round a hole centred at (cx, cy):
    every ray crosses paper, then ink ANNULUS_PENS pens wide or more, as wide as at its narrowest
    (within RING_EVEN) on ANNULUS_EVEN of them, then paper or more ink (what touches the pad: its
    neighbours, the body's outline); the circles are the inner edge's circle half a pen out and
    the outer edge's half a pen in, on those rays, their centres ANNULUS_CONCENTRIC apart at most
    (a drilled pad round its hole, the gap between them under a pixel). None otherwise."""
    steps = np.arange(0.0, max_radius + half + 3, 0.5)
    profile = along_rays(ink, cx, cy, cos, sin, steps)
    if profile[:, 0].any():
        return None
    inner, outer = [], []
    for row in profile:
        edge_in = int(np.argmax(row))
        if not row[edge_in]:
            return None
        beyond = ~row[edge_in:]
        inner.append(steps[edge_in] - 0.25)
        outer.append(steps[edge_in + int(np.argmax(beyond))] - 0.25 if beyond.any() else math.inf)
    band = np.array(outer) - np.array(inner)
    if not np.isfinite(band).any():
        return None
    slack = max(1.5, RING_EVEN * 2 * half)
    wide = float(np.median(band[band <= band.min() + slack]))  # what touches the pad only widens the band
    even = np.abs(band - wide) <= slack
    if wide < ANNULUS_PENS * 2 * half or even.mean() < ANNULUS_EVEN:
        return None
    circles = []
    for edge, on, inwards in ((np.array(inner), np.ones(len(inner), bool), 1.0), (np.array(outer), even, -1.0)):
        fit = fit_circle(np.column_stack([cx + cos[on] * edge[on], cy + sin[on] * edge[on]]))
        if fit is None or float(np.sqrt(np.mean(fit.residuals ** 2))) > RING_FIT or \
                math.hypot(fit.cx - cx, fit.cy - cy) > half:
            return None
        circles.append((fit.cx, fit.cy, fit.r + inwards * half))
    (ix, iy, _), (ox, oy, _) = circles
    if math.hypot(ix - ox, iy - oy) > ANNULUS_CONCENTRIC * 2 * half:
        return None
    return tuple(circles)


def round_holes(holes: Holes, kept: np.ndarray, width: float, least: float) -> list[Primitive]:
    """Circles round holes whose outline is a circle, of radius at least `least` px: the paper
    inside a drawn circle is a disc (or a disc less what it holds) whatever touches the circle
    outside. Where lines tangent to it (a nut's hexagon, a square round it) or a neighbour merge
    with its stroke, the skeleton runs between the two and the chains give no circle. Likewise
    an island in a hole whose edge is a circle is a circle drawn round what merges with it inside
    (a bearing's inner race, its balls touching it). `holes`: the paper of `kept`, the ink less
    clutter (holes.holes_of)."""
    def wanted(bw: int, bh: int) -> bool:
        return min(bw, bh) >= 2 * least and abs(bw - bh) <= max(2, 0.05 * max(bw, bh))

    found = []
    for _, x, y, crop in inner_holes(holes, wanted):
        contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        for contour, link in zip(contours, hierarchy[0], strict=True):
            outward = link[3] < 0  # the hole's own edge: the ink lies outwards; an island's: inwards
            if len(contour) >= 2 * math.pi * least * 0.8:
                ring = round_edge(kept, contour[:, 0, :].astype(np.float64) + (x, y), outward, width)
                if ring is not None and ring.geometry["r"] >= least:
                    found.append(ring)
    return found


def round_edge(kept: np.ndarray, outline: np.ndarray, outward: bool, width: float) -> Primitive | None:
    """The circle whose stroke's edge a hole's `outline` (its edge pixels, round it) is, or None
    when the outline is no circle: the stroke lies `outward` of it (or inwards: an island's edge),
    as wide as the pen crossed on a quarter of the rays (HOLE_SIDE: the rest run into what touches it)."""
    fit = fit_circle(outline)
    if fit is None or float(np.sqrt(np.mean(fit.residuals ** 2))) > HOLE_ROUND:
        return None
    sign = 1.0 if outward else -1.0
    edge = fit.r + 0.5 * sign  # the outline runs through the hole's pixels next to the ink
    steps = edge + sign * np.arange(1.0, 3 * width, 0.5)  # from a pixel into the ink: a ray's first
    steps = steps[steps > 0]  # look may round onto the hole
    angles = np.linspace(0, 2 * math.pi, RAYS, endpoint=False)
    run = along_rays(kept, fit.cx, fit.cy, np.cos(angles), np.sin(angles), steps)
    if not len(steps) or not run[:, 0].all():
        return None
    thickness = 1.0 + 0.5 * np.where((~run).any(axis=1), np.argmax(~run, axis=1), len(steps))
    return circle(fit.cx, fit.cy, edge + sign * float(np.quantile(thickness, HOLE_SIDE)) / 2)
