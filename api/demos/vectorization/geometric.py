"""The `geometric` backend: classical image processing, no weights.

ink mask (binarize; a comb's teeth taken back from the clutter: bars.teeth) → skeleton chains
(chains) → line and arc pieces (fitting) → arcs gathered into circles and arcs (circles; short
arcs kept as the turns of a coil; small circles drawn solid or cut by the lines crossing them
found in the ink: dots, rings), fragments merged into lines, with the straight sides of the holes
as fragments too (holes: a small thick triangle's sides), and their ends snapped (lines; acute
corners' ends onto the ink's tip; arc ends onto the lines and arcs they touch, a stadium's sides
the arcs took in put back, arcs lying along others all the way dropped: ends) →
short lines kept when they stand side by side (bars.ticks) → each primitive scored by how much ink
lies under it → short bars in the ink left over (bars) → line ends put on a meeting walked again
among what is kept (ends.extend_lines' `again`) → the ends of acute corners put on the ink's tip
(ends.settle_acute) → short lines lying in a word's band dropped (its letters touching a stroke;
binarize.word_bands) → lines cut where their ink narrows to a neck or breaks (ends.split_at_necks) →
lines whose middle does not run inside a stroke dropped (fitted across letters or a zigzag: once merged,
before their ends are walked, and again at the end) → every primitive moved onto its stroke's middle,
read across the ink (centring: a skeleton bends towards what joins a stroke), a line whose stroke
steps sideways cut in two there (centring.split_at_jogs) → an oval pad's ends,
closed into circles through its hole's ink, made the half circles they are (circles.stadium_ends) →
oval pads and slots read from their hole, their ends' crescents or their solid ink (slots.py) in
place of what the chains made of them.
Every threshold is a `Settings` field, and the demo exposes them as job parameters.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from .bars import LEAST_PENS, dashes, short_bars, teeth, ticks
from .binarize import Band, ink_mask
from .centring import centre_line, centre_round, split_at_jogs
from .chains import chains_of, skeleton
from .circles import absorb_line_pieces, cluster_arcs, coiled, off_circles, primitives_of, stadium_ends
from .dots import find_dots
from .ends import (
    drop_covered_arcs,
    drop_covered_lines,
    extend_arcs,
    extend_lines,
    fillets_between,
    settle_acute,
    snap_tangent_circles,
    snap_tangents,
    snap_touching_arcs,
    split_at_necks,
    tangent_bridges,
)
from .fitting import TANGENT_PENS, ChainCutter
from .holes import DEEP, hole_sides, holes_of, tangent_sides
from .lines import cluster_lines, segment_of
from .primitives import Primitive, length, same_circle, sample_array
from .rings import Pad, find_rings, round_holes
from .rounded import rounded_corners
from .slots import find_slots, with_slots
from .spatial import at_points, on_mask

LINE_FLOOR, LINE_PENS = 20.0, 5.0  # automatic shortest line: real drawings are full of short ones
LINE_COVERAGE = 0.6  # share of a line its own skeleton must cover, junction gaps aside (lines.LineCluster.coverage)
# a skeleton loop narrower than this many pen widths is a knot of thick strokes (an acute corner, a
# letter), not a ring: circles that small show no hole and are found as dots (dots.py)
RING_PENS = 1.8
FUSED_DEPTH = 0.9  # pens: an arc this deep in the ink over half its length runs between fused strokes
POLYGON_TRACED = 0.8  # a ring this much of whose circle runs along lines found is a polygon (_traced)
# skeleton branches shorter than this many pen widths are spurs of a thick stroke, not strokes meeting
# at a junction (chains._cluster_junctions)
SPUR_PENS = 1.15
TICK_PENS = 2.5  # shorter lines are not kept even side by side (geometric.GeometricDetector._ticks)
SIDE_PENS = 3.5  # … nor shorter lines along a hole's side (holes.py: a small triangle's sides)
SLOT_PENS = 1.0  # a slot's hole at least this many pens wide: a letter's counter is narrower
ARC_FLOOR, ARC_PENS = 15.0, 6.0  # automatic shortest arc: coils and rounded corners are short arcs
COIL_PENS = 3.0  # … down to this many pen widths for the turns of a coil (circles.coiled)
WORD_LINES = 1.5  # a line lying in a word's band, no longer than this many times its height, is its letters'
# a line's middle (a RIDGE_ENDS share of it aside at each end, where strokes meet) runs inside a stroke:
# RIDGE_SHARE of its points at least RIDGE_DEPTH pens from the paper. One fitted to pieces of letters
# or of a zigzag lies on their ink, but crosses their strokes or runs along their sides
RIDGE_DEPTH, RIDGE_SHARE, RIDGE_ENDS = 0.25, 0.9, 0.1


@dataclass
class Settings:
    """Thresholds of the geometric backend (pixels unless said otherwise)."""

    tolerance: float = 2.0  # how far skeleton points may stray from a fitted line/circle
    # shorter lines and arcs are dropped; 0: lines max(20, 5 ×) (2.5 × side by side in a comb),
    # arcs max(15, 6 × the stroke width)
    min_length: float = 0.0
    min_radius: float = 3.0  # smaller circles and arcs are dropped (px; letters are clutter already; dots count)
    min_size: int = 0  # ink components smaller than this both ways are text or specks; 0: max(24, 10 × pen), combs kept
    sensitivity: float = 0.5  # threshold between paper (0) and darkest ink (1)
    max_gap: float = 0.0  # widest gap bridged when joining fragments; 0: max(10, 4 × the stroke width)
    min_support: float = 0.6  # share of a primitive's length that must lie on ink


@dataclass
class Detection:
    primitives: list[Primitive]
    stroke_width: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    mask: np.ndarray | None = None


class GeometricDetector:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    def detect(self, rgb: np.ndarray) -> Detection:
        s = self.settings
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round(now - clock, 4)
            clock = now

        h, w = rgb.shape[:2]
        ink = ink_mask(rgb, min_size=s.min_size, sensitivity=s.sensitivity)
        width = ink.stroke_width
        if not s.min_size:  # clutter chosen automatically: a comb's teeth are not text
            ink.mask |= teeth(ink.raw & ~ink.mask, width)
        lap("binarize_s")
        tolerance = max(s.tolerance, width / 4)
        max_gap = s.max_gap or max(10.0, 4 * width)
        min_length = s.min_length or max(ARC_FLOOR, ARC_PENS * width)  # arcs: short curved pieces of letters abound
        min_line = s.min_length or max(LINE_FLOOR, LINE_PENS * width)
        chains = [c.trimmed(int(round(0.75 * width)) + 1)
                  for c in chains_of(skeleton(ink.mask), spur=max(4, int(round(SPUR_PENS * width))))]
        lap("skeleton_s")
        max_radius = 2.0 * max(h, w)
        cutter = ChainCutter(tolerance=tolerance, max_radius=max_radius, corner_window=max(3, int(round(width))))
        pieces = [piece for chain in chains for piece in cutter.cut(chain.points, chain.closed)]
        lap("fit_s")
        arc_pieces = [p for p in pieces if p.kind == "arc"]
        line_pieces = [p for p in pieces if p.kind == "line"]
        arc_clusters = cluster_arcs(arc_pieces, tolerance)
        support_mask = cv2.dilate(ink.raw.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        line_pieces = absorb_line_pieces(arc_clusters, line_pieces, tolerance, max_gap, support_mask)
        least = min_length if s.min_length else min(min_length, max(ARC_FLOOR, COIL_PENS * width))
        halves: list[Primitive] = []  # arcs round an inked circle: kept as a stadium's ends only
        round_things, fillets = [], set()  # fillets: arcs tangent to a line at both ends, kept however short
        for c in arc_clusters:
            fillet = all(piece.fillet for piece in c.pieces)
            for p in primitives_of(c, max_gap, least, max_radius, support_mask, halves):
                if p.geometry["r"] >= s.min_radius and (p.type == "arc" or p.geometry["r"] >= RING_PENS * width):
                    round_things.append(p)
                    if fillet:
                        fillets.add(id(p))
        def long_arc(p: Primitive) -> bool:
            return p.type != "arc" or length(p.type, p.geometry) >= min_length or id(p) in fillets

        short = [p for p in round_things if not long_arc(p)]
        round_things = [p for p in round_things if long_arc(p)]
        round_things += coiled([p for p in round_things if p.type == "arc"], short)
        distance = ink.distance
        holes = holes_of(ink.mask)
        slots = find_slots(holes, ink.mask, distance, width, max(SLOT_PENS * width, s.min_radius))
        least_round = max(s.min_radius, 4 * width, 12.0)
        merged = _new_circles(round_holes(holes, ink.mask, width, least_round),
                              round_things, tolerance)  # circles the chains missed: others merge with them
        round_things += merged
        outlines = tangent_sides(ink.mask, [p for p in round_things if p.type == "circle" and
                                            p.geometry["r"] >= least_round], width)
        sides = off_circles(hole_sides(holes, distance, width), arc_clusters, tolerance) + outlines
        line_clusters = cluster_lines(line_pieces + sides, tolerance, max_gap, min_piece=max(3.0, width), ink=ink.raw)
        deep = ink.distance >= DEEP * width / 2  # a whole pen of ink round these pixels' middle
        side_ids, outline_ids = {id(p) for p in sides}, {id(p) for p in outlines}
        segments, sided = [], set()  # sided: the lines along a hole's side, kept shorter
        outlined = set()  # the sides along a circle, found from the outline: they pass its tangent point
        for c in line_clusters:
            if c.coverage(2 * width + 2, deep) >= LINE_COVERAGE:
                segments.append(segment_of(c))
                if any(id(piece) in side_ids for piece in c.pieces):
                    sided.add(id(segments[-1]))
                if any(id(piece) in outline_ids for piece in c.pieces):
                    outlined.add(id(segments[-1]))
        straight = [p for p in segments if _length(p) >= min_line / 2 or id(p) in sided]  # ends not found yet
        stubs = [p for p in segments if _length(p) < min_line / 2 and id(p) not in sided]
        straight = [p for p in straight if _along_a_stroke(p, distance, width)]  # before they stop others' walks
        lap("merge_s")
        solid = find_dots(ink.raw, ink.mask, distance, width, s.min_radius, max(4 * width, 12.0), ink.words)
        round_things += _new_circles(solid, round_things, tolerance)
        rings, pads = find_rings(ink.raw, ink.mask, width, s.min_radius, max(4 * width, 12.0))
        round_things = [p for p in round_things if not _mid_band(p, pads, tolerance)]
        rings += [p for pad in pads for p in pad]
        round_things += _new_circles([p for p in rings if _traced(p, straight, 2 * tolerance) < POLYGON_TRACED],
                                     round_things, tolerance)  # (a small polygon's hole is round enough)
        reach = 3 * max_gap
        arcs = [p for p in round_things if p.type == "arc"]
        circles = [p for p in round_things if p.type != "arc"]
        extend_arcs(arcs, ink.raw, distance, reach)
        snap_touching_arcs(arcs, 2 * tolerance, max_gap)
        met = extend_lines(straight, round_things, ink.raw, distance, reach)
        if merged:  # the skeleton's stretches between a merged circle and its sides: nothing drawn
            sides_of = [p for p in straight if id(p) in outlined]
            straight = [p for p in straight if id(p) in outlined or not _explained(p, merged, sides_of, 2 * tolerance)]
        settle_acute(straight, round_things, ink.raw, width)  # before lengths are judged; again at the end
        def long_enough(p: Primitive) -> bool:
            return _length(p) >= (SIDE_PENS * width if id(p) in sided else min_line)

        shortened = [p for p in straight if not long_enough(p)]  # ends found already
        straight = drop_covered_lines([p for p in straight if long_enough(p)], 2 * tolerance)
        taken = {id(p) for p in round_things}  # the short arcs kept already: a coil's turns
        corners = _new_circles([p for p in short if id(p) not in taken], circles,
                               tolerance)  # none on a circle found: a nut's circle between its sides
        arcs += fillets_between(corners, straight, ink.raw, max(2 * tolerance, width / 2), max_gap,
                                TANGENT_PENS * width)  # rounded corners a junction cut short
        straight += tangent_bridges(arcs, straight, ink.raw, 2 * tolerance, max_gap, width)
        snapped = snap_tangents(arcs, straight, max(2 * tolerance, width / 2), max_gap, width)
        snapped += snap_tangent_circles(circles, [p for p in straight if id(p) not in outlined],
                                        max(2 * tolerance, width / 2), max_gap, width)  # (sides pass their circle)
        tangent = {(id(p), end) for p, end in snapped}
        met = [(p, end) for p, end in met if (id(p), end) not in tangent]  # on a tangent point: settled
        round_things = circles + drop_covered_arcs(arcs, circles + straight, width / 2)
        straight += self._ticks(stubs, shortened, straight, round_things, ink.raw, distance, width, tolerance, reach)
        primitives = _supported(round_things + straight, support_mask, s.min_support)
        primitives += self._bars(primitives, ink.mask, ink.raw, distance, support_mask, width, tolerance, reach)
        # the ends put on a meeting, walked again among what is kept: what they met may have been
        # dropped since (a letter's stroke beside a line's end), or its end lay short of the meeting then
        extend_lines([p for p in primitives if p.type == "line"], [p for p in primitives if p.type != "line"],
                     ink.raw, distance, reach, again=met)
        settle_acute([p for p in primitives if p.type == "line"], [p for p in primitives if p.type != "line"],
                     ink.raw, width)
        lines = split_at_necks([p for p in primitives if p.type == "line" and not _in_a_word_band(p, ink.words)],
                               distance)
        lines = [p for p in lines if _along_a_stroke(p, distance, width)]
        primitives = [p for p in primitives if p.type != "line"] + lines
        for p in primitives:
            (centre_line if p.type == "line" else centre_round)(p, ink.raw, width)
        primitives = split_at_jogs(primitives, ink.raw, width)
        primitives += rounded_corners(primitives, ink.raw, width)
        primitives = [p for p in primitives if p.type != "arc" or not _in_fused_strokes(p, distance, width)]
        primitives = with_slots(stadium_ends(primitives, halves, tolerance), slots, tolerance)
        _clip_inside(primitives, w, h)
        _name(primitives)
        lap("score_s")
        return Detection(primitives, stroke_width=width, timings=timings, mask=ink.mask)

    def _ticks(self, stubs: list[Primitive], shortened: list[Primitive], straight: list[Primitive],
               round_things: list[Primitive], ink: np.ndarray, distance: np.ndarray, width: float,
               tolerance: float, reach: float) -> list[Primitive]:
        """Lines too short to be told from letters' strokes alone, kept when they stand side by side
        in a comb (bars.ticks: a connector's pins): the `stubs` once their ends are settled on the
        ink and on what they meet, and the lines `shortened` when theirs were."""
        if self.settings.min_length or not stubs + shortened:
            return []
        extend_lines(stubs, straight + round_things, ink, distance, reach)
        combs = ticks([p for p in stubs + shortened if _length(p) >= TICK_PENS * width], width)
        kept = {id(p) for p in drop_covered_lines(straight + combs, 2 * tolerance)}
        return [p for p in combs if id(p) in kept]

    def _bars(self, found: list[Primitive], mask: np.ndarray, ink: np.ndarray, distance: np.ndarray,
              support_mask: np.ndarray, width: float, tolerance: float, reach: float) -> list[Primitive]:
        """Short lines from the ink nothing found explains (bars.py), ends settled on the ink and on
        what they meet, less those lying along a line found already (two leftovers of one stroke)."""
        bars = short_bars(found, mask, width)
        bars += dashes(ink & ~mask, width)  # the ink set aside as text: dashed lines' dashes
        if not bars:
            return []
        extend_lines(bars, found, ink, distance, reach)
        kept = {id(p) for p in drop_covered_lines([p for p in found if p.type == "line"] + bars, 2 * tolerance)}
        least = self.settings.min_length or LEAST_PENS * width
        return _supported([p for p in bars if id(p) in kept and _length(p) >= least], support_mask,
                          self.settings.min_support)


def _new_circles(found: list[Primitive], round_things: list[Primitive], tolerance: float) -> list[Primitive]:
    """The circles `found` in the ink (dots, rings, round holes) that are not one found already (by
    the chains, or as a dot: a ring whose hole survived); likewise arcs not on such a circle."""
    circles = [p.geometry for p in round_things if p.type == "circle"]
    return [d for d in found if not any(same_circle(d.geometry, c, 2 * tolerance, 2 * tolerance) for c in circles)]


def _mid_band(thing: Primitive, pads: list[Pad], tolerance: float) -> bool:
    """Whether `thing` is a circle midway in a band of ink that two concentric circles' strokes make
    (a pad round its hole): the skeleton runs down the band's middle, and the chains found that."""
    g = thing.geometry
    return thing.type == "circle" and any(
        math.hypot(g["cx"] - inner.geometry["cx"], g["cy"] - inner.geometry["cy"]) <= 2 * tolerance and
        inner.geometry["r"] + tolerance < g["r"] < outer.geometry["r"] - tolerance for inner, outer in pads)


def _traced(ring: Primitive, lines: list[Primitive], reach: float) -> float:
    """The share of a circle that lies within `reach` of one of `lines` that does not run inside
    it further than `reach` (a polygon's sides, all round it: a hexagon socket's hole is round
    enough for a ring; a centre mark's or a wire's lines cross it)."""
    g = ring.geometry
    centre = np.array([[g["cx"], g["cy"]]])
    angles = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
    points = np.stack([g["cx"] + g["r"] * np.cos(angles), g["cy"] + g["r"] * np.sin(angles)], axis=1)
    near = np.zeros(len(points), bool)
    for p in lines:
        q = p.geometry
        if min(q["x1"], q["x2"]) > g["cx"] + g["r"] + reach or max(q["x1"], q["x2"]) < g["cx"] - g["r"] - reach or \
                min(q["y1"], q["y2"]) > g["cy"] + g["r"] + reach or max(q["y1"], q["y2"]) < g["cy"] - g["r"] - reach:
            continue
        if _off_segment(centre, q)[0] >= g["r"] - reach:
            near |= _off_segment(points, q) <= reach
    return float(near.mean())


def _explained(p: Primitive, circles: list[Primitive], lines: list[Primitive], reach: float) -> bool:
    """Whether the line `p` lies within `reach` of one of `circles` or `lines` all along: a flat
    stretch of a circle between the places others merge with it, or the skeleton running between
    the circle and a side where their strokes are one."""
    g = p.geometry
    t = np.linspace(0.0, 1.0, 5)
    points = np.column_stack([g["x1"] + t * (g["x2"] - g["x1"]), g["y1"] + t * (g["y2"] - g["y1"])])
    near = np.zeros(len(points), bool)
    for c in circles:
        q = c.geometry
        near |= np.abs(np.hypot(points[:, 0] - q["cx"], points[:, 1] - q["cy"]) - q["r"]) <= reach
    for other in lines:
        near |= _off_segment(points, other.geometry) <= reach
    return bool(near.all())


def _off_segment(points: np.ndarray, q: dict) -> np.ndarray:
    """How far each of `points` (N×2) lies from the segment of the line geometry `q`."""
    a, d = np.array([q["x1"], q["y1"]]), np.array([q["x2"] - q["x1"], q["y2"] - q["y1"]])
    t = np.clip((points - a) @ d / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(*(points - a - t[:, None] * d).T)


def _length(p: Primitive) -> float:
    g = p.geometry
    return math.hypot(g["x2"] - g["x1"], g["y2"] - g["y1"])


def _supported(primitives: list[Primitive], mask: np.ndarray, least: float) -> list[Primitive]:
    """The primitives with at least `least` of their length on ink, each scored by that share."""
    kept = []
    for p in primitives:
        support = _support(p, mask)
        if support >= least:
            p.confidence = round(support, 3)
            kept.append(p)
    return kept


def _in_a_word_band(p: Primitive, words: list[Band]) -> bool:
    """Whether a line lies within a word's band (binarize.word_bands) and is no longer than
    WORD_LINES times its letters' height: a stroke of letters touching a drawn one, kept with it."""
    g = p.geometry
    return any(x0 <= min(g["x1"], g["x2"]) and max(g["x1"], g["x2"]) <= x1 and
               y0 <= min(g["y1"], g["y2"]) and max(g["y1"], g["y2"]) <= y1 and _length(p) <= WORD_LINES * height
               for x0, y0, x1, y1, height in words)


def _along_a_stroke(p: Primitive, distance: np.ndarray, width: float) -> bool:
    """Whether a line's middle runs inside a stroke (RIDGE_DEPTH, RIDGE_SHARE, RIDGE_ENDS): a line
    found on a stroke lies within a pixel or so of its ridge all along; one fitted to pieces of
    letters or of a zigzag dips to the paper's edge wherever it crosses or grazes their strokes."""
    points = sample_array(p.type, p.geometry, 1.0)
    aside = int(round(RIDGE_ENDS * len(points)))
    middle = points[aside:len(points) - aside] if len(points) > 2 * aside + 2 else points
    return float((at_points(distance, middle) >= RIDGE_DEPTH * width).mean()) >= RIDGE_SHARE


def _in_fused_strokes(p: Primitive, distance: np.ndarray, width: float) -> bool:
    """Whether an arc runs FUSED_DEPTH pens deep in the ink or more over half its length: down the
    middle of strokes fused into one mass (a pad's two circles and its neighbours', drawn with a
    wide pen), a pen deep, where the skeleton gives arcs of nothing drawn; a stroke's own middle
    lies half a pen deep."""
    return float(np.median(at_points(distance, sample_array(p.type, p.geometry, 1.0)))) >= FUSED_DEPTH * width


def _support(p: Primitive, mask: np.ndarray) -> float:
    """Share of the primitive's points (1 px apart) that fall on ink: its confidence."""
    points = sample_array(p.type, p.geometry, 1.0)
    return float(on_mask(mask, points[:, 0], points[:, 1]).sum()) / len(points)


def _clip_inside(primitives: list[Primitive], w: int, h: int) -> None:
    """Line ends snapped a little past the border are brought back inside the image."""
    for p in primitives:
        if p.type == "line":
            g = p.geometry
            for key, limit in (("x1", w), ("x2", w), ("y1", h), ("y2", h)):
                g[key] = min(max(g[key], 0.0), float(limit))


def _name(primitives: list[Primitive]) -> None:
    order = {"line": 0, "circle": 1, "arc": 2}
    primitives.sort(key=lambda p: (order[p.type], -p.confidence))
    counters = {"line": 0, "circle": 0, "arc": 0}
    prefix = {"line": "l", "circle": "c", "arc": "a"}
    for p in primitives:
        counters[p.type] += 1
        p.id = f"{prefix[p.type]}{counters[p.type]}"

