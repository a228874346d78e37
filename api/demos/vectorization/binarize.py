"""Ink versus paper: a binary mask of the strokes, robust to scanned paper.

Scans have uneven lighting, tinted and textured paper, faded ink and specks. We divide the grey
image by an estimate of the paper alone (a large morphological closing, computed small and scaled
back), so the background is flat at 1.0 whatever its colour; then the threshold sits between the
paper level and the ink level, but never inside the paper's own noise. Small specks and holes are
removed (not a small round hole: a pad's drill hole), and connected components too small to hold
a primitive (letters, numbers, dirt) are dropped: they are the text-like clutter a diagram's
labels make.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .spatial import close, components, groups

WORD_LEVEL, WORD_GAP = 0.5, 0.5  # letters beside a small ring, as in a word (binarize._in_a_word)
# a word's letters: level, each no further from the next than this share of the taller's height
# (binarize.word_bands); the word's band reaches WORD_REACH letter widths beyond its ends and
# WORD_MARGIN of its height above and below, where its letters may touch a stroke and be kept
WORD_SPACING, WORD_REACH, WORD_MARGIN = 0.6, 2.0, 0.3
WORD_DOTS = 3  # solid discs in a row alone that may be a word ("**", "..."); more are dots or pads
# letters written on a stroke: what is left of the large components' ink once runs TOUCH_RUN of
# min_size long are taken away, under TOUCH_TALL of min_size both ways, TOUCH_AREA px or more
# (_touching_letters)
TOUCH_RUN, TOUCH_TALL, TOUCH_AREA = 0.6, 0.5, 12
# a page whose darkest 0.3% is paper may still hold a drawing: its ink level is then read from
# this many darkest pixels (a blank page's noise does not stand out of the paper even so)
SPARSE_INK = 50
# the paper's noise is taken as at least a grey level in 255 of the flattened page: on a render
# with no noise at all, a smooth shade the flattening leaves a fraction of a percent off (at the
# page's border) would otherwise stand out of the paper as ink
NOISE_FLOOR = 1 / 255
SECTORS = 3  # a small component holed this many times (a circle and its centre mark) is no letter
# a pixel that, before the blur, lies between strokes and within this share of the way from paper to
# ink is paper, when such pixels run GAP_RUN or more (thin_gaps): a quarter, so that faded ink on a
# noisy page, paler than the threshold but far from the paper, still joins its stroke
GAP_LIGHT, GAP_RUN = 0.25, 20
# holes smaller than PINHOLE px in the ink are filled (a thick stroke's specks of paper), but
# not those DRILL_ACROSS px wide and tall that fill DRILL_ROUND of their box: a disc (π/4), a drill hole
PINHOLE, DRILL_ACROSS, DRILL_ROUND = 24, (4, 6), 0.7
# a drill hole the blur closed (_blurred_drills): a spot paler than the threshold, DRILL_SPOT px
# across, its palest pixel within DRILL_LIGHT of the way from the paper to the ink, DRILL_DEPTH px
# deep in ink all round (a pad 22 px across or more)
DRILL_SPOT, DRILL_LIGHT, DRILL_DEPTH = (2, 7), 0.4, 11.0
CLUTTER_PENS = 10  # automatic min_size: components smaller than this many pen widths both ways are clutter
# a word whose letters the blur fused is one component longer than min_size: TEXT_TALL pens tall,
# TEXT_WIDE times as wide at least, inking TEXT_FILL of its box, no hole TEXT_HOLE of its height long,
# no edge straight for TOUCH_RUN of min_size
TEXT_TALL, TEXT_WIDE, TEXT_FILL, TEXT_HOLE = (2.5, 7.5), 1.3, (0.45, 0.85), 0.8


Band = tuple[float, float, float, float, float]  # xmin, ymin, xmax, ymax, the letters' height


@dataclass
class InkMask:
    mask: np.ndarray  # bool H×W, True where there is ink kept for vectorization
    raw: np.ndarray  # bool H×W, all ink, clutter included (to measure a primitive's support)
    distance: np.ndarray  # float32 H×W, raw's distance transform (the depth of the ink)
    stroke_width: float  # median stroke width in px
    threshold: float  # on the flattened image, paper = 1.0
    min_size: int  # the clutter size used
    words: list[Band] = field(default_factory=list)  # where the clutter's words lie (word_bands)


def grey_of(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)


def flatten_background(grey: np.ndarray, stroke_hint: int = 12) -> np.ndarray:
    """grey / paper, where paper is estimated by closing away everything thinner than the kernel."""
    h, w = grey.shape
    factor = max(1, int(max(h, w) // 800))
    small = cv2.resize(grey, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    k = max(5, (stroke_hint * 3) // factor) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    whole = small.astype(np.uint8)
    if np.array_equal(whole, small):  # grey levels of an 8-bit image: closing bytes is the same, and faster
        paper = close(whole, kernel).astype(np.float32)
    else:
        paper = close(small, kernel)
    # the paper varies over tens of pixels: blurred at half size, as wide a blur costs a tenth
    # (it differs by a hundredth of a grey level away from the border)
    ph, pw = paper.shape
    half = cv2.resize(paper, (max(1, pw // 2), max(1, ph // 2)), interpolation=cv2.INTER_AREA)
    paper = cv2.resize(cv2.GaussianBlur(half, (0, 0), k / 4), (w, h), interpolation=cv2.INTER_LINEAR)
    return grey / np.maximum(paper, 1.0)


def ink_mask(rgb: np.ndarray, min_size: int = 0, sensitivity: float = 0.5) -> InkMask:
    """The strokes of a drawing. `min_size`: components whose bounding box is smaller than this in
    both directions are clutter (text, specks), unless they are a round ring (a small circle) not
    standing in a word; 0 picks max(24, CLUTTER_PENS × the pen width). `sensitivity` in (0, 1):
    where between paper and ink the threshold sits (higher keeps fainter ink)."""
    grey = grey_of(rgb)
    flat = flatten_background(grey)
    smooth = cv2.GaussianBlur(flat, (0, 0), 1.0)
    darkest, middle = np.percentile(smooth, (0.3, 50))  # one partition of the page for both
    paper_pixels = smooth[smooth >= middle]
    paper = float(np.median(paper_pixels))
    noise = max(float(1.4826 * np.median(np.abs(paper_pixels - paper))), NOISE_FLOOR)
    ink_level = float(darkest)
    if paper - ink_level < 8 * noise:  # little ink (a small drawing on a large page): its darkest pixels
        ink_level = float(np.partition(smooth, SPARSE_INK, axis=None)[SPARSE_INK])
    threshold = paper - sensitivity * (paper - ink_level)
    threshold = min(threshold, paper - 5 * noise)
    # hysteresis: fainter pixels count when they touch surely-ink ones (faded stretches of a stroke)
    weak = smooth < max(threshold, paper - max(0.5 * sensitivity * (paper - ink_level), 4 * noise))
    raw = _touching(weak, smooth < threshold)
    if paper - ink_level < 8 * noise:  # nothing stands out from the paper: a blank page
        raw[:] = False
    raw = _remove_small(raw, area=6)
    drills = _blurred_drills(smooth, raw, threshold, paper - DRILL_LIGHT * (paper - ink_level))
    raw = (raw | _pinholes(~raw)) & ~drills  # specks inside thick strokes filled, drill holes open
    labelled = components(raw)[1:3]
    distance = cv2.distanceTransform(raw.astype(np.uint8), cv2.DIST_L2, 5)
    ridge = ridge_of(distance)
    if min_size <= 0:  # automatic: letters are five to ten pen widths tall
        pen = stroke_width(np.take(_kept(labelled, 24), labelled[0]), distance, ridge)
        min_size = max(24, int(CLUTTER_PENS * pen))
    else:  # a min_size given: the pen it stands for
        pen = min_size / CLUTTER_PENS
    kept = _kept(labelled, min_size, keep_rings=True) & ~_fused_words(labelled, min_size, pen)
    mask = np.take(kept, labelled[0])
    # the gaps are opened once text and clutter are told apart: letters that touch with a gap
    # between them stay one piece of clutter, as the blur left them
    gaps = thin_gaps(flat < threshold, flat >= paper - GAP_LIGHT * (paper - ink_level))
    if gaps.any():
        raw &= ~gaps
        mask &= ~gaps
        distance = cv2.distanceTransform(raw.astype(np.uint8), cv2.DIST_L2, 5)
        ridge = ridge_of(distance)
    return InkMask(mask=mask, raw=raw, distance=distance, stroke_width=stroke_width(mask, distance, ridge),
                   threshold=threshold, min_size=min_size, words=_words(labelled, min_size, kept))


def _words(labelled: tuple[np.ndarray, np.ndarray], min_size: int, kept: np.ndarray) -> list[Band]:
    """The bands of the clutter's words (word_bands) and of the words written on a stroke
    (_touching_letters), the two rows of letters read apart: a pad's rest cut off a line beside a
    drill dot that is clutter would be a word of two (a column of solid pads along a line)."""
    strokes = _kept(labelled, min_size)  # rings kept though small are no stroke a letter stands on
    written = _touching_letters(labelled[0], strokes, min_size)
    return word_bands(labelled[1], min_size, kept) + word_bands(written, min_size)


def _touching_letters(labels: np.ndarray, strokes: np.ndarray, min_size: int) -> np.ndarray:
    """The stats (row 0 the background's, as for components) of the pieces of the `strokes`'
    ink (by label) that are left once their long straight runs are taken away: a footprint's
    "REF**" written on its body's outline is one ink with it, no letter left as clutter to mark
    the word, and its stems and arms were found as lines. Runs TOUCH_RUN of min_size long or more,
    across or down, and a pixel round them (the letters' feet) are strokes; pieces left under
    TOUCH_TALL of min_size both ways and of TOUCH_AREA px or more may be letters."""
    ink = np.take(strokes, labels).astype(np.uint8)
    run = max(3, int(TOUCH_RUN * min_size))
    runs = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, run), np.uint8)) | \
        cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((run, 1), np.uint8))
    rest = ink & (1 - cv2.dilate(runs, np.ones((3, 3), np.uint8)))
    stats = components(rest)[2]
    letter = (_sizes(stats) < TOUCH_TALL * min_size) & (stats[:, cv2.CC_STAT_AREA] >= TOUCH_AREA)
    letter[0] = True
    return stats[letter]


def thin_gaps(ink: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Paper one pixel wide between two strokes: `light` pixels (near the paper's level before the
    blur) lying between `ink` on either side, in runs of GAP_RUN pixels or more. The blur that
    steadies the threshold on a scan's noise darkens such a gap past it, and two concentric circles
    a pixel apart (a pad round its hole) became one thick ring. Where two strokes' ends merely touch
    (a comb's socket cups, a corner) the gap is a few pixels, and the strokes were drawn to meet."""
    closed = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
    return _remove_small(closed & light, area=GAP_RUN)


def _touching(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """The components of `weak` that hold at least one `strong` pixel."""
    count, labels, _ = components(weak)
    keep = np.zeros(count, bool)
    keep[labels[strong & weak]] = True
    keep[0] = False
    return np.take(keep, labels)  # keep[labels] (as here and below), in half the time


def _blurred_drills(smooth: np.ndarray, raw: np.ndarray, threshold: float, light: float) -> np.ndarray:
    """The drill holes the blur closed: on scan-like paper a pad's 3 px hole is paler than the
    threshold but darker than the hysteresis' faint-ink level, so it became ink and the pad a
    solid disc (clutter, or one blob with the outline), its two circles lost. A spot paler than
    the threshold, DRILL_SPOT px across, wholly inside the ink, its palest pixel `light` or paler
    and at the bottom of ink DRILL_DEPTH px deep all round (a pad's disc, where a letter's counter
    or the notch between two strokes lies in ink a stroke deep) is opened: its pixels paler than
    half-way from the threshold to that palest one."""
    count, labels, stats = components(smooth >= threshold)
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    sized = (np.minimum(w, h) >= DRILL_SPOT[0]) & (np.maximum(w, h) <= DRILL_SPOT[1])
    sized[0] = False
    opened = np.zeros_like(raw)
    reach = int(math.ceil(DRILL_DEPTH)) + 1
    for index in np.nonzero(sized)[0]:
        x, y, bw, bh = (int(v) for v in stats[index, :4])
        window = slice(max(0, y - reach), y + bh + reach), slice(max(0, x - reach), x + bw + reach)
        spot = labels[window] == index
        ink = raw[window] | spot
        peak = float(smooth[window][spot].max())
        top, left = y - window[0].start, x - window[1].start  # the spot's box in the window
        if peak < light or not ink[max(0, top - 1):top + bh + 1, max(0, left - 1):left + bw + 1].all():
            continue  # not pale enough, or paper beside it
        # paper beyond the page's edge: the window framed by a pixel of paper
        depth = cv2.distanceTransform(np.pad(ink, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
        if depth[spot].max() >= DRILL_DEPTH:
            opened[window] |= spot & (smooth[window] >= (threshold + peak) / 2)
    return opened


def _pinholes(paper: np.ndarray) -> np.ndarray:
    """The specks of `paper` inside the ink to fill: smaller than PINHOLE px, unless round (a pad's
    drill hole: as wide as tall, DRILL_ACROSS px, filling a disc's share of their box, DRILL_ROUND).
    A pad drilled 5 px wide was a solid dot: its outline found, its hole's circle not."""
    count, labels, stats = components(paper)
    w, h, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    drilled = (w >= DRILL_ACROSS[0]) & (w <= DRILL_ACROSS[1]) & (w == h) & (area >= DRILL_ROUND * w * h)
    fill = (area < PINHOLE) & ~drilled
    fill[0] = False
    return np.take(fill, labels)


def _remove_small(mask: np.ndarray, area: int) -> np.ndarray:
    count, labels, stats = components(mask)
    keep = stats[:, cv2.CC_STAT_AREA] >= area
    keep[0] = False
    return np.take(keep, labels)


def _kept(labelled: tuple[np.ndarray, np.ndarray], min_size: int, keep_rings: bool = False) -> np.ndarray:
    """Which components of `labelled` (their labels and stats) are kept, by label: not those smaller
    than `min_size` both ways; with `keep_rings`, a small component that is a round ring (a hole, a
    terminal, a small circle) is kept all the same unless it stands in a word, and so is a holed
    one round such a ring (a square pad round its hole)."""
    labels, stats = labelled
    big = _sizes(stats) >= min_size
    big[0] = False
    if keep_rings:
        small = np.nonzero(~big)[0]
        small = small[small > 0]
        shapes = {index: _holed_shape(labels, stats[index], index) if stats[index, cv2.CC_STAT_AREA] >= 12 else None
                  for index in small}
        rings = np.array([index for index in small if shapes[index] == "ring"], int)
        letters = np.array([index for index in small if shapes[index] is None], int)
        worded = _worded_rings(stats, rings, letters)
        kept = [index for index in rings if index not in worded]
        big[kept] = True
        big[[index for index in small if shapes[index] == "holed" and _round_one_of(stats, index, kept)]] = True
    return big


def _fused_words(labelled: tuple[np.ndarray, np.ndarray], min_size: int, pen: float) -> np.ndarray:
    """Which components of `labelled` are a word whose letters the blur fused (scan-like pages;
    a bold label on a clean one), by label: longer than `min_size` across but less tall, a few
    pens tall (TEXT_TALL), wider than tall (TEXT_WIDE), inking a letter's share of their box
    (TEXT_FILL: a stroke's box is mostly paper, a bar's all ink), and no hole in them as long as
    they are tall (TEXT_HOLE: a letter's counter is smaller; a box round a word, a fuse's slits
    are not), nor an edge as straight as a stroke's (TOUCH_RUN: a row of pads on a line is)."""
    labels, stats = labelled
    w, h, area = (stats[:, k] for k in (cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))
    fused = (w >= min_size) & (h < min_size) & (h >= TEXT_TALL[0] * pen) & (h <= TEXT_TALL[1] * pen) & \
        (w >= TEXT_WIDE * h) & (area >= TEXT_FILL[0] * w * h) & (area <= TEXT_FILL[1] * w * h)
    fused[0] = False
    for index in np.flatnonzero(fused):
        x, y, bw, bh = (int(v) for v in stats[index, :4])
        crop = (labels[y:y + bh, x:x + bw] == index).astype(np.uint8)
        holes = [max(cv2.boundingRect(c)[2:]) for c in _outer_and_holes(crop)[1]]
        fused[index] = (not holes or max(holes) < TEXT_HOLE * bh) and _straight_edge(crop) < TOUCH_RUN * min_size
    return fused


def _straight_edge(crop: np.ndarray) -> int:
    """The longest run of a component's (`crop`, its box) top or bottom edge along one row, in px:
    a stroke's edge runs on, a row of letters' is broken at each letter."""
    ink = np.pad(crop > 0, 1)
    edges = np.vstack([ink[1:-1] & ~ink[:-2], ink[1:-1] & ~ink[2:]]).astype(np.int8)
    steps = np.diff(np.pad(edges, ((0, 0), (1, 1))), axis=1)
    starts, ends = np.nonzero(steps == 1), np.nonzero(steps == -1)
    return int((ends[1] - starts[1]).max()) if len(starts[1]) else 0


def _round_one_of(stats: np.ndarray, index: int, rings: list[int]) -> bool:
    """Whether component `index` (holed) holds one of `rings` in its box: a square pad round its
    hole's ring. A letter's hole (an "a", a square "o") holds nothing."""
    x, y, w, h = (int(v) for v in stats[index, :4])
    return any(x < stats[r, 0] and y < stats[r, 1] and stats[r, 0] + stats[r, 2] < x + w and
               stats[r, 1] + stats[r, 3] < y + h for r in rings)


def _in_a_word(stats: np.ndarray, index: int, small: np.ndarray) -> bool:
    """Whether another small component stands beside this one as letters do in a word: level
    with it (sharing half its height) and no further off, left or right, than half its width
    (an "o" between "C" and "n"; a terminal's ring stands alone or on its wire)."""
    return bool(_beside(stats, index, small[small != index]).any())


def _beside(stats: np.ndarray, index: int, others: np.ndarray) -> np.ndarray:
    """Which of the components `others` stand beside component `index` as letters do (_in_a_word)."""
    x, y, w, h = (int(v) for v in stats[index, :4])
    ox, oy, ow, oh = (stats[others, k] for k in range(4))
    level = np.minimum(y + h, oy + oh) - np.maximum(y, oy) >= WORD_LEVEL * h
    gap = np.maximum(ox - (x + w), x - (ox + ow))
    return level & (gap <= WORD_GAP * w) & (oh >= WORD_LEVEL * h)


def _worded_rings(stats: np.ndarray, rings: np.ndarray, letters: np.ndarray) -> set[int]:
    """The small rings that stand in a word: beside one of `letters` (the small components neither
    round nor holed), or in a row of rings side by side one of which does (the o's of "Coo"). A
    row of rings no letter stands beside is a row of terminals, pads round their holes, square
    pads among them."""
    if not len(rings):
        return set()
    links = [(a, int(b)) for a, i in enumerate(rings) for b in np.flatnonzero(_beside(stats, i, rings) & (rings != i))]
    row = groups(len(rings), links)
    worded = {row[a] for a, i in enumerate(rings) if _beside(stats, i, letters).any()}
    return {int(i) for a, i in enumerate(rings) if row[a] in worded}


def word_bands(stats: np.ndarray, min_size: int, kept: np.ndarray | None = None) -> list[Band]:
    """The bands where words lie: rows of two or more small components standing as letters do
    (`_in_a_word`), each letter level with the row and near its last one (WORD_SPACING), the band
    grown by WORD_REACH letter widths either side and WORD_MARGIN of its height above and below.
    A letter touching a stroke is one ink with it and kept, but its word's other letters are
    clutter and mark where it lies (text written over a resistor, a transistor's pin names).
    Small components `kept` (by label: rings, pads) are no letters: a row of pads is no word; nor is
    a row of more than WORD_DOTS solid discs alone (dots, pads drawn solid), where a period or a bold
    asterisk is a letter ("REF**" whose letters touch a stroke)."""
    small = np.nonzero(_sizes(stats) < min_size)[0]
    if kept is not None:
        small = small[~kept[small]]
    solid = discs(stats)
    letters = sorted((int(stats[i, 0]), int(stats[i, 1]), int(stats[i, 2]), int(stats[i, 3]), bool(solid[i]))
                     for i in small[small > 0] if _in_a_word(stats, i, small[small > 0]))
    rows: list[list] = []  # [xmin, ymin, xmax, ymax, letter widths, all solid discs]
    for x, y, w, h, disc in letters:
        for row in rows:
            height = row[3] - row[1]
            if min(y + h, row[3]) - max(y, row[1]) >= WORD_LEVEL * min(h, height) and \
                    x - row[2] <= WORD_SPACING * max(h, height):
                row[:4] = [min(row[0], x), min(row[1], y), max(row[2], x + w), max(row[3], y + h)]
                row[4].append(w)
                row[5] &= disc
                break
        else:
            rows.append([x, y, x + w, y + h, [w], disc])
    bands = []
    for x0, y0, x1, y1, widths, dotted in rows:
        if len(widths) >= 2 and (not dotted or len(widths) <= WORD_DOTS):
            reach, margin = WORD_REACH * float(np.median(widths)), WORD_MARGIN * (y1 - y0)
            bands.append((x0 - reach, y0 - margin, x1 + reach, y1 + margin, float(y1 - y0)))
    return bands


def _sizes(stats: np.ndarray) -> np.ndarray:
    """Each component's size (its stats): the longer side of its box, against which min_size and
    the letters' bounds are read."""
    return np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])


def discs(stats: np.ndarray) -> np.ndarray:
    """Which components (their stats) are solid discs: as wide as tall, filling their circle."""
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    size = np.maximum(w, h)
    return (np.minimum(w, h) >= 0.85 * size) & (stats[:, cv2.CC_STAT_AREA] >= 0.7 * math.pi * (size / 2) ** 2)


def _holed_shape(labels: np.ndarray, stat: np.ndarray, index: int) -> str | None:
    """"ring" when a component is a round stroke around a hole (a small circle, a terminal, a screw
    drawn as a circle with a slot): as wide as tall, its outline filling its enclosing circle, and
    holed; or holed SECTORS times or more, whatever its outline (a hole's centre mark reaching past
    its circle; a stadium pad whose hole's ring touches its sides, at least half as wide as tall).
    Letters are not: o, O, 0, D, Q, e are taller than wide, open, or have a tail, and none has
    three holes. "holed" when it is as wide as tall and holed all the same (a square pad round its
    hole, an "a"); None otherwise."""
    x, y, w, h = (int(v) for v in stat[:4])
    if min(w, h) < 0.5 * max(w, h):
        return None
    outer, holes = _outer_and_holes((labels[y:y + h, x:x + w] == index).astype(np.uint8))
    if len(outer) != 1 or not holes:
        return None
    if len(holes) >= SECTORS:  # a circle that lines through it cut into sectors: a centre mark
        return "ring"
    if min(w, h) < 0.85 * max(w, h):
        return None
    _, radius = cv2.minEnclosingCircle(outer[0])
    return "ring" if radius >= 2 and cv2.contourArea(outer[0]) >= 0.8 * math.pi * radius * radius else "holed"


def _outer_and_holes(crop: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The outlines of the ink in `crop` (a component's box, uint8) and of the holes in it, framed
    by a pixel of paper so that ink on the box's edge is outlined too."""
    contours, hierarchy = cv2.findContours(np.pad(crop, 1), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    links = hierarchy[0] if hierarchy is not None else []
    outer = [c for c, link in zip(contours, links, strict=True) if link[3] < 0]
    return outer, [c for c, link in zip(contours, links, strict=True) if link[3] >= 0]


def stroke_width(mask: np.ndarray, distance: np.ndarray, ridge: np.ndarray) -> float:
    """Twice the median distance to the paper along the strokes' middles (≈ the pen width).
    `distance`, `ridge`: the distance transform of an ink whose connected components `mask` keeps
    or leaves out whole, and its ridge (ridge_of). On a component the ink's distance is its own (the
    paper nearest any of its pixels touches it: other components do not), so one transform serves
    every such mask."""
    values = distance[ridge & mask]
    return float(max(1.0, 2 * np.median(values) - 1)) if values.size else 1.0


def ridge_of(distance: np.ndarray) -> np.ndarray:
    """Where the distance transform is as high as anywhere round it: the strokes' middles."""
    return (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8))) & (distance > 0)
