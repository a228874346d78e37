"""Primitives moved onto their strokes' middle, read across the ink.

A primitive is fitted to skeleton pieces, and a skeleton bends towards whatever joins its stroke
(a junction, a letter touching it, a scan's bleed): a line leans a degree or two, an arc's radius
comes out a fraction of a pixel off (more on a short arc). Across the stroke, the ink's run says
where its middle is to a fraction of a pixel once many are read. At every STEP px along the
primitive, the run of ink through it is read across (along its normal, STEP_ACROSS px steps, a pen
either side); a run wider than RUN pens crosses something else (a junction, a filled shape) and
is not read, nor one that does not end within a pen on both sides. The primitive is fitted to the
runs' middles again, and moved there unless it would move more than MOVE pens (the runs read are
not its stroke's) or fewer than LEAST runs were read. Where along it a line or an arc ends (its
ends' walks, ends.py) is kept. The same middles tell where a line's stroke steps sideways by less
than a pen (an outline's jog): there it is two lines (split_at_jogs).
"""
from __future__ import annotations

import math

import numpy as np

from .fitting import fit_circle
from .primitives import Primitive, arc_point, line
from .spatial import on_mask

STEP, STEP_ACROSS = 2.0, 0.5  # px between the runs read, and across each
ENDS = 0.1  # share of a line or an arc left unread at each end: other strokes meet there
RUN = 1.5  # pens: a wider run crosses something else
OFF = 1.0  # px: a line's middles further off the first fit are dropped before the second
LEAST, MOVE = 5, 1.0  # runs read at least; pens moved at most
TURN = 30.0  # degrees an arc's sweep may change when refitted (more: its ends seen round the other way)
JOG = 2.0  # px: a line's stroke stepping sideways by this much at least is two lines (split_at_jogs)
JOG_PENS = 3.0  # … each side of the step at least this many pens long
JOG_SPREAD, JOG_SHARE = 0.6, 0.9  # px: … this share of each side's middles within this of its line


def centre_line(p: Primitive, ink: np.ndarray, width: float) -> None:
    """Line `p` moved across onto its stroke's middle (in place); its ends move along its normal."""
    g = p.geometry
    ax, ay, bx, by = g["x1"], g["y1"], g["x2"], g["y2"]
    length = math.hypot(bx - ax, by - ay)
    if length < 1:
        return
    ux, uy = (bx - ax) / length, (by - ay) / length
    along = np.arange(ENDS * length, (1 - ENDS) * length, STEP)
    points = np.column_stack([ax + along * ux, ay + along * uy])
    read, middle = run_middles(ink, points, np.broadcast_to((-uy, ux), points.shape), width)
    t, middle = along[read], middle[read]
    if len(t) < LEAST:
        return
    slope, offset = _straight(t, middle)
    close = np.abs(middle - (offset + slope * t)) <= OFF
    if not close.all():
        if close.sum() < LEAST:
            return
        slope, offset = _straight(t[close], middle[close])
    at_a, at_b = float(offset), float(offset + slope * length)
    if max(abs(at_a), abs(at_b)) > MOVE * width:
        return
    g["x1"], g["y1"] = ax - at_a * uy, ay + at_a * ux
    g["x2"], g["y2"] = bx - at_b * uy, by + at_b * ux


def centre_round(p: Primitive, ink: np.ndarray, width: float) -> None:
    """Circle or arc `p` refitted to its stroke's middle (in place), read along its radii; an arc's
    ends move onto the new circle along the rays from its centre."""
    g = p.geometry
    whole = p.type == "circle"
    cx, cy, r = g["cx"], g["cy"], g["r"]
    start, end = (0.0, 360.0) if whole else (g["start"], g["end"])
    sweep = end - start
    count = int(math.radians(sweep) * r / STEP)
    if count < LEAST:
        return
    if whole:
        angles = np.radians(np.linspace(start, end, count, endpoint=False))
    else:
        angles = np.radians(np.linspace(start + ENDS * sweep, end - ENDS * sweep, count))
    outward = np.column_stack([np.cos(angles), np.sin(angles)])
    read, middle = run_middles(ink, (cx, cy) + r * outward, outward, width)
    if read.sum() < LEAST:
        return
    fit = fit_circle((cx, cy) + (r + middle[read])[:, None] * outward[read])
    if fit is None or max(math.hypot(fit.cx - cx, fit.cy - cy), abs(fit.r - r)) > MOVE * width:
        return
    if whole:
        g.update(cx=fit.cx, cy=fit.cy, r=fit.r)
        return
    (ax, ay), (bx, by) = arc_point(g, start), arc_point(g, end)  # the ends, on the arc as it was
    new_start = math.degrees(math.atan2(ay - fit.cy, ax - fit.cx)) % 360.0
    new_end = math.degrees(math.atan2(by - fit.cy, bx - fit.cx))
    new_sweep = (new_end - new_start) % 360.0 or 360.0
    if abs(new_sweep - sweep) > TURN:
        return
    g.update(cx=fit.cx, cy=fit.cy, r=fit.r, start=new_start, end=new_start + new_sweep)


def split_at_jogs(lines: list[Primitive], ink: np.ndarray, width: float) -> list[Primitive]:
    """`lines`, each cut in two where its stroke steps sideways: a footprint's outline jogs by a
    few pixels, less than the pen, so the two strokes are one ink and were fitted as one line
    leaning across both. Read across the stroke every STEP px (run_middles), the middles of such a
    line lie on two parallel lines JOG px apart or more, each JOG_PENS pens long at least and
    JOG_SHARE of its middles within JOG_SPREAD px of it (a common slope, an offset and a step fitted
    by least squares where the middles step; the step fitting best is taken); each piece is moved
    onto its own, and they end where the step is. A line whose middles lie on one line that
    closely is not looked at further."""
    out = []
    for p in lines:
        pieces = _jogged(p, ink, width) if p.type == "line" else None
        out += pieces or [p]
    return out


def _jogged(p: Primitive, ink: np.ndarray, width: float) -> list[Primitive] | None:
    g = p.geometry
    ax, ay, bx, by = g["x1"], g["y1"], g["x2"], g["y2"]
    length, least = math.hypot(bx - ax, by - ay), JOG_PENS * width
    if length < 2 * least:
        return None
    ux, uy = (bx - ax) / length, (by - ay) / length
    along = np.arange(width / 2, length - width / 2, STEP)
    points = np.column_stack([ax + along * ux, ay + along * uy])
    read, middle = run_middles(ink, points, np.broadcast_to((-uy, ux), points.shape), width)
    t, m = along[read], middle[read]
    if len(t) < 2 * LEAST:
        return None
    slope, offset = _straight(t, m)
    if _close(m - offset - slope * t) >= JOG_SHARE:
        return None
    # where the middles step: the means of the few reads either side differ by half a jog
    side = LEAST
    before = np.convolve(m, np.ones(side) / side, "valid")  # before[k]: mean of m[k:k + side]
    steps = [i for i in range(side, len(t) - side + 1)
             if abs(before[i] - before[i - side]) >= JOG / 2 and t[i - 1] - t[0] >= least and t[-1] - t[i] >= least]
    best = None
    fit = np.column_stack([t, np.ones_like(t), np.zeros_like(t)])  # a common slope, an offset, the step
    for i in steps:
        fit[:, 2] = np.arange(len(t)) >= i
        coef = np.linalg.lstsq(fit, m, rcond=None)[0]
        residuals = m - fit @ coef
        squares = float(residuals @ residuals)
        if abs(coef[2]) >= JOG and _close(residuals) >= JOG_SHARE and (best is None or squares < best[0]):
            best = (squares, (t[i - 1] + t[i]) / 2, coef)
    if best is None:
        return None
    _, cut, (slope, offset, step) = best

    def at(s: float, stepped: bool) -> tuple[float, float]:  # the point s along, moved onto its piece
        across = slope * s + offset + (step if stepped else 0.0)
        return ax + s * ux - across * uy, ay + s * uy + across * ux

    return [line(*at(0.0, False), *at(cut, False)), line(*at(cut, True), *at(length, True))]


def _close(residuals: np.ndarray) -> float:
    """The share of a fit's residuals within JOG_SPREAD px."""
    return float(np.count_nonzero(np.abs(residuals) <= JOG_SPREAD)) / len(residuals)


def run_middles(ink: np.ndarray, points: np.ndarray, normals: np.ndarray,
                width: float) -> tuple[np.ndarray, np.ndarray]:
    """Across the ink at each of `points` (N×2) along its unit normal: whether the run through it
    was read (on ink, paper within a pen on both sides, no wider than RUN pens), and the offset of
    the run's middle along the normal (px)."""
    half = int(math.ceil(width / STEP_ACROSS))
    across = np.arange(-half, half + 1) * STEP_ACROSS
    xs = points[:, :1] + across[None, :] * normals[:, :1]
    ys = points[:, 1:] + across[None, :] * normals[:, 1:]
    on = on_mask(ink, xs, ys)
    back, ahead = on[:, half::-1], on[:, half:]
    read = on[:, half] & ~back.all(axis=1) & ~ahead.all(axis=1)
    to_back, to_ahead = np.argmin(back, axis=1), np.argmin(ahead, axis=1)  # steps to the first paper
    read &= (to_back + to_ahead - 1) * STEP_ACROSS <= RUN * width
    return read, (to_ahead - to_back) * STEP_ACROSS / 2


def _straight(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and offset of y's least-squares line over x (np.polyfit's, without its overhead)."""
    mx, my = float(x.mean()), float(y.mean())
    dx = x - mx
    slope = float(dx @ (y - my)) / max(float(dx @ dx), 1e-12)
    return slope, my - slope * mx
