"""Arc pieces → circles and arcs.

Junctions cut a circle into several arc pieces (a radius touching it, a line crossing it). Pieces
lying on one circle are gathered, the circle is refitted on all their points, and the angular
coverage decides: no gap wider than a junction → a circle; otherwise one arc per covered stretch.
Arcs shorter than the shortest arc alone are kept when they are the turns of a coil (`coiled`);
two equal circles or arcs round a smaller circle midway are an oval pad's ends (`stadium_ends`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .fitting import CircleFit, Piece, angular_span, fit_circle, percentile
from .primitives import Primitive, arc, circle
from .spatial import Box, Grid, box_of, group_sizes

COIL_RUN = 3  # a coil has at least this many turns …
COIL_RATIO = 0.8  # … of one radius within this ratio …
COIL_PITCH = 2.2  # … whose centres are no further apart than this many radii
HALF_SWEEP = 120.0  # degrees of skeleton round an inked circle: a half circle, ends turned into ink
MIN_COVERAGE = 0.7  # share of a circle its skeleton must cover (the rest: crossings and junctions)


@dataclass(eq=False)  # compared by identity: they hold arrays
class ArcCluster:
    points: np.ndarray
    fit: CircleFit
    pieces: list[Piece] = field(default_factory=list)

    def add(self, piece: Piece, fit: CircleFit) -> None:
        self.points = np.concatenate([self.points, piece.points])
        self.pieces.append(piece)
        self.fit = fit


def cluster_arcs(pieces: list[Piece], tolerance: float) -> list[ArcCluster]:
    """Gather arc pieces that lie on one circle (within 1.5 × tolerance for 95% of their points)."""
    clusters: list[ArcCluster] = []
    grid = Grid(cell=128.0)
    for piece in sorted(pieces, key=lambda p: -len(p.points)):
        fit = fit_circle(piece.points)
        if fit is None:
            continue
        for index in grid.query(_circle_box(fit, tolerance)):
            cluster = clusters[index]
            joint = _joint_fit(cluster, piece.points, fit, tolerance)
            if joint is not None:
                cluster.add(piece, joint)
                grid.add(index, _circle_box(joint, tolerance))
                break
        else:
            clusters.append(ArcCluster(piece.points, fit, [piece]))
            grid.add(len(clusters) - 1, _circle_box(fit, tolerance))
    alive = [True] * len(clusters)
    for i, a in enumerate(clusters):  # clusters that grew towards each other
        merged = alive[i]
        while merged:
            merged = False
            for j in grid.query(_circle_box(a.fit, tolerance)):
                if j == i or not alive[j]:
                    continue
                b = clusters[j]
                joint = _joint_fit(a, b.points, b.fit, tolerance)
                if joint is not None:
                    a.pieces.extend(b.pieces)
                    a.points, a.fit = np.concatenate([a.points, b.points]), joint
                    alive[j] = False
                    grid.remove(j)
                    grid.add(i, _circle_box(joint, tolerance))
                    merged = True
                    break
    return [c for c, keep in zip(clusters, alive, strict=True) if keep]


def _circle_box(fit: CircleFit, tolerance: float) -> Box:
    margin = fit.r * 1.15 + 2 * tolerance
    return fit.cx - margin, fit.cy - margin, fit.cx + margin, fit.cy + margin


def _joint_fit(cluster: ArcCluster, points: np.ndarray, fit: CircleFit, tolerance: float) -> CircleFit | None:
    c = cluster.fit
    # the new points must lie near the cluster's circle; a piece's own circle must be close too,
    # unless its points already sit on the cluster's (short pieces have unreliable own circles)
    d = np.abs(np.hypot(points[:, 0] - c.cx, points[:, 1] - c.cy) - c.r)
    near = percentile(d, 90)
    if near > 3 * tolerance:
        return None
    slack = 0.15 * max(c.r, fit.r) + 2 * tolerance
    if near > 1.5 * tolerance and (abs(c.r - fit.r) > slack or math.hypot(c.cx - fit.cx, c.cy - fit.cy) > slack):
        return None
    joint = fit_circle(np.concatenate([cluster.points, points]))
    if joint is None or percentile(joint.residuals, 95) > 1.5 * tolerance:
        return None
    return joint


def absorb_line_pieces(clusters: list[ArcCluster], lines: list[Piece], tolerance: float,
                       max_gap: float, ink: np.ndarray | None = None) -> list[Piece]:
    """Short line pieces that lie on a cluster's circle, next to its coverage or joined to it by
    ink (junction debris, flat stretches of large circles), join that circle; the rest are returned."""
    left = []
    grid = Grid(cell=128.0)
    for index, cluster in enumerate(clusters):
        grid.add(index, _circle_box(cluster.fit, tolerance))
    for piece in lines:
        taken = False
        (x0, y0), (x1, y1) = piece.points[0], piece.points[-1]
        for index in grid.query(box_of(piece.points)):
            cluster = clusters[index]
            c = cluster.fit
            if abs(math.hypot(x0 - c.cx, y0 - c.cy) - c.r) > 3 * tolerance or \
                    abs(math.hypot(x1 - c.cx, y1 - c.cy) - c.r) > 3 * tolerance:
                continue
            if not _along(piece.points, c.cx, c.cy, c.r, tolerance):
                continue
            start, end = _nearest_gap(c.angles(piece.points), c.angles(cluster.points))
            gap = math.radians(end - start) * c.r
            if gap > max_gap and (ink is None or gap > 5 * max_gap or not _inked_gap(ink, c, start, end)):
                continue
            cluster.points = np.concatenate([cluster.points, piece.points])
            cluster.pieces.append(piece)
            taken = True
            break
        if not taken:
            left.append(piece)
    for cluster in clusters:
        fit = fit_circle(cluster.points)
        if fit is not None:
            cluster.fit = fit
    return left


def off_circles(pieces: list[Piece], clusters: list[ArcCluster], tolerance: float) -> list[Piece]:
    """The line `pieces` that do not lie along a cluster's circle (`_along`, as absorb_line_pieces
    asks): a flat stretch of a large circle's hole is that circle's, not a line's."""
    if not clusters:
        return list(pieces)
    circles = np.array([(c.fit.cx, c.fit.cy, c.fit.r) for c in clusters])
    def on_one(points: np.ndarray) -> bool:
        probe = points[[0, len(points) // 2, -1]]  # ends and middle first: cheap
        near = np.abs(np.hypot(probe[:, :1] - circles[:, 0], probe[:, 1:] - circles[:, 1]) - circles[:, 2])
        return any(_along(points, cx, cy, r, tolerance) for cx, cy, r in circles[(near <= 3 * tolerance).all(axis=0)])

    return [p for p in pieces if not on_one(p.points)]


def _along(points: np.ndarray, cx: float, cy: float, r: float, tolerance: float) -> bool:
    """Whether `points` lie along the circle: 90% of them within 1.5 × tolerance of it."""
    return percentile(np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r), 90) <= 1.5 * tolerance


def _nearest_gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(start, end) degrees, end ≥ start, of the shortest stretch of circle going from an angle of
    one set to an angle of the other (either way round)."""
    angles = np.concatenate([a % 360.0, b % 360.0])
    labels = np.concatenate([np.zeros(len(a), bool), np.ones(len(b), bool)])
    order = np.argsort(angles, kind="stable")
    angles, labels = angles[order], labels[order]
    following = np.roll(np.arange(len(angles)), -1)
    steps = (angles[following] - angles) % 360.0
    steps[labels == labels[following]] = np.inf
    i = int(np.argmin(steps))
    return float(angles[i]), float(angles[i] + steps[i])


def primitives_of(cluster: ArcCluster, max_gap: float, min_length: float, max_radius: float,
                  ink: np.ndarray | None = None, halves: list[Primitive] | None = None) -> list[Primitive]:
    """A circle when the coverage has no gap wider than `max_gap` px, nor any wider gap where the
    circle's path is ink all the same (another stroke crossing at a shallow angle); else one arc
    per covered stretch. A circle whose path is ink all round but whose skeleton covers less than
    MIN_COVERAGE of it, and at least HALF_SWEEP degrees, is no circle: its covered stretches go to
    `halves` (a stadium's ends, see stadium_ends; or a letter's bowl)."""
    fit = cluster.fit
    if fit.r > max_radius or fit.r < 2:
        return []
    angles = np.sort(fit.angles(cluster.points))
    gaps = np.diff(np.concatenate([angles, [angles[0] + 360.0]]))
    gap_limit = max(3.0, math.degrees(max_gap / fit.r))
    wide = np.nonzero(gaps > gap_limit)[0]
    big = wide
    if ink is not None:
        big = np.array([i for i in wide if not _inked_gap(ink, fit, angles[i], angles[i] + gaps[i])], int)
    if big.size == 0:
        # the gaps the ink bridges must not be most of the circle: a small "circle" that turns
        # through a blob of ink (an acute corner, an arrowhead) is covered by skeleton on one side only
        covered = 360.0 - float(gaps[wide].sum())
        if covered >= MIN_COVERAGE * 360.0:
            return [circle(fit.cx, fit.cy, fit.r)]  # a closed ring is a circle however small (min_radius decides)
        if halves is not None and covered >= HALF_SWEEP:
            halves += _arcs_between(cluster, wide, angles, min_length, max_radius)
        return []
    return _arcs_between(cluster, big, angles, min_length, max_radius)


def _arcs_between(cluster: ArcCluster, big: np.ndarray, angles: np.ndarray, min_length: float,
                  max_radius: float) -> list[Primitive]:
    """One arc per stretch of the cluster's points between two of the `big` gaps."""
    fit = cluster.fit
    result = []
    n = len(angles)
    for k, gap_index in enumerate(big):
        start_index = (gap_index + 1) % n
        end_index = big[(k + 1) % len(big)]
        start = angles[start_index]
        end = angles[end_index]
        if end < start or (end == start and len(big) == 1):
            end += 360.0
        part = _points_between(cluster.points, fit, start, end)
        if len(part) < 8:
            continue
        refit = fit_circle(part) or fit
        if refit.r > max_radius:
            continue
        start, sweep = angular_span(refit.angles(part))
        if math.radians(sweep) * refit.r < min_length:
            continue
        result.append(arc(refit.cx, refit.cy, refit.r, start, start + sweep))
    return result


def coiled(arcs: list[Primitive], short: list[Primitive]) -> list[Primitive]:
    """The `short` arcs that are turns of a coil: arcs of about one radius (within COIL_RATIO)
    whose centres follow one another no further apart than COIL_PITCH radii, COIL_RUN or more
    linked (`arcs`, those long enough alone, count as links too). An inductor's bumps and a wave's
    half-circles are short arcs side by side; a letter's curve or a rounded corner stands alone."""
    every = arcs + short
    n = len(every)
    if len(short) == 0 or n < COIL_RUN:
        return []
    g = [p.geometry for p in every]
    links = [(i, j) for i in range(n) for j in range(i + 1, n)
             if COIL_RATIO <= g[i]["r"] / g[j]["r"] <= 1 / COIL_RATIO
             and math.hypot(g[i]["cx"] - g[j]["cx"], g[i]["cy"] - g[j]["cy"]) <= COIL_PITCH * max(g[i]["r"], g[j]["r"])]
    size = group_sizes(n, links)
    return [p for i, p in enumerate(every) if i >= len(arcs) and size[i] >= COIL_RUN]


def _points_between(points: np.ndarray, fit: CircleFit, start: float, end: float) -> np.ndarray:
    rel = (fit.angles(points) - start) % 360.0
    return points[rel <= (end - start) + 1e-6]


def _inked_gap(ink: np.ndarray, fit: CircleFit, start: float, end: float, need: float = 0.9) -> bool:
    """Whether the circle's path from `start` to `end` degrees lies on ink."""
    h, w = ink.shape
    n = max(2, int(math.radians(end - start) * fit.r))
    t = np.radians(np.linspace(start, end, n))
    xs = np.round(fit.cx + fit.r * np.cos(t)).astype(int)
    ys = np.round(fit.cy + fit.r * np.sin(t)).astype(int)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    if inside.mean() < 1:
        return False
    return float(ink[ys, xs].mean()) >= need


def stadium_ends(round_things: list[Primitive], halves: list[Primitive], tolerance: float) -> list[Primitive]:
    """A slot's or an oval pad's two ends, found as two circles or arcs, made the half circles they are.

    When the hole's ring inside an oval pad touches its sides, the ink round each end closes into
    a whole circle (the end's half circle, the sides and the far side of the hole's ring), or the
    skeleton turns into the fused ink before the half circle ends (`halves`: primitives_of's arcs
    round an inked circle, kept only here): two circles or arcs of one radius, their centres closer
    than that radius, and a smaller circle midway between them. Each becomes the half circle facing
    away from the other. Two equal circles that close with nothing at their middle (an eccentric's
    circles) stay circles."""
    every = round_things + halves
    rounds = [p for p in every if p.type in ("circle", "arc")]
    g = [p.geometry for p in rounds]
    circles = [p.geometry for p in round_things if p.type == "circle"]
    paired: dict[int, int] = {}
    for i, j in _equal_and_close(g, tolerance):
        a, b = g[i], g[j]
        if i in paired or j in paired or not (_faces(a, b) and _faces(b, a)):
            continue
        mx, my = (a["cx"] + b["cx"]) / 2, (a["cy"] + b["cy"]) / 2
        if any(c["r"] < min(a["r"], b["r"]) - tolerance and math.hypot(c["cx"] - mx, c["cy"] - my) <= tolerance
               for c in circles):
            paired[i], paired[j] = j, i
    ends = {id(rounds[i]): rounds[j] for i, j in paired.items()}
    tentative = {id(p) for p in halves}
    result = []
    for p in every:
        other = ends.get(id(p))
        if other is None:
            if id(p) not in tentative:
                result.append(p)
            continue
        a, away = p.geometry, _away(p.geometry, other.geometry)
        result.append(arc(a["cx"], a["cy"], a["r"], away - 90, away + 90, p.confidence))
    return result


def _equal_and_close(g: list[dict], tolerance: float) -> list[tuple[int, int]]:
    """Pairs (i < j) of circles or arcs of one radius (within `tolerance`) whose centres are more
    than two tolerances apart and no further apart than that radius, nearest first."""
    grid = Grid(64.0)
    for i, a in enumerate(g):
        grid.add(i, (a["cx"], a["cy"], a["cx"], a["cy"]))
    pairs = []
    for i, a in enumerate(g):
        for j in grid.query((a["cx"] - a["r"], a["cy"] - a["r"], a["cx"] + a["r"], a["cy"] + a["r"])):
            b = g[j]
            apart = math.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"])
            if j > i and abs(a["r"] - b["r"]) <= tolerance and 2 * tolerance < apart <= min(a["r"], b["r"]):
                pairs.append((apart, i, j))
    return [(i, j) for _, i, j in sorted(pairs)]


def _away(a: dict, b: dict) -> float:
    return math.degrees(math.atan2(a["cy"] - b["cy"], a["cx"] - b["cx"]))


def _faces(a: dict, b: dict) -> bool:
    """Whether `a` (a circle, or an arc) runs round the side facing away from `b`'s centre."""
    return "start" not in a or (_away(a, b) - a["start"]) % 360.0 <= a["end"] - a["start"]
