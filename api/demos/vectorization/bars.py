"""Short straight strokes the skeleton route misses: bars in the ink left once the primitives are drawn.

A line only a few pen widths long is mostly end caps and junction: its skeleton is a stub that the
junction trimming eats, or a knot bent towards the strokes it touches, so no line piece comes out
of it (pins on a symbol's body, arrowheads' wings, ticks). The automatic shortest line cannot
simply go down: letters are full of short skeleton stubs too. Here the ink is looked at instead:
everything found already is drawn over it a little wider than the pen, and what is left over comes
apart into components; one that is a filled thin rectangle, as wide as the pen and a few pens
long, is a bar, and becomes a line along the rectangle's long axis. Letters left over are rarely
both pen-thin and rectangle-filled (their strokes bend and join), and text standing alone is not
in the mask looked at (binarize drops it as clutter). Its ends are then settled like any line's
(ends.extend_lines): the part drawn over, where it meets what was found, is walked back.
The dashes of a dashed line are also bars standing alone, set aside as clutter with the text: in
the clutter, bars in a row along one axis are dashes (`dashes`). Short lines the skeleton does give
are kept when they stand side by side like a comb's teeth (`ticks`: a connector's pins), and so
are the components set aside as clutter that stand so (`teeth`: pins drawn apart from the body).
A short stroke bent at a right angle (a Zener diode's hooked bar ends) is left over as an L of
ink, no rectangle: opened along each axis it comes apart into its two bars (`_hooks`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .primitives import Primitive, line, sample_array
from .spatial import components, group_sizes

COVER_PENS = 1.2  # found primitives are drawn this many pen widths wide over the ink before looking
LEAST_PENS = 1.6  # a bar at least this many pen widths long (what is left over, and the line at the end)
MOST_PENS = 12.0  # longer leftovers are not short strokes: a long line the skeleton missed is something else
THIN = 0.35  # a bar's width is the pen's within this share (± one px)
DASH_RUN = 3  # dashes come in rows of at least this many
DASH_GAP = 3.0  # … each no further from the next, centre to centre, than this many dash lengths
TICK_PITCH = 3.0  # ticks side by side: each no further from the next, middle to middle, than this many lengths
TICK_SLIP = 0.25  # … nor shifted along their direction by more than this share of a length (+ 2 px)
TOOTH_PENS = 5.0  # a tooth set aside as clutter is at least this many pen widths long (teeth)
FILLED = 0.65  # share of its rectangle a bar's pixels fill (a bent stroke or a letter's joint fills less)
HOOK_SHARE = 0.85  # a hook's two bars explain this share of its pixels at least (_hooks)


def short_bars(found: list[Primitive], ink: np.ndarray, width: float) -> list[Primitive]:
    """Lines along the bars in `ink` (bool H×W) that no primitive in `found` explains (see the
    module's doc); their ends are where the leftover ink ends, less half a pen (not extended yet)."""
    h, w = ink.shape
    drawn = np.zeros((h, w), np.uint8)
    pen = max(1, int(round(COVER_PENS * width)))
    for p in found:
        points = np.round(sample_array(p.type, p.geometry, 1.0) * 16).astype(np.int32)
        cv2.polylines(drawn, [points], p.type == "circle", 255, pen, cv2.LINE_8, 4)
    left = ink & (drawn == 0)
    bars = _bars_in(left, width)
    return bars + _hooks(left, bars, width)


def dashes(clutter: np.ndarray, width: float) -> list[Primitive]:
    """The dashes of dashed lines among the small components binarize set aside as clutter (text):
    bars, each in a row of at least DASH_RUN bars of one direction along one axis, no further apart
    than DASH_GAP times their length. Letters are bars too, but not in such rows."""
    def along(a: tuple, b: tuple) -> bool:  # b lies on a's axis, within DASH_GAP lengths
        dx, dy = b[0] - a[0], b[1] - a[1]
        return abs(dx * a[3] - dy * a[2]) <= max(2.0, width / 2) and math.hypot(dx, dy) <= DASH_GAP * max(a[4], b[4])

    return _in_runs(_bars_in(clutter, width), along, 0.5)


def ticks(lines: list[Primitive], width: float) -> list[Primitive]:
    """Short lines side by side: each in a run of at least DASH_RUN parallel lines of about one
    length, shifted across their direction by at most TICK_PITCH lengths and hardly along it (a
    connector's pins, a scale's ticks, hatching). A short skeleton stub alone may be a letter's
    stroke; letters do not stand in such combs."""
    def beside(a: tuple, b: tuple) -> bool:
        dx, dy = b[0] - a[0], b[1] - a[1]
        return abs(dx * a[2] + dy * a[3]) <= TICK_SLIP * a[4] + 2 and math.hypot(dx, dy) <= TICK_PITCH * a[4]

    return _in_runs(lines, beside, 0.75)


def teeth(clutter: np.ndarray, width: float) -> np.ndarray:
    """The small components binarize set aside as clutter that stand side by side in a comb
    (`ticks`): a connector's pins drawn apart from its body, each a stroke as short as a word and
    often ending in a socket's cup, so neither a bar nor a component big enough to be kept. Each
    is taken for the line along its bounding box's long side when that side is at least
    TOOTH_PENS pen widths and three times the short one; letters that long stand in words, not in
    combs. Returns the mask of those components, to be vectorized like any stroke."""
    count, labels, stats = components(clutter)
    indices, axes = [], []
    for k in range(1, count):
        x, y, bw, bh = (float(v) for v in stats[k, :4])
        long, short = max(bw, bh), min(bw, bh)
        if long < TOOTH_PENS * width or long < 3 * short:
            continue
        indices.append(k)
        middle = y + bh / 2 if bw >= bh else x + bw / 2
        axes.append(line(x, middle, x + bw, middle) if bw >= bh else line(middle, y, middle, y + bh))
    keep = np.zeros(count, bool)
    found = {id(p) for p in ticks(axes, width)}
    keep[[k for k, p in zip(indices, axes, strict=True) if id(p) in found]] = True
    return np.take(keep, labels)


def _hooks(left: np.ndarray, bars: list[Primitive], width: float) -> list[Primitive]:
    """Lines along the hooks among the components of `left` that are no bar: two bars at a right
    angle, end to end (a Zener diode's bent ends, a bracket's), drawn along the page's axes. The
    bars of a component are the bars of its ink opened with a horizontal and a vertical stroke
    LEAST_PENS long (a stroke across the opening's direction vanishes in it); a component two such
    bars explain (HOOK_SHARE of its pixels under them drawn a pen and two pixels wide), meeting
    within 1.5 pens, is a hook.
    A letter left over (one touching a stroke) opens into more bars, or bars that leave its curves
    unexplained; so does a ring's piece, which straightens only where it runs along an axis."""
    count, labels, stats = components(left)
    a_bar = np.zeros(count, bool)
    a_bar[[_label_at(labels, b) for b in bars]] = True
    least, n = LEAST_PENS * width, max(3, int(round(LEAST_PENS * width)))
    kernels = (np.ones((1, n), np.uint8), np.ones((n, 1), np.uint8))
    hooks = []
    for k in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[k])
        if a_bar[k] or not least <= max(bw, bh) <= MOST_PENS * width + 10 or area < 2 * 0.6 * least * width:
            continue  # (as long as a bar at most, as much ink as two of the shortest at least: _bars_in)
        ink = np.pad(labels[y:y + bh, x:x + bw] == k, n).astype(np.uint8)  # (the border is paper)
        x, y = x - n, y - n
        legs = [b for kernel in kernels for b in _bars_in(cv2.morphologyEx(ink, cv2.MORPH_OPEN, kernel) > 0, width)]
        if len(legs) != 2 or not _end_to_end(*legs, 1.5 * width):
            continue
        explained = np.zeros_like(ink)
        for b in legs:
            points = np.round(sample_array(b.type, b.geometry, 1.0) * 16).astype(np.int32)
            cv2.polylines(explained, [points], False, 1, max(1, int(round(width))) + 2, cv2.LINE_8, 4)
        if np.count_nonzero(explained & ink) >= HOOK_SHARE * area:
            hooks += [line(g["x1"] + x, g["y1"] + y, g["x2"] + x, g["y2"] + y) for g in (b.geometry for b in legs)]
    return hooks


def _label_at(labels: np.ndarray, bar: Primitive) -> int:
    """The component a bar lies on: the label under its middle (a filled rectangle's middle is ink)."""
    g = bar.geometry
    return int(labels[int(round((g["y1"] + g["y2"]) / 2)), int(round((g["x1"] + g["x2"]) / 2))])


def _end_to_end(a: Primitive, b: Primitive, reach: float) -> bool:
    ga, gb = a.geometry, b.geometry
    ends_a, ends_b = ((ga["x1"], ga["y1"]), (ga["x2"], ga["y2"])), ((gb["x1"], gb["y1"]), (gb["x2"], gb["y2"]))
    return min(math.dist(p, q) for p in ends_a for q in ends_b) <= reach


def _in_runs(lines: list[Primitive], linked, ratio: float) -> list[Primitive]:
    """The lines in a run of at least DASH_RUN: parallel within 8°, lengths within `ratio` of each
    other, joined pairwise by `linked(frame_a, frame_b)` (frame: mid x, mid y, ux, uy, length)."""
    n = len(lines)
    if n < DASH_RUN:
        return []
    frames = []
    for p in lines:
        g = p.geometry
        length = math.hypot(g["x2"] - g["x1"], g["y2"] - g["y1"]) or 1.0
        frames.append(((g["x1"] + g["x2"]) / 2, (g["y1"] + g["y2"]) / 2,
                       (g["x2"] - g["x1"]) / length, (g["y2"] - g["y1"]) / length, length))
    links: list[tuple[int, int]] = []
    for i, a in enumerate(frames):
        for j in range(i + 1, n):
            b = frames[j]
            if abs(a[2] * b[3] - a[3] * b[2]) > math.sin(math.radians(8)) or not ratio <= a[4] / b[4] <= 1 / ratio:
                continue
            if linked(a, b):
                links.append((i, j))
    size = group_sizes(n, links)  # lines in each one's run
    return [p for i, p in enumerate(lines) if size[i] >= DASH_RUN]


def _bars_in(left: np.ndarray, width: float) -> list[Primitive]:
    """Lines along the components of `left` that are filled thin rectangles (see the module's doc)."""
    count, labels, stats = components(left)
    least = LEAST_PENS * width
    bars = []
    for k in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[k])
        if not least <= max(bw, bh) <= MOST_PENS * width + 10 or area < 0.6 * least * width:
            continue
        ys, xs = np.nonzero(labels[y:y + bh, x:x + bw] == k)
        (cx, cy), (a, b), angle = cv2.minAreaRect(np.column_stack([xs + x, ys + y]).astype(np.float32))
        a, b = a + 1, b + 1  # pixel centres → pixel extents
        long, short = max(a, b), min(a, b)
        if not (1 - THIN) * width <= short <= (1 + THIN) * width + 1:
            continue
        if long < least or area < FILLED * a * b:
            continue
        t = math.radians(angle if a >= b else angle + 90)
        ux, uy = math.cos(t), math.sin(t)
        half = long / 2 - width / 2
        bars.append(line(cx - half * ux, cy - half * uy, cx + half * ux, cy + half * uy))
    return bars
