"""Where strokes really end: walking the ink beyond a fitted end.

Skeletons stop short of a stroke's end (about half a pen width, more at junctions, where chains
are also trimmed), so fitted ends are early. From each end we walk along the primitive while the
pixels are ink; the stroke ends half a pen width before the ink does (round or square caps alike
reach that far). A line end whose walk stops where it meets another line or circle is put exactly
on that meeting point (corners, radii on a circumference, T-junctions). The walk never goes past
`reach` px: ink that goes on further belongs to something else running the same way. Where the
ink runs on smoothly into a tangent line or a touching arc, the walks overshoot, and the ends are
put on the tangent point (snap_tangents, snap_touching_arcs). Where the ink along a line narrows
to a neck or breaks between its ends, the line is two strokes end to end (split_at_necks). Where
two thick strokes meet at an acute angle, the ends go to the ink's tip (settle_acute).
"""
from __future__ import annotations

import math

import numpy as np

from .fitting import median
from .lines import intersections
from .primitives import Primitive, arc_point, length, line, normalised_arc, sample_array
from .spatial import Grid, at_points, grown, on_mask

SNAP_LEAST_SWEEP = 10.0  # degrees an arc keeps at least once its ends are snapped onto tangent lines
OVERSHOOT = 1.5  # a large arc's tangent snap reaches this many √(r × pen width) px (snap_tangents)
COVERED = 0.9  # share of an arc's points near other primitives that makes it a duplicate (drop_covered_arcs)
BLOB_DEPTH = 1.8  # ink this many stroke half-widths deep is a blob (dot), not a stroke
NECK, NECK_RISE = 0.6, 0.8  # a walk through ink this share of the stroke's depth, then this share again:
# the line's end only touches the stroke beyond (ends.touching_end)
SPLIT_NECK = 0.45  # … and a line is cut where its ink narrows below this share mid-way (ends.split_at_necks)
# a second walk (extend_lines' `again`) puts a line end met on a circle back onto another line's end
# it passed, up to this many meeting windows (half a pen and a pixel) behind it: the ink of a circle
# crossing at a corner runs on from it, and the first walk went on into it
CORNER_BACK = 2.0
# … where the other line's end lies on from the corner by as much, up to this many windows: both
# walks went on into the circle (a square pad's outline inside its round pad, corners a pen within)
CORNER_PAST = 2.0
# two line ends this many pen widths apart or closer, their lines less than this many degrees
# apart, are an acute corner (settle_acute) …
ACUTE_NEAR, ACUTE = 1.0, 45.0
# … when each line's far end lies this many pen widths from the other line: one lying in the
# other's stroke all along is a stray piece of its ink, not a corner
ACUTE_APART = 1.0
ACUTE_REACH = 1.5  # pens: … and their ends go to the vertex found no further than this …
ACUTE_CLEAR = 1.0  # pens: … nor when a circle or an arc passes this close to it


def ink_run(ink: np.ndarray, points: np.ndarray) -> int:
    """How many of the consecutive `points` (N×2, x y, 1 px apart) lie on ink; one isolated miss
    (a faint pixel) is forgiven when the next two are ink."""
    on = on_mask(ink, points[:, 0], points[:, 1])
    going = on.copy()  # a step the run goes past: ink, or a miss with the next two on ink
    going[:-2] |= on[1:-1] & on[2:]
    return len(going) if going.all() else int(np.argmin(going))


def half_width(distance: np.ndarray, p: Primitive) -> float:
    """Half the pen width under a primitive, from the ink's distance transform along it."""
    values = at_points(distance, sample_array(p.type, p.geometry, 2.0))
    values = values[values > 0]
    return float(max(0.5, median(values) - 0.5)) if values.size else 1.0


def extend_lines(lines: list[Primitive], others: list[Primitive], ink: np.ndarray, distance: np.ndarray,
                 reach: float, again: list[tuple[Primitive, int]] | None = None) -> list[tuple[Primitive, int]]:
    """Move each line end to where its ink ends, or onto the meeting point found there (in place).
    Returns the ends (line, 0 or 1) put on a meeting point. `again`: walk only those ends, once every
    end is settled (a second walk: what they met may have been dropped since), so a meeting point
    must lie on the other primitive, not on its prolongation, and an end met on a circle goes back
    to a corner with another line it passed (CORNER_BACK), whose end may have run on into the
    circle too (CORNER_PAST)."""
    wanted = None if again is None else {(id(p), end) for p, end in again}
    met: list[tuple[Primitive, int]] = []
    steps = np.arange(1, int(reach) + 1, dtype=np.float64)
    everything = lines + others
    grid = Grid(cell=max(64.0, reach))
    for index, p in enumerate(everything):
        grid.add(index, p.bounds())
    for index, current in enumerate(lines):
        half = half_width(distance, current)
        # how far past the other's fitted end a meeting point may lie: those ends are not extended
        # yet (skeletons stop short), but a line meeting the prolongation of a far line does not meet it
        slack = 3 * half + 2 if wanted is None else 2.0
        for end in (0, 1):
            if wanted is not None and (id(current), end) not in wanted:
                continue
            (ex, ey), (ox, oy) = end_point(current, end), end_point(current, 1 - end)
            length = math.hypot(ex - ox, ey - oy)
            if length < 1:
                continue
            ux, uy = (ex - ox) / length, (ey - oy) / length
            walk = np.column_stack([ex + steps * ux, ey + steps * uy])
            run = ink_run(ink, walk)
            if run >= len(steps):
                continue  # the ink goes on: not this line's end
            depth = at_points(distance, walk[:run])  # the ink's depth along the walk, read once
            # a walk starting in thin ink: is the line's ink a full stroke a pen back from its end?
            full = half + 0.5
            back = np.array([[ex - 2 * half * ux, ey - 2 * half * uy]])
            from_full = bool(depth.size and depth[0] < NECK * full and at_points(distance, back)[0] >= NECK_RISE * full)
            neck = touching_end(depth, half, from_full=from_full)
            if neck is not None:
                run = neck
            t_end = run + 0.5 - half
            centre = blob_centre(depth[:run], half)
            if centre is not None:
                t_end = centre
            window = max(2.0, half + 1.0)
            best = None
            corner = None  # in a second walk: the first other line's end the walk passes on its ink
            for j in grid.query(grown((ex, ey, ex, ey), reach + 2)):
                if j == index:
                    continue
                other = everything[j]
                for px, py in intersections(ox, oy, ux, uy, other, slack):
                    t = (px - ex) * ux + (py - ey) * uy
                    # meeting a stroke at a shallow angle, the walk runs through its ink for longer
                    reach_in = window / max(crossing_sine(ux, uy, other, px, py), 0.4)
                    if -reach_in <= t - t_end <= window and (best is None or abs(t - t_end) < best[0]):
                        best = (abs(t - t_end), px, py, other.type)
                    if wanted is not None and other.type == "line" and -CORNER_BACK * window <= t <= t_end and \
                            _near_end(other, px, py, max(slack, CORNER_PAST * window)) and \
                            (corner is None or t < corner[0]):
                        corner = (t, px, py)
            if best is not None and best[3] != "line" and corner is not None:
                # a corner, then a circle's stroke running on from it: the first walk went on
                # through the ink into the circle, but the line ends at the corner
                best = (0.0, corner[1], corner[2], "line")
            if best is not None:
                nx, ny = best[1], best[2]
                met.append((current, end))
            else:
                t = max(t_end, -length / 4)
                nx, ny = ex + t * ux, ey + t * uy
            set_end_point(current, end, (nx, ny))
    return met


def split_at_necks(lines: list[Primitive], distance: np.ndarray) -> list[Primitive]:
    """`lines`, each cut where the ink along its middle narrows to a neck between its ends (below
    SPLIT_NECK of the stroke's depth, as deep as a stroke again on both sides within two pens) or
    breaks (paper, the ink going on beyond): two collinear strokes whose round ends touch are one
    ink but two lines (an arrow's halves either side of a notch), and strokes apart are two lines
    even where the fragments were joined across the gap. Each end goes half a pen before the neck
    or the paper, as the walks put ends; pieces shorter than two pens are dropped."""
    out: list[Primitive] = []
    for p in lines:
        g = p.geometry
        length = _length(g)
        half = half_width(distance, p)
        full = half + 0.5
        span = int(math.ceil(2 * full)) + 1
        if length < 2 * span + 2:
            out.append(p)
            continue
        ux, uy = (g["x2"] - g["x1"]) / length, (g["y2"] - g["y1"]) / length
        t = np.arange(0.0, length + 0.5, 1.0)
        depth = at_points(distance, np.column_stack([g["x1"] + t * ux, g["y1"] + t * uy]))
        deep = depth >= NECK_RISE * full
        cuts: list[tuple[int, int]] = []  # the narrowest stretch of each neck or break: first, last step
        after = span  # steps before this one are looked at already
        for i in np.flatnonzero(depth[:len(t) - span] < SPLIT_NECK * full):
            if i < after or depth[i] > depth[i - 1]:
                continue
            j = i
            while j + 1 < len(t) and depth[j + 1] == depth[i]:
                j += 1  # a flat bottom: a break's paper, or a neck as thin for a few steps
            if j < len(t) - 1 and depth[j + 1] > depth[i] and deep[max(0, i - span):i].any() and \
                    deep[j + 1:j + 1 + span].any():
                cuts.append((i, j))
            after = j + 1
        if not cuts:
            out.append(p)
            continue
        back = max(0.5, half - 0.5)
        bounds = [0.0] + [b for first, last in cuts for b in (t[first] - back, t[last] + back)] + [length]
        for a, b in zip(bounds[::2], bounds[1::2], strict=True):
            if b - a >= 2 * full:
                ends = (g["x1"] + a * ux, g["y1"] + a * uy, g["x1"] + b * ux, g["y1"] + b * uy)
                out.append(line(*(float(v) for v in ends), confidence=p.confidence))
    return out


def crossing_sine(ux: float, uy: float, other: Primitive, px: float, py: float) -> float:
    """|sin| of the angle at which direction (ux, uy) crosses `other` at (px, py)."""
    g = other.geometry
    if other.type == "line":
        vx, vy = g["x2"] - g["x1"], g["y2"] - g["y1"]
        norm = math.hypot(vx, vy) or 1.0
        return abs(ux * vy - uy * vx) / norm
    nx, ny = px - g["cx"], py - g["cy"]
    return abs(ux * nx + uy * ny) / (math.hypot(nx, ny) or 1.0)


def touching_end(depth: np.ndarray, half: float, from_full: bool = False) -> int | None:
    """How many steps of a walk along a line (`depth`: the ink's depth at each step) lie before a
    neck, when there is one: ink thinner
    than NECK of the stroke's depth, then as deep as a stroke again. A line whose round end only
    touches another stroke (an arrowhead's side beside the next arrow's shaft) runs on through
    that stroke's ink as if it met it, and was drawn to the meeting point, a pen past its end; a
    line that does meet another stays as deep where the two join. A walk that starts in thin ink
    is read only `from_full`, when the line's ink a pen back from its end is a stroke's full depth:
    then the walk starts in the line's own round end (a short bar whose end was put where its ink
    ends), and the thin ink it starts in is the neck; otherwise no neck ahead of it can be told
    from the end it starts at."""
    if len(depth) < 3:
        return None
    full = half + 0.5
    thin = np.flatnonzero(depth < NECK * full)
    if not thin.size or (thin[0] == 0 and not from_full):
        return None
    deep = np.flatnonzero(depth[thin[0]:] >= NECK_RISE * full)
    if not deep.size:
        return None
    return int(thin[0] + np.argmin(depth[thin[0]:thin[0] + deep[0]]))


def blob_centre(depth: np.ndarray, half: float) -> float | None:
    """Where a walk along a line (`depth`: the ink's depth at each step) crosses the middle of a
    blob (a junction dot, a terminal): the
    step of greatest depth, when the ink there is at least BLOB_DEPTH times deeper than the
    stroke's own half width; None when the walk stays in strokes. Connection dots are drawn on
    the point where the lines meet, so the line ends at the dot's centre, not at its far edge."""
    if len(depth) < 2:
        return None
    deepest = int(np.argmax(depth))
    if depth[deepest] < BLOB_DEPTH * (half + 0.5):
        return None
    return float(deepest + 1)


def extend_arcs(arcs: list[Primitive], ink: np.ndarray, distance: np.ndarray, reach: float) -> None:
    """Move each arc's start and end to where its ink ends along the circle (in place)."""
    for p in arcs:
        g = p.geometry
        half = half_width(distance, p)
        step = math.degrees(1.0 / max(g["r"], 1.0))  # 1 px of arc length
        n = int(reach)
        new = {}
        for key, sign in (("end", 1.0), ("start", -1.0)):
            angles = g[key] + sign * step * np.arange(1, n + 1)
            points = np.array([arc_point(g, a) for a in angles])
            run = ink_run(ink, points)
            if run >= n:
                new[key] = g[key]
                continue
            new[key] = g[key] + sign * step * (run + 0.5 - half)
        if 0 < new["end"] - new["start"] < 359.0:
            g.update(normalised_arc(g["cx"], g["cy"], g["r"], new["start"], new["end"]))


def snap_tangents(arcs: list[Primitive], lines: list[Primitive], tolerance: float, reach: float,
                  width: float = 0.0) -> list[tuple[Primitive, int]]:
    """Where a line runs into an arc tangentially (rounded corners, slots, the ends of a stadium),
    no ink shows where one stops and the other starts: walks overshoot, along the line and along
    the circle alike. The join is the tangent point: the foot of the perpendicular from the arc's
    centre to the line. An arc end and a line end both within `reach` px of such a point, with
    the line `tolerance` px from tangent, are moved onto it (in place). A line stays within a pen
    `width` of a circle of radius r for about √(r × width) px past the tangent point, so a large
    arc's walks overshoot further: its reach grows to OVERSHOOT × √(r × width). Returns the line
    ends moved (line, 0 or 1): they are settled, not met (a walk from there overshoots again)."""
    moved: list[tuple[Primitive, int]] = []
    grid = _grid_of(lines, reach)
    for a in arcs:
        g = a.geometry
        reach_of_arc = max(reach, OVERSHOOT * math.sqrt(g["r"] * width))
        for key in ("start", "end"):
            ex, ey = arc_point(g, g[key])
            best = None
            for j in grid.query(grown((ex, ey, ex, ey), reach_of_arc)):
                found = _tangent_foot(g, lines[j].geometry, ex, ey, tolerance, reach_of_arc)
                if found is not None and (best is None or found[0] < best[0]):
                    best = (found[0], found[1], found[2], j, found[3])
            if best is None:
                continue
            _, fx, fy, j, which = best
            if not _move_end(g, key, fx, fy):
                continue  # both ends on one foot (a line tangent at the arc's middle): not a join
            lg = lines[j].geometry
            lg["x1" if which == 0 else "x2"], lg["y1" if which == 0 else "y2"] = fx, fy
            moved.append((lines[j], which))
    return moved


def snap_tangent_circles(circles: list[Primitive], lines: list[Primitive], tolerance: float, reach: float,
                         width: float = 0.0) -> list[tuple[Primitive, int]]:
    """A line tangent to a whole circle (a belt round a pulley, a lever's side running into its
    hub) ends on the tangent point: its walk overshoots along the circle's ink as it does along an
    arc's (snap_tangents). A line end past the foot of the perpendicular from the circle's centre,
    no further than the circle's ink stays within a pen of the line (OVERSHOOT × √(r × pen
    `width`) px: a line going on past a small circle it touches, a bar resting on contacts, goes
    further), the line `tolerance` px from tangent, is moved back onto the foot (in place).
    Returns the line ends moved."""
    moved: list[tuple[Primitive, int]] = []
    grid = _grid_of(lines, reach)
    for c in circles:
        g = c.geometry
        overshoot = OVERSHOOT * math.sqrt(g["r"] * width)
        for j in grid.query(grown(c.bounds(), overshoot)):
            lg = lines[j].geometry
            for end in (0, 1):
                ex, ey, ox, oy = lg[f"x{end + 1}"], lg[f"y{end + 1}"], lg[f"x{2 - end}"], lg[f"y{2 - end}"]
                found = _tangent_foot(g, lg, ex, ey, tolerance, overshoot)
                if found is None or found[3] != end or (ex - found[1]) * (ex - ox) + (ey - found[2]) * (ey - oy) <= 0:
                    continue  # not this end, or it stops short of the foot
                lg[f"x{end + 1}"], lg[f"y{end + 1}"] = found[1], found[2]
                moved.append((lines[j], end))
    return moved


def _grid_of(lines: list[Primitive], reach: float) -> Grid:
    """The lines by place (their index in `lines`), in cells no smaller than `reach`."""
    grid = Grid(cell=max(64.0, reach))
    for index, p in enumerate(lines):
        grid.add(index, p.bounds())
    return grid


def snap_touching_arcs(arcs: list[Primitive], tolerance: float, reach: float) -> None:
    """Where two arcs whose circles touch from outside join (an S-curve, a wave's half-circles, the
    bumps of a coil), the ink runs on smoothly from one into the other, and each walk overshoots
    the join. The join is the touching point, on the line between the centres; an arc end within
    `reach` px of it is moved onto it (in place). Circles touch when their centres lie the sum of
    their radii apart, within `tolerance`."""
    for i, a in enumerate(arcs):
        for b in arcs[i + 1:]:
            ga, gb = a.geometry, b.geometry
            apart = math.hypot(gb["cx"] - ga["cx"], gb["cy"] - ga["cy"])
            if apart < 1e-6 or abs(apart - ga["r"] - gb["r"]) > tolerance:
                continue
            share = ga["r"] / (ga["r"] + gb["r"])
            tx, ty = ga["cx"] + share * (gb["cx"] - ga["cx"]), ga["cy"] + share * (gb["cy"] - ga["cy"])
            for g in (ga, gb):
                _end_onto(g, tx, ty, reach)


def _end_onto(g: dict, x: float, y: float, reach: float) -> None:
    """The arc's end nearer (x, y) moved to the angle of (x, y) when it lies within `reach` px."""
    key = min(("start", "end"), key=lambda k: math.dist(arc_point(g, g[k]), (x, y)))
    if math.dist(arc_point(g, g[key]), (x, y)) <= reach:
        _move_end(g, key, x, y)


def _move_end(g: dict, key: str, x: float, y: float) -> bool:
    """The arc's `key` end ("start" or "end") turned to the angle of (x, y) (in place), unless the
    arc would keep less than SNAP_LEAST_SWEEP degrees or close; whether it moved."""
    shift = (math.degrees(math.atan2(y - g["cy"], x - g["cx"])) - g[key] + 180.0) % 360.0 - 180.0
    start, end = (g["start"] + shift, g["end"]) if key == "start" else (g["start"], g["end"] + shift)
    if not SNAP_LEAST_SWEEP <= end - start < 359.0:
        return False
    g.update(normalised_arc(g["cx"], g["cy"], g["r"], start, end))
    return True


def fillets_between(arcs: list[Primitive], lines: list[Primitive], ink: np.ndarray, tolerance: float,
                    reach: float, least_radius: float) -> list[Primitive]:
    """The `arcs` (too short to keep alone) that round a corner between two lines: a rounded
    corner whose chain a junction cut (a tick or a neighbour's stroke meeting a side there), so
    that the lines on either side lie in chains of their own and the cutter saw no fillet. Each
    end joins a line tangentially, as snap_tangents would snap it (within `tolerance` px of the
    tangent point, the line's end within `reach` px of it: walks overshoot into the corner), and
    the corner the two lines would make lies on paper (`ink`): a sharp corner's skeleton rounds
    it too, but its point is inked. Circles under `least_radius` px are left out (a letter's bowl
    on a line)."""
    grid = _grid_of(lines, reach)
    kept = []
    for a in arcs:
        g = a.geometry
        if g["r"] < least_radius:
            continue
        joins = []  # per end: the lines it joins
        for key in ("start", "end"):
            ex, ey = arc_point(g, g[key])
            feet = ((j, _tangent_foot(g, lines[j].geometry, ex, ey, tolerance, reach))
                    for j in grid.query(grown((ex, ey, ex, ey), reach)))
            joins.append({j for j, foot in feet if foot is not None and foot[0] <= tolerance})
        if any(_rounded(lines[i], lines[j], ink) for i in joins[0] for j in joins[1] if i != j):
            kept.append(a)
    return kept


def _rounded(a: Primitive, b: Primitive, ink: np.ndarray) -> bool:
    """Whether the corner lines `a` and `b` would make, extended, lies on paper."""
    g = a.geometry
    heading = np.array([g["x2"] - g["x1"], g["y2"] - g["y1"]])
    ux, uy = heading / max(float(np.hypot(*heading)), 1e-9)
    corner = intersections(g["x1"], g["y1"], ux, uy, b, math.inf)
    return bool(corner) and not bool(at_points(ink, np.array(corner))[0])


def _tangent_foot(arc_g: dict, line_g: dict, ex: float, ey: float, tolerance: float, reach: float):
    """(distance to the arc end, foot x, foot y, which line end) when the line is tangent to the
    arc's circle near the arc's end and one of its ends lies near the foot; else None."""
    x1, y1, x2, y2 = line_g["x1"], line_g["y1"], line_g["x2"], line_g["y2"]
    length = math.hypot(x2 - x1, y2 - y1)
    if length < 1:
        return None
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    t = (arc_g["cx"] - x1) * ux + (arc_g["cy"] - y1) * uy
    fx, fy = x1 + t * ux, y1 + t * uy
    if abs(math.hypot(fx - arc_g["cx"], fy - arc_g["cy"]) - arc_g["r"]) > tolerance:
        return None
    to_arc_end = math.hypot(fx - ex, fy - ey)
    which = 0 if abs(t) <= abs(t - length) else 1
    to_line_end = abs(t) if which == 0 else abs(t - length)
    if to_arc_end > reach or to_line_end > reach:
        return None
    return to_arc_end, fx, fy, which


def tangent_bridges(arcs: list[Primitive], lines: list[Primitive], ink: np.ndarray, tolerance: float,
                    reach: float, width: float) -> list[Primitive]:
    """The straight side of a stadium or a slot that two arcs took in: new lines (the arcs are
    left for snap_tangents to trim). On a rough scan, a short straight between two large arcs lies
    within the tolerance of each circle for its first √(r × pen) px, so both arc pieces grow into
    it from either end, meet in its middle, and no line is left. Both circles are known well
    though: the side is their common outer tangent, between its feet. It is taken when two arcs'
    ends lie within `reach` px of each other, each foot lies on its arc, the feet are at least a
    pen `width` apart, the ink runs all along between them, and no line in `lines` has both feet
    within `tolerance` px of it."""
    found: list[Primitive] = []
    for i, a in enumerate(arcs):
        ga = a.geometry
        for b in arcs[i + 1:]:
            gb = b.geometry
            if min(math.dist(arc_point(ga, ga[ka]), arc_point(gb, gb[kb]))
                   for ka in ("start", "end") for kb in ("start", "end")) > reach:
                continue
            for fa, fb in _outer_tangents(ga, gb):
                if math.dist(fa, fb) < width or not (_within(ga, np.array([fa]))[0] and _within(gb, np.array([fb]))[0]):
                    continue
                steps = np.linspace(0.0, 1.0, max(2, int(math.dist(fa, fb)) + 1))[:, None]
                if ink_run(ink, np.array(fa) + steps * (np.array(fb) - np.array(fa))) < len(steps):
                    continue
                side = line(fa[0], fa[1], fb[0], fb[1])
                if any(_near_segment(*fa, p.geometry, tolerance) and _near_segment(*fb, p.geometry, tolerance)
                       for p in lines + found):
                    continue
                found.append(side)
    return found


def _outer_tangents(ga: dict, gb: dict) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The feet (on a's circle, on b's) of the two lines touching both circles on one side."""
    dx, dy = gb["cx"] - ga["cx"], gb["cy"] - ga["cy"]
    apart = math.hypot(dx, dy)
    if apart <= abs(ga["r"] - gb["r"]) + 1e-6:
        return []
    ux, uy = dx / apart, dy / apart
    along = (ga["r"] - gb["r"]) / apart  # the normal's share along the centres' line
    across = math.sqrt(max(0.0, 1.0 - along * along))
    feet = []
    for sign in (1.0, -1.0):
        nx, ny = along * ux - sign * across * uy, along * uy + sign * across * ux
        feet.append(((ga["cx"] + ga["r"] * nx, ga["cy"] + ga["r"] * ny),
                     (gb["cx"] + gb["r"] * nx, gb["cy"] + gb["r"] * ny)))
    return feet


def _within(g: dict, points: np.ndarray) -> np.ndarray:
    """Whether each point's angle (N×2 → N) about the arc's centre lies inside the arc's sweep."""
    angles = np.degrees(np.arctan2(points[:, 1] - g["cy"], points[:, 0] - g["cx"]))
    return (angles - g["start"]) % 360.0 <= g["end"] - g["start"]


def drop_covered_arcs(arcs: list[Primitive], others: list[Primitive], reach: float) -> list[Primitive]:
    """The arcs not lying along the others all the way: an arc with COVERED of its points within
    `reach` px of another primitive (a flat arc fitted across a stadium's side and the ends of both
    its arcs, on a rough scan) draws nothing they do not draw already. Shorter arcs go first, each
    judged against what is left."""
    kept = list(arcs)
    for a in sorted(arcs, key=lambda p: length(p.type, p.geometry)):
        points = sample_array(a.type, a.geometry, 2.0)
        near = np.zeros(len(points), bool)
        for p in others + kept:
            if p is a:
                continue
            x0, y0, x1, y1 = p.bounds()
            inside = ((points[:, 0] >= x0 - reach) & (points[:, 0] <= x1 + reach) &
                      (points[:, 1] >= y0 - reach) & (points[:, 1] <= y1 + reach) & ~near)
            if inside.any():
                near[inside] = distance_to(p, points[inside]) <= reach
        if near.mean() >= COVERED:
            kept.remove(a)
    return kept


def distance_to(p: Primitive, points: np.ndarray) -> np.ndarray:
    """Each point's distance (N×2 → N) to the primitive: to its circle within an arc's sweep, to
    the nearer end outside it."""
    g = p.geometry
    if p.type == "line":
        return _segment_distances(g, points)
    radial = np.abs(np.hypot(points[:, 0] - g["cx"], points[:, 1] - g["cy"]) - g["r"])
    if p.type == "circle":
        return radial
    on = _within(g, points)
    ends = np.array([arc_point(g, g["start"]), arc_point(g, g["end"])])
    to_end = np.min(np.hypot(points[:, None, 0] - ends[None, :, 0], points[:, None, 1] - ends[None, :, 1]), axis=1)
    return np.where(on, radial, to_end)


def drop_covered_lines(lines: list[Primitive], tolerance: float) -> list[Primitive]:
    """Lines lying along a longer line (both ends within `tolerance` of it) are parts of it."""
    ordered = sorted(lines, key=lambda p: -_length(p.geometry))
    kept: list[Primitive] = []
    grid = Grid(cell=128.0)
    for p in ordered:
        g = p.geometry
        if any(_near_segment(g["x1"], g["y1"], kept[k].geometry, tolerance) and
               _near_segment(g["x2"], g["y2"], kept[k].geometry, tolerance)
               for k in grid.query(grown(p.bounds(), tolerance))):
            continue
        grid.add(len(kept), p.bounds())
        kept.append(p)
    return kept


def _length(g: dict) -> float:
    return math.hypot(g["x2"] - g["x1"], g["y2"] - g["y1"])


def _near_segment(x: float, y: float, g: dict, tolerance: float) -> bool:
    """_segment_distances for one point, on plain floats (called thousands of times a page)."""
    vx, vy = g["x2"] - g["x1"], g["y2"] - g["y1"]
    t = min(max(((x - g["x1"]) * vx + (y - g["y1"]) * vy) / max(vx * vx + vy * vy, 1e-12), 0.0), 1.0)
    return math.hypot(x - g["x1"] - t * vx, y - g["y1"] - t * vy) <= tolerance


def _segment_distances(g: dict, points: np.ndarray) -> np.ndarray:
    """Each point's distance (N×2 → N) to the line segment `g`."""
    a, b = np.array([g["x1"], g["y1"]]), np.array([g["x2"], g["y2"]])
    v = b - a
    t = np.clip(((points - a) @ v) / max(float(v @ v), 1e-12), 0.0, 1.0)
    return np.hypot(*(points - a - t[:, None] * v).T)


def settle_acute(lines: list[Primitive], round_things: list[Primitive], ink: np.ndarray, width: float) -> None:
    """Both ends of an acute corner moved onto its vertex (in place). Where two thick strokes meet
    at a narrow angle their ink is one for w / (2 sin(angle / 2)) px from the vertex, and the
    skeleton there runs along the bisector, not along either stroke: the lines fitted to what is
    left are turned a little, and where they cross (their ends after extend_lines) lies inside the
    V, short of the vertex, or past it. The ink's tip is sharp still: round caps end half a pen
    past the vertex along the bisector (`_apex`). Two line ends within ACUTE_NEAR pens of each
    other, their lines less than ACUTE degrees apart and each leaving the other's stroke
    (ACUTE_APART), are a corner; each end goes to the vertex when that lies within ACUTE_REACH
    pens of it, and no circle or arc in `round_things` passes within ACUTE_CLEAR pens of it (its
    stroke through the tip makes the ink run on past the vertex)."""
    grid = Grid(cell=64.0)
    for index, p in enumerate(lines):
        grid.add(index, p.bounds())
    near = ACUTE_NEAR * width
    settled: set[tuple[int, int]] = set()
    for i, a in enumerate(lines):
        for ea in (0, 1):
            if (i, ea) in settled:
                continue
            pa = end_point(a, ea)
            pairs = [(apart, j, eb)
                     for j in grid.query(grown((pa[0], pa[1], pa[0], pa[1]), near)) if j != i
                     for eb in (0, 1) for apart in (math.dist(pa, end_point(lines[j], eb)),) if apart <= near]
            if not pairs:
                continue
            _, j, eb = min(pairs)
            if (j, eb) in settled:
                continue
            b = lines[j]
            pb = end_point(b, eb)
            vertex = _apex(pa, end_point(a, 1 - ea), pb, end_point(b, 1 - eb), ink, width)
            if vertex is None or max(math.dist(vertex, pa), math.dist(vertex, pb)) > ACUTE_REACH * width:
                continue
            if any(distance_to(r, np.array([vertex]))[0] <= ACUTE_CLEAR * width for r in round_things):
                continue  # a circle's stroke at the tip: the ink past the vertex may be the circle's
            set_end_point(a, ea, vertex)
            set_end_point(b, eb, vertex)
            settled |= {(i, ea), (j, eb)}


def _apex(pa: tuple[float, float], fa: tuple[float, float], pb: tuple[float, float], fb: tuple[float, float],
          ink: np.ndarray, width: float) -> tuple[float, float] | None:
    """The vertex of an acute corner between line ends `pa` and `pb` (their far ends `fa`, `fb`):
    half a pen inside where the ink ends, walking out of the V along its bisector from between the
    ends. None when the lines are ACUTE degrees apart or more, when one lies within a pen of the
    other all along (ACUTE_APART), or when the ink does not end within reach."""
    ua = np.subtract(fa, pa) / max(math.dist(fa, pa), 1e-9)
    ub = np.subtract(fb, pb) / max(math.dist(fb, pb), 1e-9)
    if float(ua @ ub) < math.cos(math.radians(ACUTE)):
        return None
    if min(_off_line(fa, pb, ub), _off_line(fb, pa, ua)) < ACUTE_APART * width:
        return None
    out = -(ua + ub) / float(np.hypot(*(ua + ub)))
    start = (np.asarray(pa) + np.asarray(pb)) / 2
    steps = np.arange(1, int(ACUTE_REACH * width) + 2, dtype=np.float64)
    run = ink_run(ink, start + steps[:, None] * out)
    if run == 0 or run >= len(steps):
        return None
    vx, vy = start + (run + 0.5 - width / 2) * out
    return float(vx), float(vy)


def _near_end(p: Primitive, x: float, y: float, slack: float) -> bool:
    """Whether (x, y) lies within `slack` px of one of line `p`'s ends."""
    return min(math.hypot(x - ex, y - ey) for ex, ey in (end_point(p, 0), end_point(p, 1))) <= slack


def _off_line(point: tuple[float, float], origin: tuple[float, float], u: np.ndarray) -> float:
    """Distance from `point` to the line through `origin` along the unit vector `u`."""
    return abs(float(u[0] * (point[1] - origin[1]) - u[1] * (point[0] - origin[0])))


def end_point(p: Primitive, end: int) -> tuple[float, float]:
    """A line's end 0 (x1, y1) or 1 (x2, y2)."""
    g = p.geometry
    return (g["x1"], g["y1"]) if end == 0 else (g["x2"], g["y2"])


def set_end_point(p: Primitive, end: int, point: tuple[float, float]) -> None:
    g = p.geometry
    if end == 0:
        g["x1"], g["y1"] = point
    else:
        g["x2"], g["y2"] = point
