"""Fitting lines and circles to points, and cutting one chain into line and arc pieces.

A chain is cut greedily from its start: the longest run that stays within `tolerance` px of one
straight line, or of one circle, becomes a piece; a circle wins only when it explains clearly more
of the chain, because any short stretch of a large circle is also nearly straight. An arc piece
whose end is straight (a line running into the arc tangentially) is split there, and one that is
two straight stretches meeting at a slight bend (a polyline's obtuse corner) is two lines.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STRAIGHT = 1.0  # px: a skeleton stretch this close to one line is straight (pixel steps are ±0.5)


@dataclass
class LineFit:
    centre: np.ndarray  # a point on the line
    direction: np.ndarray  # unit vector
    residuals: np.ndarray  # perpendicular distances of the points

    def project(self, points: np.ndarray) -> np.ndarray:
        return (points - self.centre) @ self.direction

    def endpoints(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.project(points)
        return self.centre + t.min() * self.direction, self.centre + t.max() * self.direction


@dataclass
class CircleFit:
    cx: float
    cy: float
    r: float
    residuals: np.ndarray  # |distance to centre − r|

    def angles(self, points: np.ndarray) -> np.ndarray:
        """Angles of the points in degrees, y down (see primitives.py)."""
        return np.degrees(np.arctan2(points[:, 1] - self.cy, points[:, 0] - self.cx)) % 360.0


def fit_line(points: np.ndarray) -> LineFit:
    """The total-least-squares line: the principal axis of the points' 2×2 scatter, in closed form
    (a general SVD costs more than the whole fit on the few dozen points of a skeleton stretch)."""
    centre = points.sum(axis=0) / len(points)  # = mean(axis=0), without its overhead
    centred = points - centre
    if len(points) < 2:
        return LineFit(centre, np.array([1.0, 0.0]), np.zeros(len(points)))
    x, y = centred[:, 0], centred[:, 1]
    sxx, syy, sxy = float(x @ x), float(y @ y), float(x @ y)
    angle = 0.5 * math.atan2(2.0 * sxy, sxx - syy)
    direction = np.array([math.cos(angle), math.sin(angle)])
    return LineFit(centre, direction, np.abs(y * direction[0] - x * direction[1]))


def fit_circle(points: np.ndarray, refine: int = 3) -> CircleFit | None:
    """Algebraic (Kåsa) fit, then a few Gauss-Newton steps on the geometric distance, which removes
    the algebraic fit's bias towards small circles on short arcs."""
    if len(points) < 5:
        return None
    x, y = points[:, 0], points[:, 1]
    mx, my = float(x.sum()) / len(x), float(y.sum()) / len(y)
    u, v = x - mx, y - my
    # normal equations of [u v 1]·[2cx 2cy c] = u² + v² (Σu = Σv = 0: the points are centred)
    b = u * u + v * v
    n = float(len(u))
    suu, svv, suv = float(u @ u), float(v @ v), float(u @ v)
    sol = _solve3(((suu, suv, 0.0), (suv, svv, 0.0), (0.0, 0.0, n)), (float(u @ b), float(v @ b), float(b.sum())))
    if sol is None:
        return None
    cx, cy = sol[0] / 2, sol[1] / 2
    r2 = sol[2] + cx * cx + cy * cy
    if not math.isfinite(r2) or r2 <= 0:
        return None
    r = math.sqrt(r2)
    for _ in range(refine):  # Gauss-Newton on Σ(|p − c| − r)², normal equations again
        dx, dy = u - cx, v - cy
        d = np.hypot(dx, dy)
        d[d == 0] = 1e-9
        jx, jy = -dx / d, -dy / d
        res = d - r
        sx, sy = float(jx.sum()), float(jy.sum())
        sxy = float(jx @ jy)
        step = _solve3(((float(jx @ jx), sxy, sx), (sxy, float(jy @ jy), sy), (sx, sy, n)),
                       (float(jx @ res), float(jy @ res), float(res.sum())))
        if step is None:
            break
        cx, cy, r = cx - step[0], cy - step[1], r + step[2]
        if not math.isfinite(r) or r <= 0 or max(abs(step[0]), abs(step[1]), abs(step[2])) < 1e-3:
            break
    if not math.isfinite(r) or r <= 0:
        return None
    d = np.hypot(u - cx, v - cy)
    return CircleFit(cx + mx, cy + my, r, np.abs(d - r))


Vector3 = tuple[float, float, float]


def _solve3(a: tuple[Vector3, Vector3, Vector3], b: Vector3) -> Vector3 | None:
    """a·x = b for a symmetric 3×3 `a`, by Cramer's rule on plain floats (numpy's solver costs
    more in overhead than the arithmetic of thousands of small fits); None when `a` is singular or
    nearly so (its determinant under 1e-12 of its diagonal's scale cubed: collinear points)."""
    (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = a
    c0, c1, c2 = a11 * a22 - a12 * a21, a12 * a20 - a10 * a22, a10 * a21 - a11 * a20
    det = a00 * c0 + a01 * c1 + a02 * c2
    if not math.isfinite(det) or abs(det) < 1e-12 * max(abs(a00), abs(a11), abs(a22), 1e-300) ** 3:
        return None
    b0, b1, b2 = b
    x0 = (b0 * c0 + a01 * (a12 * b2 - b1 * a22) + a02 * (b1 * a21 - a11 * b2)) / det
    x1 = (a00 * (b1 * a22 - a12 * b2) + b0 * c1 + a02 * (a10 * b2 - b1 * a20)) / det
    x2 = (a00 * (a11 * b2 - b1 * a21) + a01 * (b1 * a20 - a10 * b2) + b0 * c2) / det
    return x0, x1, x2


def median(values: np.ndarray) -> np.floating:
    """np.median(values) of a 1-D array, to the bit and of the same type (the middle pair's mean
    in the array's own precision, as numpy takes it), without its overhead: every line's pen width
    is read as a median, several times a page (ends.half_width)."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q), linear interpolation, to the bit, without its overhead: the
    line and arc merges ask it thousands of times a page about a few dozen residuals."""
    ordered = np.sort(values, axis=None)
    index = (len(ordered) - 1) * (q / 100)
    lo = math.floor(index)
    a, b = float(ordered[lo]), float(ordered[min(lo + 1, len(ordered) - 1)])
    t = index - lo
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp


def angular_span(angles: np.ndarray) -> tuple[float, float]:
    """(start, sweep) of the smallest arc holding all the angles (degrees)."""
    a = np.sort(angles % 360.0)
    if len(a) == 1:
        return float(a[0]), 0.0
    gaps = np.diff(np.concatenate([a, [a[0] + 360.0]]))
    i = int(np.argmax(gaps))
    start = a[(i + 1) % len(a)]
    return float(start), float(360.0 - gaps[i])


@dataclass
class Piece:
    kind: str  # "line" or "arc"
    points: np.ndarray
    fillet: bool = False  # an arc tangent to the lines on both sides of it (tangent_joins)


CORNER_TURN = 35.0  # degrees: a chain turning at least this much within a few pen widths may be at a corner
CORNER_CONTRAST = 2.0  # … and it is when it turns this many times more than on either side


def corners(points: np.ndarray, window: int, closed: bool = False) -> list[int]:
    """Indices where the chain turns sharply: polyline vertices, the cusps between the bumps of a
    coil, an arrowhead's tip. A skeleton rounds such a corner over about a pen width, so a circle
    fits it within the tolerance; found here first, the chain is cut there and the pieces on
    either side are fitted alone. The turn is measured between the chords `window` points before
    and after each point; a corner turns much more than the chain does `2 × window` points away on
    either side (an arc turns about as much everywhere, so it has no corner)."""
    n = len(points)
    k = max(2, int(window))
    if n < 2 * k + 3:
        return []
    idx = np.arange(n)
    if closed:
        before, after = points[(idx - k) % n], points[(idx + k) % n]
    else:
        # np.minimum/np.maximum: np.clip's values, without its overhead on a short chain
        before, after = points[np.maximum(idx - k, 0)], points[np.minimum(idx + k, n - 1)]
    a, b = points - before, after - points
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    turn = np.degrees(np.abs(np.arctan2(cross, (a * b).sum(axis=1))))
    if not closed:
        turn[:k] = 0.0
        turn[n - k:] = 0.0
    far = 2 * k
    if closed:
        side = np.maximum(turn[(idx - far) % n], turn[(idx + far) % n])
    else:
        left = np.where(idx - far >= 0, turn[np.maximum(idx - far, 0)], 0.0)
        right = np.where(idx + far < n, turn[np.minimum(idx + far, n - 1)], 0.0)
        side = np.maximum(left, right)
    candidate = (turn >= CORNER_TURN) & (turn >= CORNER_CONTRAST * side)
    found: list[int] = []
    for i in np.argsort(-turn, kind="stable"):
        if not candidate[i]:
            break
        if all(min(abs(i - j), n - abs(i - j) if closed else n) > k for j in found):
            found.append(int(i))
    return _spaced(sorted(found), n, 2 * k, closed)


# the stretch from a chain's end to its first corner may be this share of `least` (_spaced): a walk
# ending at a junction stops a pen short of the stroke it meets (a tab standing on an outline)
END_SHARE = 0.8


def _spaced(found: list[int], n: int, least: int, closed: bool) -> list[int]:
    """The corners with at least `least` points of chain to the next corner (or end) on both
    sides: a polyline's sides are long, while a word's letters bend every few pixels. An end's
    stretch may be END_SHARE as long when corners() could measure, `least` points further in,
    that the chain turns less there than at the corner (near both ends it could not: a short
    piece of a small arc, broken off on a scan, turns like a corner everywhere)."""
    while found:
        if closed:
            gaps = [(found[(j + 1) % len(found)] - found[j]) % n or n for j in range(len(found))]
            short = [j for j in range(len(found)) if min(gaps[j], gaps[j - 1]) < least]
        else:
            marks = [0, *found, n - 1]
            gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
            if found[0] + least < n - least // 2:  # corners() zeroes the turn a window from an end
                gaps[0] /= END_SHARE
            if found[-1] - least >= least // 2:
                gaps[-1] /= END_SHARE
            short = [j for j in range(len(found)) if min(gaps[j], gaps[j + 1]) < least]
        if not short:
            break
        found = [c for j, c in enumerate(found) if j not in short]
    return found

# a stretch a line fits nearly as far as a circle is an arc still when the circle turns through this
# many degrees and its rms residual is under this share of the line's (thin small arcs: ChainCutter._rounder)
ROUNDER_SWEEP, ROUNDER_RATIO = 45.0, 0.4


# a straight head is split off an arc piece when a line fits it better (rms) than HEAD_BETTER × the
# piece's circle does, and the curved rest fits a circle of its own better than REST_BETTER × the
# piece's: a short stretch of a large circle fits many circles, so only slightly better
HEAD_BETTER, REST_BETTER = 0.7, 0.9
# an arc piece is two lines when two lines, each within STRAIGHT px, fit it better (rms) than
# BEND_BETTER × its circle does, and turn at least BEND_TURN degrees at their join (less: a large
# circle, whose stretches are all nearly straight)
BEND_BETTER, BEND_TURN = 0.85, 12.0
BEND_LEAST = 8  # points in each of the two lines at least


def bent(points: np.ndarray) -> int | None:
    """Where a stretch fitted by a circle is really two straight stretches meeting at a slight bend
    (see BEND_BETTER), or None. A polyline's obtuse corner turns less than `corners` looks for, and
    a flat circle through it fits within the tolerance: KiCad's brackets became two arcs."""
    n = len(points)
    if n < 3 * BEND_LEAST:
        return None
    circle_fit = fit_circle(points)
    if circle_fit is None:
        return None
    k = np.arange(BEND_LEAST, n - BEND_LEAST)
    squares_of = _line_squares(points)
    squares = squares_of(0, k + 1) + squares_of(k, n)
    best = int(k[np.argmin(squares)])
    if math.sqrt(float(squares.min()) / (n + 1)) > BEND_BETTER * float(np.sqrt(np.mean(circle_fit.residuals ** 2))):
        return None
    head, tail = fit_line(points[:best + 1]), fit_line(points[best:])
    if max(head.residuals.max(), tail.residuals.max()) > STRAIGHT:
        return None
    turn = math.degrees(math.acos(min(1.0, abs(float(head.direction @ tail.direction)))))
    return best if turn >= BEND_TURN else None


def _line_squares(points: np.ndarray) -> Callable[[np.ndarray | int, np.ndarray | int], np.ndarray]:
    """squares(start, stop): the sum of squared distances of points[start:stop] to their best
    line, for many ranges at once, from running sums of the coordinates and their products (summed
    once for all the ranges asked)."""
    centred = points - points.mean(axis=0)
    x, y = centred[:, 0], centred[:, 1]
    sums = np.vstack([np.zeros(6), np.cumsum(np.column_stack([np.ones_like(x), x, y, x * x, y * y, x * y]), axis=0)])

    def squares(start: np.ndarray | int, stop: np.ndarray | int) -> np.ndarray:
        count, sx, sy, sxx, syy, sxy = (sums[stop] - sums[start]).T
        vxx, vyy, vxy = sxx - sx * sx / count, syy - sy * sy / count, sxy - sx * sy / count
        return np.maximum(0.0, (vxx + vyy) / 2 - np.sqrt(((vxx - vyy) / 2) ** 2 + vxy ** 2))

    return squares


class LineWindows:
    """The worst distance of points[i:j] from their best line, for the many windows of one chain
    that cutting it asks about (up to a dozen for every piece): the line from running sums of the
    coordinates and their products, summed once, and only the distances read each time. The
    coordinates are taken from the first point's, so a skeleton's integer pixels sum exactly."""

    def __init__(self, points: np.ndarray):
        self.points = points - points[0]
        x, y = self.points[:, 0], self.points[:, 1]
        self.sums = np.vstack([np.zeros(5), np.cumsum(np.column_stack([x, y, x * x, y * y, x * y]), axis=0)])

    def worst(self, i: int, j: int) -> float:
        """0 for fewer than three points (two always lie on a line)."""
        n = j - i
        if n < 3:
            return 0.0
        sx, sy, sxx, syy, sxy = (float(v) for v in self.sums[j] - self.sums[i])
        mx, my = sx / n, sy / n
        angle = 0.5 * math.atan2(2.0 * (sxy - sx * my), (sxx - sx * mx) - (syy - sy * my))  # as fit_line's
        window = self.points[i:j]
        return float(np.abs((window[:, 1] - my) * math.cos(angle) - (window[:, 0] - mx) * math.sin(angle)).max())


TANGENT_SLACK = 1.5  # tolerances: a line this close to tangent to an arc piece's circle meets it at the tangent point …
TANGENT_PENS = 2.0  # … when its radius is at least this many pens (smaller: a letter's bowl, a corner's rounding)


def tangent_joins(pieces: list[Piece], tolerance: float, least_radius: float = 0.0) -> list[Piece]:
    """The joins between a line piece and the arc piece after or before it on one chain, moved to
    the tangent point when the line is tangent to the arc's circle (TANGENT_SLACK). Cutting
    takes the longest line first, and a line running smoothly into an arc (a fillet, a slot's
    end) stays within the tolerance of it for a while, so the line piece takes the arc's first
    stretch: a quarter circle between two lines kept half its length, too short for an arc. The
    tangent point is where the circle's centre projects onto the line. Circles under `least_radius`
    are left alone: a letter's bowl sitting on a line is tangent to it too."""
    for i in range(1, len(pieces) - 1):
        if all(p.kind == "line" for p in pieces[i - 1:i + 2]):
            pieces[i - 1:i + 2] = _fillet(*pieces[i - 1:i + 2], tolerance, least_radius)
    for i in range(len(pieces) - 1):
        a, b = pieces[i], pieces[i + 1]
        if {a.kind, b.kind} != {"line", "arc"} or a.fillet or b.fillet:
            continue
        line_first = a.kind == "line"
        straight, round_ = (a.points, b.points) if line_first else (b.points[::-1], a.points[::-1])
        moved = _past_tangent(straight, round_, tolerance, least_radius)
        if not moved:
            continue
        keep = len(straight) - moved  # the two pieces share the point at the join, as cutting leaves them
        straight, round_ = straight[:keep], np.concatenate([straight[keep - 1:-1], round_])
        if line_first:
            pieces[i], pieces[i + 1] = Piece("line", straight), Piece("arc", round_)
        else:
            pieces[i], pieces[i + 1] = Piece("arc", round_[::-1]), Piece("line", straight[::-1])
    return pieces


def _fillet(a: Piece, b: Piece, c: Piece, tolerance: float, least_radius: float) -> list[Piece]:
    """Three line pieces in a row, cut again at the tangent points as line, arc (a fillet) and line
    when a circle of at least `least_radius` fits the middle one and as many points again on either
    side within `tolerance`, tangent to both lines (TANGENT_SLACK). A small fillet's arc is all
    taken by the lines on either side but a stretch in the middle straight enough for a line piece
    of its own."""
    m = len(b.points)
    if len(a.points) < m + 6 or len(c.points) < m + 6:
        return [a, b, c]
    points = np.concatenate([a.points, b.points[1:], c.points[1:]])
    first, last = len(a.points) - 1, len(a.points) + m - 2  # the joins a|b and b|c
    fit = fit_circle(points[first - m:last + m + 1])
    if fit is None or fit.r < max(least_radius, 1.0) or fit.residuals.max() > tolerance:
        return [a, b, c]
    ends = []
    for straight, heading in ((a.points[:len(a.points) - m], 1.0), (c.points[m:], -1.0)):
        line_fit = fit_line(straight)
        tangent = _tangent_point(fit, line_fit, tolerance)
        if tangent is None:
            return [a, b, c]
        along = line_fit.project(points)
        way = heading * (1.0 if along[last] >= along[first] else -1.0)  # a: toward the fillet; c: away from it
        ends.append(way * (along - tangent))
    past_a = np.flatnonzero(ends[0] > 0)  # points past a's tangent point
    before_c = np.flatnonzero(ends[1] > 0)  # points before c's tangent point
    if not past_a.size or not before_c.size:
        return [a, b, c]
    start, end = int(past_a[0]) - 1, int(before_c[-1]) + 1
    if start < 2 or end > len(points) - 3 or end - start < 5:
        return [a, b, c]
    return [Piece("line", points[:start + 1]), Piece("arc", points[start:end + 1], fillet=True),
            Piece("line", points[end:])]


def _past_tangent(straight: np.ndarray, round_: np.ndarray, tolerance: float, least_radius: float) -> int:
    """How many of the line piece's last points (`straight`, ending where `round_` starts) lie past
    the tangent point of its line on the arc piece's circle; 0 when the line is not tangent to it."""
    circle_fit = fit_circle(round_)
    if circle_fit is None or circle_fit.r < least_radius or len(straight) < 6:
        return 0
    # the line from the piece less the stretch a circle of this radius stays within the tolerance of
    reach = int(math.ceil(math.sqrt(2 * circle_fit.r * tolerance)))
    line_fit = fit_line(straight[:max(3, len(straight) - reach)])
    tangent = _tangent_point(circle_fit, line_fit, tolerance)
    if tangent is None:
        return 0
    along = line_fit.project(straight)
    heading = 1.0 if along[-1] >= along[0] else -1.0
    past = int(np.count_nonzero(heading * (along - tangent) > 0))
    return past if past < len(straight) - 2 else 0


def _tangent_point(circle_fit: CircleFit, line_fit: LineFit, tolerance: float) -> float | None:
    """Where the circle touches the line, as `line_fit.project` measures along it (the foot of the
    perpendicular from the centre), when the line is within TANGENT_SLACK tolerances of tangent;
    else None."""
    offset = np.array([circle_fit.cx, circle_fit.cy]) - line_fit.centre
    normal = np.array([-line_fit.direction[1], line_fit.direction[0]])
    if abs(abs(float(offset @ normal)) - circle_fit.r) > TANGENT_SLACK * tolerance:
        return None
    return float(offset @ line_fit.direction)


class ChainCutter:
    def __init__(self, tolerance: float = 2.0, max_radius: float = 1e4, min_sweep: float = 20.0,
                 corner_window: int = 0):
        self.tolerance = tolerance
        self.max_radius = max_radius
        self.min_sweep = min_sweep
        self.corner_window = corner_window  # 0: chains are not cut at corners first

    def circle_fits(self, points: np.ndarray) -> bool:
        """Within tolerance of one circle; False under 8 points (so few fit too many circles to tell)."""
        if len(points) < 8:
            return False
        fit = fit_circle(points, refine=2)
        return fit is not None and fit.residuals.max() <= self.tolerance

    def is_arc(self, points: np.ndarray, fit: CircleFit | None = None) -> bool:
        """A real arc: a circle fits, not too large, and it turns at least `min_sweep` degrees.
        `fit`: the points' circle when the caller has it already (fit_circle's default refinement)."""
        fit = fit_circle(points) if fit is None else fit
        if fit is None or fit.r > self.max_radius or fit.residuals.max() > self.tolerance:
            return False
        return angular_span(fit.angles(points))[1] >= self.min_sweep

    def cut(self, points: np.ndarray, closed: bool = False) -> list[Piece]:
        found = corners(points, self.corner_window, closed) if self.corner_window else []
        if closed and self.is_arc(points) and not self._polygon(points, found):
            return [Piece("arc", points)]
        if not found:
            pieces = self._cut(points)
            loop = closed or (len(points) > 8 and float(np.abs(points[0] - points[-1]).max()) <= 1)
            if loop and len(pieces) > 1:  # a loop is cut from wherever it starts: start it mid-line
                lines = [k for k, p in enumerate(pieces) if p.kind == "line"]
                if lines:
                    k = max(lines, key=lambda k: len(pieces[k].points))
                    middle = sum(len(p.points) - 1 for p in pieces[:k]) + len(pieces[k].points) // 2
                    pieces = self._cut(np.concatenate([points[middle:], points[:middle + 1]]))
            return tangent_joins(pieces, self.tolerance, TANGENT_PENS * self.corner_window)
        if closed:  # start at a corner, end at it again
            points = np.concatenate([points[found[0]:], points[:found[0] + 1]])
            found = [j - found[0] for j in found[1:]] + [len(points) - 1]
        pieces: list[Piece] = []
        lo = 0
        for j in [*found, len(points) - 1]:
            if j - lo >= 2:
                pieces.extend(tangent_joins(self._cut(points[lo:j + 1]), self.tolerance,
                                             TANGENT_PENS * self.corner_window))
            lo = j
        return pieces

    def _polygon(self, points: np.ndarray, found: list[int]) -> bool:
        """Whether a closed chain that a circle fits within the tolerance is a small regular polygon
        (a hexagon socket, a nut's outline): corners all round it and straight sides between them.
        A circle cut at three or more points leaves curved stretches (a hexagon of radius 25 px is
        within 1.8 px of its circle at a 3 px pen)."""
        if len(found) < 3:
            return False
        n, trim = len(points), self.corner_window // 2
        for a, b in zip(found, [*found[1:], found[0] + n], strict=True):
            side = points[np.arange(a + trim, b - trim + 1) % n]
            if len(side) < 3 or fit_line(side).residuals.max() > STRAIGHT:
                return False
        return True

    def _cut(self, points: np.ndarray) -> list[Piece]:
        n = len(points)
        pieces: list[Piece] = []
        windows = LineWindows(points)

        def line_fits(a: int, b: int) -> bool:
            return windows.worst(a, b) <= self.tolerance

        def arc_fits(a: int, b: int) -> bool:
            """A circle fits, a straight line counting as a circle of infinite radius: short
            stretches of a curve look straight, and the search must not stop on them (the line
            asked first: its fit costs a third of a circle's)."""
            return line_fits(a, b) or self.circle_fits(points[a:b])

        i = 0
        while i < n - 1:
            end_line = self._longest(n, i, line_fits, 2)
            end_arc = self._longest(n, i, arc_fits, 8)
            stretch = points[i:end_arc]
            further = end_arc > end_line + max(4, 0.15 * (end_line - i))
            # one circle for the three questions asked of the stretch, fitted only when one is asked
            fit = fit_circle(stretch) if further or self._may_be_rounder(stretch, end_line - i) else None
            if fit is not None and (further or self._rounder(stretch, fit)) and self.is_arc(stretch, fit):
                bend = bent(stretch)
                if bend is None:
                    pieces.extend(self.straight_ends(stretch, whole=fit))
                else:
                    pieces += [Piece("line", points[i:i + bend + 1]), Piece("line", points[i + bend:end_arc])]
                i = end_arc - 1
            else:
                pieces.append(Piece("line", points[i:end_line]))
                i = end_line - 1
        return pieces

    @staticmethod
    def _may_be_rounder(points: np.ndarray, straight: int) -> bool:
        """Whether a line fits the stretch almost as far as a circle (`straight` of its points),
        and it is long enough to ask _rounder."""
        return straight >= len(points) - max(4, 0.15 * straight) and len(points) >= 16

    @staticmethod
    def _rounder(points: np.ndarray, fit: CircleFit) -> bool:
        """Whether a stretch that a line fits almost as far as a circle (_may_be_rounder) is still
        an arc: a small arc drawn thin bends less than the tolerance over most of its length, so the
        line reaches nearly as far; the circle (`fit`), though, fits it several times better and
        turns through a wide angle."""
        if angular_span(fit.angles(points))[1] < ROUNDER_SWEEP:
            return False
        line_rms = float(np.sqrt(np.mean(fit_line(points).residuals ** 2)))
        return float(np.sqrt(np.mean(fit.residuals ** 2))) < ROUNDER_RATIO * line_rms

    def straight_ends(self, points: np.ndarray, turned: bool = False, whole: CircleFit | None = None) -> list[Piece]:
        """An arc piece with a straight stretch at either end split into line + arc (+ line).

        A line that runs into an arc tangentially (rounded corners, slots, stadiums) leaves no
        corner in the skeleton, and a flatter circle fits line and arc together within the
        tolerance. A stretch at an end that a line fits clearly better than the piece's circle,
        while the rest alone fits a circle clearly better, is a line. `whole`: the points' circle,
        when the caller has it already."""
        whole = fit_circle(points) if whole is None else whole
        if whole is None or len(points) < 24:
            return [Piece("arc", points)]
        head = self._straight_run(points, whole.residuals)
        tail = self._straight_run(points[::-1], whole.residuals[::-1])
        if not head and not tail:
            return [Piece("arc", points)]
        if tail > head and not turned:  # the longer straight end first, then the other end of the rest
            return [Piece(p.kind, p.points[::-1]) for p in reversed(self.straight_ends(points[::-1], True))]
        if not head:
            return [Piece("arc", points)]
        rest = points[head:]
        after = self.straight_ends(rest) if len(rest) >= 24 else [Piece("arc", rest)]
        if not any(p.kind == "arc" and self._curved(p.points) for p in after):
            return [Piece("arc", points)]
        return [Piece("line", points[:head + 1]), *after]

    def _curved(self, points: np.ndarray) -> bool:
        """On one circle within the tolerance, and not straight (what is left of an arc piece once
        its straight ends are off may be short: the rest of its circle is in other pieces)."""
        fit = fit_circle(points)
        return (fit is not None and fit.r <= self.max_radius and fit.residuals.max() <= self.tolerance
                and fit_line(points).residuals.max() > STRAIGHT)

    def _straight_run(self, points: np.ndarray, residuals: np.ndarray) -> int:
        """How many leading points are a line rather than part of the piece's circle (0: none);
        `residuals`: the points' distances to that circle, in the same order."""
        windows = LineWindows(points)
        k = self._longest(len(points), 0, lambda a, b: windows.worst(a, b) <= STRAIGHT, 2)
        if k < max(10, 4 * self.tolerance) or k > len(points) - 16:
            return 0
        line_rms = float(np.sqrt(np.mean(fit_line(points[:k]).residuals ** 2)))
        circle_rms = float(np.sqrt(np.mean(residuals[:k] ** 2)))
        rest = fit_circle(points[k:])
        if rest is None or line_rms > HEAD_BETTER * circle_rms:
            return 0
        if float(np.sqrt(np.mean(rest.residuals ** 2))) > REST_BETTER * float(np.sqrt(np.mean(residuals[k:] ** 2))):
            return 0
        return k

    @staticmethod
    def _longest(n: int, i: int, fits: Callable[[int, int], bool], least: int) -> int:
        """The largest j ≤ n with fits(i, j), the points i … j − 1 (doubling, then bisection); at
        least i + 2."""
        if i + least > n or not fits(i, i + least):
            return min(n, i + 2)
        good, step = i + least, least
        while good < n:
            trial = min(n, i + step * 2)
            if fits(i, trial):
                good, step = trial, step * 2
            else:
                bad = trial
                while bad - good > 1:
                    mid = (good + bad) // 2
                    if fits(i, mid):
                        good = mid
                    else:
                        bad = mid
                break
        return good
