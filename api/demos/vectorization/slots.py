"""Oval pads and slots: a hole whose outline is a stadium, two half circles joined by straight sides.

A stadium drawn with a thick pen is hard on the skeleton: where a body's outline or a neighbour
runs along one side the two strokes fuse and the skeleton runs between them, and at each end it
turns into the side before the half circle is done. The chains then give sides running on round
the ends and arcs too short to keep. The paper inside is the stadium shrunk by half a pen,
whatever touches it outside: its axis and its half width give both sides and both half circles,
which replace what the chains made of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .fitting import CircleFit, fit_circle
from .holes import Holes, inner_holes
from .primitives import Primitive, arc, line, same_circle, sample_array
from .rings import round_edge
from .spatial import components, on_mask

SLOT_ROUND = 0.7  # px: rms distance of a slot's hole's outline from its stadium where it runs along it
SLOT_ON, SLOT_ON_PX = 0.6, 1.0  # … on this share of it at least, this close (the rest: what fuses with a side)
SLOT_CONVEX = 0.95  # a slot's hole fills this much of its convex hull at least (cut short by a side, too)
SLOT_CAP = 0.6  # share of a half circle a crescent's convex edge runs along its end's circle (_paired_ends)
SLOT_CAP_PX = 4.0  # px: the crescent as wide as that circle, within this (a scan's bleed)
SLOT_OUT_PX = 1.5  # px: the two crescents' pixels nowhere further outside their stadium
SLOT_DRILL = 3.0  # px: the least radius of a drill's round hole midway between a slot's ends
SOLID_DRILL = 2.0  # px: … between a small pad's ends, all ink but for it (_solid_pads)
SOLID_DOT = 1.0  # pens: … and at most this wide (a dot: the pad's ink round it is deep)
SOLID_ROUND = 0.6  # … its dot filling this share of its box at least, as wide as tall (a pixel either way)
# (a drill the blur closed and binarize reopened: 8 pixels of a 3 × 4 box)
SOLID_CORE = 1.0  # pens: a small pad's ink deeper than this is its core, a stadium (a stroke is half a pen deep)
SOLID_STRAIGHT = 0.75  # pens: a small pad's core's straight sides at least this long (blurred: its pen read wide)
SOLID_WIDE = 0.75  # pens: a small pad's core at least this wide either side of its axis (narrower: thick strokes fused)
SOLID_REACH = 1.5  # half widths: each end fitted this far from its tip (a stroke touching it leaves a thread)
SOLID_THREAD = 0.6  # share of the other end's radius: an end fitted smaller is a thread (_stadium_of)
SOLID_ON = 0.8  # share of the core's outline on its stadium (SLOT_ON_PX)
SLOT_CRESCENT = 0.85  # a crescent's depth at most this share of its width
SLOT_BEYOND = 0.2  # radii: how far a crescent's middle lies beyond its end's centre at least
SLOT_LONGEST = 4.0  # radii: the longest sides of a slot paired from its ends
SLOT_TRIES = 64  # circles tried through three of an end's points
SLOT_STRAIGHT = 1.0  # pens: the straight sides at least this long (shorter: a round hole, round_holes')
SLOT_INKED = 0.9  # share of the outline with ink right outside the hole (else the hole is a gap's, not a slot's)
SLOT_SIDE = 0.25  # quantile of the pen crossed from the hole's edge into the ink that is its own stroke
SLOT_ALONG, SLOT_MOST = 2.0, 0.5  # what lies this many tolerances from a slot's outline over this share of
# its length is the chains' try at it (running on along what fuses with it)


@dataclass(frozen=True)
class Slot:
    """A stadium: its axis from (x0, y0) to (x1, y1), the half circles' centres, and its radius."""
    x0: float
    y0: float
    x1: float
    y1: float
    r: float
    drill: Primitive | None = None  # the circle of the hole midway, when its ring touches both sides
    pen: float = 0.0  # a small pad's pen: its ink is all it is (what lies within half a pen outside, _solid_pads)

    def primitives(self) -> list[Primitive]:
        """The two sides and the two half circles, each facing away from the other end (and the
        drill's circle)."""
        ux, uy = self.x1 - self.x0, self.y1 - self.y0
        n = math.hypot(ux, uy)
        nx, ny = -uy / n * self.r, ux / n * self.r
        away = math.degrees(math.atan2(uy, ux))
        return [line(self.x0 + nx, self.y0 + ny, self.x1 + nx, self.y1 + ny),
                line(self.x1 - nx, self.y1 - ny, self.x0 - nx, self.y0 - ny),
                arc(self.x1, self.y1, self.r, away - 90, away + 90),
                arc(self.x0, self.y0, self.r, away + 90, away + 270)] + ([self.drill] if self.drill else [])

    def around(self, step: float) -> tuple[np.ndarray, np.ndarray]:
        """Points about `step` px apart round the outline (N×2), and the outward normals there."""
        ux, uy = self.x1 - self.x0, self.y1 - self.y0
        length = math.hypot(ux, uy)
        ux, uy = ux / length, uy / length
        t = np.arange(0.0, length, step)
        turn = np.linspace(-math.pi / 2, math.pi / 2, max(3, int(math.pi * self.r / step)))
        ends = [(self.x1, self.y1, math.atan2(uy, ux)), (self.x0, self.y0, math.atan2(-uy, -ux))]
        normals = [np.column_stack([np.full_like(t, -uy), np.full_like(t, ux)]),
                   np.column_stack([np.full_like(t, uy), np.full_like(t, -ux)])]
        points = [np.column_stack([self.x0 + t * ux, self.y0 + t * uy]) + normals[0] * self.r,
                  np.column_stack([self.x0 + t * ux, self.y0 + t * uy]) + normals[1] * self.r]
        for x, y, facing in ends:
            v = np.column_stack([np.cos(facing + turn), np.sin(facing + turn)])
            points.append(np.array([x, y]) + v * self.r)
            normals.append(v)
        return np.vstack(points), np.vstack(normals)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Bounds (x0, y0, x1, y1) of what lies within a radius of its outline (_along)."""
        return (min(self.x0, self.x1) - 2 * self.r, min(self.y0, self.y1) - 2 * self.r,
                max(self.x0, self.x1) + 2 * self.r, max(self.y0, self.y1) + 2 * self.r)

    @property
    def middle(self) -> tuple[float, float]:
        """Midway between the ends' centres: where its drill lies."""
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def length(self) -> float:
        """The straight sides' length."""
        return math.hypot(self.x1 - self.x0, self.y1 - self.y0)

    def spanned(self, points: np.ndarray) -> np.ndarray:
        """The points (N×2) no further along the axis than its ends' tips (and SLOT_ON_PX): not the
        thread a stroke touching an end leaves (_stadium_of)."""
        ux, uy = self.x1 - self.x0, self.y1 - self.y0
        n = math.hypot(ux, uy)
        t = ((points[:, 0] - self.x0) * ux + (points[:, 1] - self.y0) * uy) / n
        return points[(t >= -self.r - SLOT_ON_PX) & (t <= n + self.r + SLOT_ON_PX)]

    def off_outline(self, points: np.ndarray, signed: bool = False) -> np.ndarray:
        """Each point's (N×2) distance from the stadium's outline (`signed`: outside positive)."""
        ux, uy = self.x1 - self.x0, self.y1 - self.y0
        n2 = ux * ux + uy * uy
        t = np.clip(((points[:, 0] - self.x0) * ux + (points[:, 1] - self.y0) * uy) / n2, 0.0, 1.0)
        off = np.hypot(points[:, 0] - self.x0 - t * ux, points[:, 1] - self.y0 - t * uy) - self.r
        return off if signed else np.abs(off)


def find_slots(holes: Holes, kept: np.ndarray, distance: np.ndarray, width: float, least: float) -> list[Slot]:
    """The stadiums round holes (holes.holes_of) whose outline is one, their half width at least
    `least` px, and small pads all ink; `kept`: the ink less clutter; `distance`: the ink's distance
    transform; `width`: the pen width in px."""
    def wanted(bw: int, bh: int) -> bool:
        return min(bw, bh) >= 2 * least and max(bw, bh) >= min(bw, bh) + SLOT_STRAIGHT * width

    found = []
    for _, x, y, crop in inner_holes(holes, wanted):
        outline = _outline(crop, x, y)
        edge = outline.astype(np.float32)
        if cv2.contourArea(edge) < SLOT_CONVEX * cv2.contourArea(cv2.convexHull(edge)):
            continue
        slot = _stadium(outline, width)
        if slot is not None and slot.r >= least:
            slot = _stroked(slot, kept, width)
            if slot is not None:
                found.append(slot)
    return found + _paired_ends(holes, kept, width, least) + _solid_pads(holes, kept, distance, width, least)


def _paired_ends(holes: Holes, kept: np.ndarray, width: float, least: float) -> list[Slot]:
    """The stadiums whose hole's ring touches both sides: the paper left is a crescent at each
    end, between the end's half circle and the ring. Each crescent's convex edge is its end's
    circle (on SLOT_CAP of a half circle at least, the crescent as wide as it, lying beyond its
    centre); two of one radius facing away from each other are one stadium's ends."""
    def wanted(bw: int, bh: int) -> bool:  # a crescent: as wide as its end, less deep
        return max(bw, bh) >= 2 * least and min(bw, bh) <= SLOT_CRESCENT * max(bw, bh)

    ends = []  # (circle, the crescent's centre, its edge pixels)
    for _, x, y, crop in inner_holes(holes, wanted):
        outline = _outline(crop, x, y)
        fit = _round_end(outline)
        if fit is None or fit.r < least or abs(2 * fit.r + 1 - max(crop.shape)) > SLOT_CAP_PX:
            continue
        on = np.abs(np.hypot(outline[:, 0] - fit.cx, outline[:, 1] - fit.cy) - fit.r) <= SLOT_ON_PX
        middle = outline.mean(axis=0)
        beyond = math.hypot(middle[0] - fit.cx, middle[1] - fit.cy)
        if on.sum() >= SLOT_CAP * math.pi * fit.r and beyond >= SLOT_BEYOND * fit.r:
            ends.append((fit, middle, outline))
    found, used = [], set()
    for i, (a, am, ao) in enumerate(ends):
        for j in range(i + 1, len(ends)):
            b, bm, bo = ends[j]
            if i in used or j in used or abs(a.r - b.r) > 2 * SLOT_ROUND:
                continue
            apart = np.array([b.cx - a.cx, b.cy - a.cy])
            length = float(np.hypot(*apart))
            if not SLOT_STRAIGHT * width <= length <= SLOT_LONGEST * a.r:
                continue
            if (am - (a.cx, a.cy)) @ apart >= 0 or (bm - (b.cx, b.cy)) @ apart <= 0:
                continue  # each crescent beyond its own circle's centre, away from the other
            edge = Slot(a.cx, a.cy, b.cx, b.cy, (a.r + b.r) / 2 + 0.5)
            if (edge.off_outline(np.vstack([ao, bo]), signed=True) + 0.5).max() > SLOT_OUT_PX:
                continue
            slot = _stroked(edge, kept, width)
            if slot is not None:
                found.append(replace(slot, drill=_drill(holes, kept, slot, width)))
                used |= {i, j}
    return found


def _solid_pads(holes: Holes, kept: np.ndarray, distance: np.ndarray, width: float, least: float) -> list[Slot]:
    """Oval pads so small that the ring round their drill fills them: the ink is a solid stadium,
    its drill at most a dot of paper (SOLID_DRILL), its ends' slivers filled as pinholes. Its ink
    deeper than SOLID_CORE pens is the stadium shrunk by as much, whatever touches it (a stroke
    touching it is not that deep); the pad is the stadium grown back less half a pen."""
    depth = SOLID_CORE * width
    _, labels, stats = holes
    bw, bh, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    small = (np.maximum(bw, bh) <= SOLID_DOT * width + 1) & (np.abs(bw - bh) <= 1) & (area >= SOLID_ROUND * bw * bh)
    small[0] = False
    if small.any():  # a drill's dot the binarizer kept: the pad is as deep round it as without
        distance = cv2.distanceTransform((kept | np.take(small, labels)).astype(np.uint8), cv2.DIST_L2, 5)
    core = cv2.morphologyEx(((distance >= depth) & kept).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats = components(core > 0)  # opened: a stroke touching it leaves a thread
    found = []
    for k in range(1, count):
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        if max(bw, bh) < min(bw, bh) + SLOT_STRAIGHT * width or 2 * (least + width / 2 - depth) > min(bw, bh) + 1:
            continue
        outline = _outline((labels[y:y + bh, x:x + bw] == k).astype(np.uint8), x, y)
        inner = _stadium_of(outline, SOLID_REACH, threads=True)
        if inner is None or inner.length < SOLID_STRAIGHT * width or inner.r < SOLID_WIDE * width or \
                (inner.off_outline(inner.spanned(outline)) <= SLOT_ON_PX).mean() < SOLID_ON:
            continue
        pad = replace(inner, r=inner.r + 0.5 + depth - width / 2, pen=width)  # pixel centres: ½ px in
        if pad.r >= least:
            found.append(replace(pad, drill=_drill(holes, kept, pad, width, SOLID_DRILL)))
    return found


def _stadium_of(outline: np.ndarray, reach: float = 1.0, threads: bool = False) -> Slot | None:
    """The stadium through a closed outline's pixels, each end's circle fitted apart (_round_end)
    to the pixels within `reach` half widths of its tip. With `threads`, an end fitted to a circle
    much smaller than the other's (SOLID_THREAD) is a thread run on from the end (a stroke
    touching a small pad's end is as deep there, its core runs on into it): that end is the
    other's circle moved along the axis to where the most of the outline beyond lies on it."""
    centre = outline.mean(axis=0)
    offsets = outline - centre
    _, vectors = np.linalg.eigh(offsets.T @ offsets)
    t = offsets @ vectors[:, 1]
    across = offsets @ np.array([-vectors[1, 1], vectors[0, 1]])
    within = reach * (across.max() - across.min()) / 2
    ends = [_round_end(outline[t < t.min() + within]), _round_end(outline[t > t.max() - within])]
    if threads and ends[0] is not None and ends[1] is not None and \
            min(ends[0].r, ends[1].r) < SOLID_THREAD * max(ends[0].r, ends[1].r):
        thin = int(ends[1].r < ends[0].r)
        ends[thin] = _end_beyond(outline, ends[1 - thin], vectors[:, 1] * (1 if thin else -1))
    if ends[0] is None or ends[1] is None or abs(ends[0].r - ends[1].r) > SLOT_ROUND * 2:
        return None
    return Slot(ends[0].cx, ends[0].cy, ends[1].cx, ends[1].cy, (ends[0].r + ends[1].r) / 2)


def _drill(holes: Holes, kept: np.ndarray, slot: Slot, width: float, least: float = SLOT_DRILL) -> Primitive | None:
    """The circle round the hole midway between a slot's ends, when it is a round hole centred
    there at least `least` px in radius."""
    _, labels, stats = holes
    mx, my = slot.middle
    k = int(labels[int(round(my)), int(round(mx))])
    x, y, bw, bh = (int(v) for v in stats[k, :4])
    x0, y0, x1, y1 = slot.box
    if k == 0 or x < x0 or y < y0 or x + bw > x1 or y + bh > y1 or min(bw, bh) < 2 * least:
        return None
    ring = round_edge(kept, _outline((labels[y:y + bh, x:x + bw] == k).astype(np.uint8), x, y), True, width)
    if ring is None or math.hypot(ring.geometry["cx"] - mx, ring.geometry["cy"] - my) > SLOT_ON_PX:
        return None
    return ring


def _outline(crop: np.ndarray, x: int, y: int) -> np.ndarray:
    """A hole's edge pixels (N×2, page coordinates), from its pixels `crop` in its box at (x, y)."""
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=len)[:, 0, :].astype(np.float64) + (x, y)


def _stadium(outline: np.ndarray, width: float) -> Slot | None:
    """The stadium whose inner edge a hole's edge pixels `outline` run along, or None when they
    are no stadium's. The two ends are fitted apart (what fuses with a side cuts the hole short
    there, never an end all round); the edge must then run along the stadium on SLOT_ON of its
    length, and lie inside it all round."""
    fitted = _stadium_of(outline)
    if fitted is None:
        return None
    edge = replace(fitted, r=fitted.r + 0.5)
    if edge.length < SLOT_STRAIGHT * width:
        return None
    off = edge.off_outline(outline, signed=True) + 0.5  # the edge pixels' centres, half a pixel in
    on = np.abs(off) <= SLOT_ON_PX
    if on.mean() < SLOT_ON or off.max() > SLOT_ON_PX or float(np.sqrt(np.mean(off[on] ** 2))) > SLOT_ROUND:
        return None
    return edge


def _end_beyond(outline: np.ndarray, other: CircleFit, axis: np.ndarray) -> CircleFit | None:
    """The circle as large as `other` moved along `axis` (a unit vector) to where the most of the
    outline's pixels beyond its centre lie on it (within SLOT_ON_PX), none if fewer than a
    quarter of its circumference do."""
    start = np.array([other.cx, other.cy])
    along = (outline - start) @ axis
    best, where = 0, None
    for step in np.arange(0.5, along.max(), 0.5):
        beyond = outline[along > step]
        on = int((np.abs(np.hypot(*(beyond - start - step * axis).T) - other.r) <= SLOT_ON_PX).sum())
        if on > best:
            best, where = on, start + step * axis
    if where is None or best < math.pi * other.r / 2:
        return None
    return replace(other, cx=float(where[0]), cy=float(where[1]))


def _round_end(points: np.ndarray) -> CircleFit | None:
    """The circle most of a stadium's end `points` lie on (within SLOT_ON_PX), found by trying
    the circles through SLOT_TRIES triples of them: the end's points include the ends of what
    fuses with a side and cuts the hole short."""
    if len(points) < 5:
        return None
    picks = np.random.default_rng(0).integers(0, len(points), (SLOT_TRIES, 3))
    a, b, c = points[picks[:, 0]], points[picks[:, 1]], points[picks[:, 2]]
    d = 2 * ((a[:, 0] - c[:, 0]) * (b[:, 1] - c[:, 1]) - (b[:, 0] - c[:, 0]) * (a[:, 1] - c[:, 1]))
    ok = np.abs(d) > 1e-6
    a, b, c, d = a[ok], b[ok], c[ok], d[ok]
    na = ((a ** 2).sum(axis=1) - (c ** 2).sum(axis=1))
    nb = ((b ** 2).sum(axis=1) - (c ** 2).sum(axis=1))
    cx = (na * (b[:, 1] - c[:, 1]) - nb * (a[:, 1] - c[:, 1])) / d
    cy = ((a[:, 0] - c[:, 0]) * nb - (b[:, 0] - c[:, 0]) * na) / d
    r = np.hypot(a[:, 0] - cx, a[:, 1] - cy)
    if not len(r):
        return None
    off = np.abs(np.hypot(points[None, :, 0] - cx[:, None], points[None, :, 1] - cy[:, None]) - r[:, None])
    best = int(np.argmax((off <= SLOT_ON_PX).sum(axis=1)))
    return fit_circle(points[off[best] <= SLOT_ON_PX])


def _stroked(edge: Slot, kept: np.ndarray, width: float) -> Slot | None:
    """The stadium down the middle of the stroke whose inner edge is `edge`, the stroke as wide as
    the ink crossed outwards on SLOT_SIDE of the rays (the rest run into what touches it)."""
    points, normals = edge.around(2.0)
    steps = 1.0 + np.arange(0.0, 3 * width, 0.5)  # from its edge, a pixel in: rounding lands on the ink
    run = on_mask(kept, points[:, 0, None] + normals[:, 0, None] * steps,
                  points[:, 1, None] + normals[:, 1, None] * steps)
    if run[:, 0].mean() < SLOT_INKED:
        return None
    thickness = 0.5 + 0.5 * np.where((~run).any(axis=1), np.argmax(~run, axis=1), len(steps))
    return Slot(edge.x0, edge.y0, edge.x1, edge.y1, edge.r + float(np.quantile(thickness, SLOT_SIDE)) / 2)


def with_slots(primitives: list[Primitive], slots: list[Slot], tolerance: float) -> list[Primitive]:
    """The `primitives` less those lying along a slot's outline over most of their length (the
    chains' sides running on round its ends, its ends' short arcs, pieces running on into what
    touches it), with each slot's two sides and two half circles, and its drill's circle unless
    found already."""
    if not slots:
        return primitives
    kept = []
    for p in primitives:
        x0, y0, x1, y1 = p.bounds()
        near = [slot for slot in slots if x0 <= slot.box[2] and slot.box[0] <= x1 and
                y0 <= slot.box[3] and slot.box[1] <= y1]
        points = sample_array(p.type, p.geometry, 2.0) if near else None
        if not any(_along(slot.off_outline(points), slot.r, tolerance) or _within(p, points, slot, tolerance)
                   for slot in near):
            kept.append(p)
    circles = [p.geometry for p in kept if p.type == "circle"]
    def found(drill: Primitive) -> bool:
        return any(same_circle(drill.geometry, c, tolerance, 2 * tolerance) for c in circles)

    return kept + [q for slot in slots for q in slot.primitives() if q is not slot.drill or not found(q)]


def _within(p: Primitive, points: np.ndarray, slot: Slot, tolerance: float) -> bool:
    """Whether `p` (its `points`) lies in a small pad's ink (Slot.pen), give or take two
    tolerances: the chains' lines down its middle and circles round its slivers. A circle round
    its middle is its drill's, kept."""
    mx, my = slot.middle
    if not slot.pen or p.type == "circle" and math.hypot(p.geometry["cx"] - mx, p.geometry["cy"] - my) <= tolerance:
        return False
    return bool(slot.off_outline(points, signed=True).max() <= slot.pen / 2 + 2 * tolerance)


def _along(off: np.ndarray, r: float, tolerance: float) -> bool:
    """Whether points `off` px from a slot's outline lie along it over SLOT_MOST of their length
    and no further from it than its radius (a body's outline running past touches it, no more)."""
    return bool((off <= SLOT_ALONG * tolerance).mean() >= SLOT_MOST and off.max() <= r)
