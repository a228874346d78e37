"""Line pieces → line segments: collinear fragments merged, ends snapped to where they meet.

Junctions and crossings cut a drawn line into fragments; fragments that lie on one straight line
with a gap no wider than a junction are one line again. Where a line's ends really are is settled
afterwards, from the ink (ends.py), with `intersections` giving the points where it meets others.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .fitting import LineFit, Piece, fit_line, percentile
from .primitives import Primitive, line
from .spatial import Box, Grid, at_points, box_of, grown

TURN = 25.0  # degrees: a piece or a cluster heading further off a line's direction is not part of it


@dataclass(eq=False)  # compared by identity: they hold arrays
class LineCluster:
    points: np.ndarray
    fit: LineFit
    pieces: list[Piece] = field(default_factory=list)

    def span(self) -> tuple[float, float]:
        t = self.fit.project(self.points)
        return float(t.min()), float(t.max())

    def box(self) -> Box:
        return box_of(self.points)

    def coverage(self, gap: float, ink: np.ndarray | None = None) -> float:
        """Share of the span its own skeleton points cover, gaps up to `gap` px counting as
        covered (junctions cut a line there), and longer ones that are `ink` all along the line
        (a circle tangent to it: their strokes merge, and the skeleton runs between the two; the
        caller passes the pixels deep in ink: blur joins a comb's teeth only at their very ends);
        the bits of letters a word's baseline lines up are far apart, with paper between."""
        t = np.sort(self.fit.project(self.points))
        if len(t) < 2 or t[-1] - t[0] <= 0:
            return 1.0
        steps = np.diff(t)
        wide = steps > gap
        if ink is not None:
            for i in np.flatnonzero(wide):
                wide[i] = not _inked(self.fit, float(t[i]), float(t[i + 1]), ink)
        return float(1.0 - steps[wide].sum() / (t[-1] - t[0]))

    def absorb(self, points: np.ndarray, pieces: list[Piece], fit: LineFit) -> None:
        self.points = np.concatenate([self.points, points])
        self.pieces.extend(pieces)
        self.fit = fit
        self._frame = None

    _frame: tuple[float, float, float, float] | None = None

    def frame(self) -> tuple[float, float, float, float]:
        """(cx, cy, nx, ny): a point on the line and its normal, as plain floats (cheap tests)."""
        if self._frame is None:
            cx, cy = self.fit.centre
            self._frame = (float(cx), float(cy), float(-self.fit.direction[1]), float(self.fit.direction[0]))
        return self._frame


def cluster_lines(pieces: list[Piece], tolerance: float, max_gap: float, min_piece: float,
                  ink: np.ndarray | None = None) -> list[LineCluster]:
    """Gather fragments of one straight line: near its fitted line, and separated by at most
    `max_gap` px, or by a longer gap that is ink all along (a crossing at a shallow angle)."""
    reach = 5 * max_gap if ink is not None else max_gap
    clusters: list[LineCluster] = []
    grid = Grid(cell=max(32.0, reach))
    for piece in sorted(pieces, key=lambda p: -_length(p.points)):
        if _length(piece.points) < min_piece:
            continue
        ends = _ends(piece.points)
        for index in grid.query(grown(box_of(piece.points), reach)):
            cluster = clusters[index]
            if not _ends_near(cluster, ends, tolerance):
                continue
            if _turned(cluster.fit.direction, piece.points[-1] - piece.points[0]):
                continue
            joint = _joint_fit(cluster, piece.points, tolerance, max_gap, ink, blank=1.5 * min_piece)
            if joint is not None:
                cluster.absorb(piece.points, [piece], joint)
                grid.add(index, cluster.box())
                break
        else:
            clusters.append(LineCluster(piece.points, fit_line(piece.points), [piece]))
            grid.add(len(clusters) - 1, clusters[-1].box())
    # clusters that grew towards each other
    alive = [True] * len(clusters)
    for i, a in enumerate(clusters):
        merged = alive[i]
        while merged:
            merged = False
            for j in grid.query(grown(a.box(), reach)):
                if j == i or not alive[j]:
                    continue
                b = clusters[j]
                if not _ends_near(a, _ends(b.points), tolerance):
                    continue
                if _turned(a.fit.direction, b.fit.direction):
                    continue
                joint = _joint_fit(a, b.points, tolerance, max_gap, ink, blank=1.5 * min_piece)
                if joint is not None:
                    a.absorb(b.points, b.pieces, joint)
                    alive[j] = False
                    grid.remove(j)
                    grid.add(i, a.box())
                    merged = True
                    break
    return [c for c, keep in zip(clusters, alive, strict=True) if keep]


def _ends(points: np.ndarray) -> tuple[float, float, float, float]:
    return float(points[0, 0]), float(points[0, 1]), float(points[-1, 0]), float(points[-1, 1])


def _ends_near(cluster: LineCluster, ends: tuple[float, float, float, float], tolerance: float) -> bool:
    """Cheap test first: the first and last points lie near the cluster's line."""
    cx, cy, nx, ny = cluster.frame()
    x0, y0, x1, y1 = ends
    limit = 2 * tolerance + 2
    return abs((x0 - cx) * nx + (y0 - cy) * ny) <= limit and abs((x1 - cx) * nx + (y1 - cy) * ny) <= limit


def _turned(direction: np.ndarray, other: np.ndarray) -> bool:
    """Whether `other` heads more than TURN degrees off `direction` (a unit vector). A short piece
    lies within tolerance of a line whatever its heading: a zigzag's legs, each crossing the line
    through a resistor, had been taken into it and joined its two leads across the zigzag."""
    norm = float(np.hypot(*other))
    cross = abs(float(direction[0] * other[1] - direction[1] * other[0]))
    return norm > 0 and cross > math.sin(math.radians(TURN)) * norm


def _length(points: np.ndarray) -> float:
    return float(np.hypot(*(points[-1] - points[0]))) if len(points) > 1 else 0.0


def _joint_fit(cluster: LineCluster, points: np.ndarray, tolerance: float, max_gap: float,
               ink: np.ndarray | None = None, blank: float = math.inf) -> LineFit | None:
    """The line through both, when they lie on one line and the gap between them is a junction:
    up to `max_gap` px, or longer and all ink (a shallow crossing). A gap wider than `blank` px
    must be mostly ink (a crossing stroke, faded ink): bare paper between two collinear
    strokes (dashes, a channel drawn in parts) keeps them apart."""
    fit = cluster.fit
    normal = np.array([-fit.direction[1], fit.direction[0]])
    if percentile(np.abs((points - fit.centre) @ normal), 90) > 2 * tolerance:
        return None
    lo, hi = cluster.span()
    t = fit.project(points)
    gap = max(t.min() - hi, lo - t.max(), 0.0)
    if gap > max_gap and (ink is None or gap > 5 * max_gap):
        return None
    if ink is not None and (gap > max_gap or gap > blank):
        a, b = (hi, t.min()) if t.min() > hi else (t.max(), lo)
        steps = np.linspace(a, b, max(2, round(b - a) + 1))  # round: a 1e-15 error must not drop a sample
        path = fit.centre + steps[:, None] * fit.direction
        if at_points(ink, path).mean() < (0.95 if gap > max_gap else 0.8):
            return None
    joint = fit_line(np.concatenate([cluster.points, points]))
    if percentile(joint.residuals, 95) > 1.5 * tolerance:
        return None
    return joint


def _inked(fit: LineFit, a: float, b: float, ink: np.ndarray) -> bool:
    """Whether the line `fit` runs on `ink` all the way from a to b (positions along it)."""
    steps = np.arange(a, b + 0.5, 1.0)
    return bool(at_points(ink, fit.centre + steps[:, None] * fit.direction).all())


def segment_of(cluster: LineCluster) -> Primitive:
    a, b = cluster.fit.endpoints(cluster.points)
    return line(float(a[0]), float(a[1]), float(b[0]), float(b[1]))


def intersections(ox: float, oy: float, ux: float, uy: float, other: Primitive, reach: float):
    g = other.geometry
    if other.type == "line":
        vx, vy = g["x2"] - g["x1"], g["y2"] - g["y1"]
        seg = math.hypot(vx, vy)
        if seg < 1:
            return []
        vx, vy = vx / seg, vy / seg
        det = ux * (-vy) - uy * (-vx)
        if abs(det) < math.sin(math.radians(8)):  # nearly parallel: no clean meeting point
            return []
        dx, dy = g["x1"] - ox, g["y1"] - oy
        s = (ux * dy - uy * dx) / det  # along the other line
        if s < -reach or s > seg + reach:
            return []
        return [(g["x1"] + s * vx, g["y1"] + s * vy)]
    # circle or arc: solve |o + t u - c| = r
    cx, cy, r = g["cx"], g["cy"], g["r"]
    dx, dy = ox - cx, oy - cy
    b = dx * ux + dy * uy
    c = dx * dx + dy * dy - r * r
    disc = b * b - c
    if disc < 0:
        return []
    points = []
    for t in (-b - math.sqrt(disc), -b + math.sqrt(disc)):
        px, py = ox + t * ux, oy + t * uy
        if other.type == "arc":
            angle = math.degrees(math.atan2(py - cy, px - cx)) % 360.0
            margin = math.degrees(reach / max(r, 1))
            if (angle - g["start"] + margin) % 360.0 > (g["end"] - g["start"]) + 2 * margin:
                continue
        # a line meeting the circle at a grazing angle has no precise meeting point
        cos = abs((px - cx) * ux + (py - cy) * uy) / max(r, 1e-9)
        if cos < math.sin(math.radians(15)):
            continue
        points.append((px, py))
    return points
