"""Line pieces → line segments: collinear fragments merged, ends snapped to where they meet.

Junctions and crossings cut a drawn line into fragments; fragments that lie on one straight line
with a gap no wider than a junction are one line again. Skeletons are unreliable right at
junctions and corners, so a line end is then moved onto the line or circle it runs into — but only
when ink joins them, so a free end near another stroke stays free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .fitting import LineFit, Piece, fit_line
from .primitives import Primitive, line


@dataclass
class LineCluster:
    points: np.ndarray
    fit: LineFit
    pieces: list[Piece] = field(default_factory=list)

    def span(self) -> tuple[float, float]:
        t = self.fit.project(self.points)
        return float(t.min()), float(t.max())


def cluster_lines(pieces: list[Piece], tolerance: float, max_gap: float, min_piece: float) -> list[LineCluster]:
    clusters: list[LineCluster] = []
    for piece in sorted(pieces, key=lambda p: -_length(p.points)):
        if _length(piece.points) < min_piece:
            continue
        for cluster in clusters:
            joint = _joint_fit(cluster, piece.points, tolerance, max_gap)
            if joint is not None:
                cluster.points = np.concatenate([cluster.points, piece.points])
                cluster.fit = joint
                cluster.pieces.append(piece)
                break
        else:
            clusters.append(LineCluster(piece.points, fit_line(piece.points), [piece]))
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(clusters):
            for b in clusters[i + 1:]:
                joint = _joint_fit(a, b.points, tolerance, max_gap)
                if joint is not None:
                    a.points = np.concatenate([a.points, b.points])
                    a.fit = joint
                    a.pieces.extend(b.pieces)
                    clusters.remove(b)
                    merged = True
                    break
            if merged:
                break
    return clusters


def _length(points: np.ndarray) -> float:
    return float(np.hypot(*(points[-1] - points[0]))) if len(points) > 1 else 0.0


def _joint_fit(cluster: LineCluster, points: np.ndarray, tolerance: float, max_gap: float) -> LineFit | None:
    fit = cluster.fit
    normal = np.array([-fit.direction[1], fit.direction[0]])
    if np.percentile(np.abs((points - fit.centre) @ normal), 90) > 2 * tolerance:
        return None
    lo, hi = cluster.span()
    t = fit.project(points)
    gap = max(t.min() - hi, lo - t.max(), 0.0)
    if gap > max_gap:
        return None
    joint = fit_line(np.concatenate([cluster.points, points]))
    if np.percentile(joint.residuals, 95) > 1.5 * tolerance:
        return None
    return joint


def segment_of(cluster: LineCluster) -> Primitive:
    a, b = cluster.fit.endpoints(cluster.points)
    return line(float(a[0]), float(a[1]), float(b[0]), float(b[1]))


def snap_ends(lines: list[Primitive], others: list[Primitive], ink: np.ndarray, reach: float) -> None:
    """Move each line end onto the nearest line/circle/arc its stroke runs into, within `reach` px
    along its own direction, when the pixels between are ink (in place)."""
    for index, current in enumerate(lines):
        g = current.geometry
        for end in (0, 1):
            ex, ey = (g["x1"], g["y1"]) if end == 0 else (g["x2"], g["y2"])
            ox, oy = (g["x2"], g["y2"]) if end == 0 else (g["x1"], g["y1"])
            length = math.hypot(ex - ox, ey - oy)
            if length < 1:
                continue
            ux, uy = (ex - ox) / length, (ey - oy) / length
            best = None
            for j, other in enumerate(lines + others):
                if j == index:
                    continue
                for px, py in _intersections(ox, oy, ux, uy, other, reach):
                    t = (px - ex) * ux + (py - ey) * uy  # > 0: beyond the end
                    if t < -min(reach / 2, length / 4) or t > reach:
                        continue
                    distance = math.hypot(px - ex, py - ey)
                    if best is not None and distance >= best[0]:
                        continue
                    if not _inked(ink, (ex, ey), (px, py)):
                        continue
                    best = (distance, px, py)
            if best is not None:
                if end == 0:
                    g["x1"], g["y1"] = best[1], best[2]
                else:
                    g["x2"], g["y2"] = best[1], best[2]


def _intersections(ox: float, oy: float, ux: float, uy: float, other: Primitive, reach: float):
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


def _inked(ink: np.ndarray, a: tuple[float, float], b: tuple[float, float], need: float = 0.9) -> bool:
    h, w = ink.shape
    n = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1])) + 1)
    xs = np.clip(np.round(np.linspace(a[0], b[0], n)).astype(int), 0, w - 1)
    ys = np.clip(np.round(np.linspace(a[1], b[1], n)).astype(int), 0, h - 1)
    return float(ink[ys, xs].mean()) >= need
