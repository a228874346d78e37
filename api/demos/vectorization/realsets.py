"""Real drawings with exact ground truth: vector collections rendered to raster, clean or scan-like.

The generator in synthetic.py is what the backend was first tuned on; real drawings differ (arcs
crossing lines, circles tangent to lines, small and concentric circles, short arcs at corners,
text touching strokes). Three real collections of two kinds, Debian packages fetched by
tools/fetch_vector_sets.py:

- `kicad`: KiCad's schematic symbols (.kicad_sym s-expressions: polylines, rectangles, circles,
  three-point arcs, pins, texts). This is the tuning collection.
- `footprints`: KiCad's PCB footprints (.kicad_mod) drawn as assembly drawings: each part's body as
  its fabrication layer draws it (lines, rectangles, circles, three-point arcs) with its drilled
  pads' outlines (circles, rectangles, stadiums, rounded rectangles) and holes. Mechanical drawing
  rather than schematic: many small and concentric circles. A second tuning collection.
- `librecad`: LibreCAD's parts library (.dxf: lines, arcs, circles, bulged polylines, ellipses,
  texts). Kept out of tuning: only measured.

Each page holds four parts, rendered at 1000 px by default with one pen width (2–4 px, 150–300 dpi), texts drawn
as clutter that is not truth, and ellipses drawn but only counted. `scan=True` adds what a scan
does: skew (≤ 2°, applied to the truth too), ink bleed, the paper model of synthetic.py and JPEG.
The truth is tidied as a reader of the image would see it: collinear touching or overlapping
lines are one line, duplicates are one; curves drawn as many short lines, pieces shorter than three
ink widths, arcs of a radius under the ink's width (blobs, not strokes) and circles of a radius
under TINY_RADIUS are counted in `skipped` instead of being truth no reader of the image would
name; the tiny pieces are kept as `unscored`: finding one is no false positive either. The ink's
width is measured on a drawn stroke (inked_width), not taken from the pen's.
"""
from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from .dxf import read_dxf_drawing
from .primitives import Primitive, arc, arc_through, circle, line
from .synthetic import draw_stroke, print_on_paper

COLLECTIONS = ("kicad", "footprints", "librecad")
HELD_OUT = ("librecad",)  # never used to choose a default or a method: measured only
KICAD_LIBRARIES = ("Device", "Transformer", "Switch", "Motor", "Relay", "Sensor", "Isolator", "Diode",
                   "Transistor_BJT", "Transistor_FET", "Valve", "Simulation_SPICE", "Amplifier_Operational",
                   "Connector", "Oscillator", "Power_Protection", "Battery_Management", "Mechanical")
LIBRECAD_SKIP = {"SPLINE", "HATCH", "INSERT", "IMAGE", "SOLID", "3DFACE"}  # parts holding these are not chosen
CATALOGUE = 200  # parts spread evenly over each collection; page k holds parts 4k … 4k + 3
PER_PAGE = 4
CURVE_SEGMENTS = 3  # this many short lines joined end to end, turning gently, draw a curve
CURVE_STEP = 25.0  # px: "short"
CURVE_TURN = 40.0  # degrees: "gently"
TINY_PENS = 3.0  # truth lines and arcs shorter than this many ink widths are blobs: counted, not scored
TINY_RADIUS = 3.0  # px: smaller truth circles and arcs likewise (arcs too when no wider than the ink)


@dataclass
class Part:
    """One drawing in its own units, y down: its truth and what is drawn but not truth."""

    name: str
    primitives: list[Primitive]
    texts: list[tuple[float, float, float, str, float]] = field(default_factory=list)
    # x, y, height, text, where x sits along the text (0: its left end, 0.5: its middle, 1: its right end)
    polylines: list[list[tuple[float, float]]] = field(default_factory=list)  # clutter drawn as strokes
    skipped: Counter = field(default_factory=Counter)

    def extent(self) -> tuple[float, float, float, float]:
        boxes = [p.bounds() for p in self.primitives]
        boxes += [(min(x for x, _ in pl), min(y for _, y in pl), max(x for x, _ in pl), max(y for _, y in pl))
                  for pl in self.polylines if pl]
        xs0, ys0, xs1, ys1 = zip(*boxes, strict=True)
        return min(xs0), min(ys0), max(xs1), max(ys1)


@dataclass
class Sheet:
    """One rendered page and its truth in its pixels."""

    name: str
    image: np.ndarray  # H×W×3 uint8 RGB
    primitives: list[Primitive]
    skipped: Counter
    parts: list[str]
    unscored: list[Primitive] = field(default_factory=list)  # the tiny pieces: finding one is no error


# -- KiCad symbols -----------------------------------------------------------------------------------------
TOKENS = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"]+')


def parse_sexpr(text: str) -> list:
    """A KiCad s-expression file as nested lists (strings without their quotes)."""
    stack: list[list] = [[]]
    for token in TOKENS.findall(text):
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token[1:-1] if token.startswith('"') else token)
    return stack[0]


def _child(node: list, name: str) -> list | None:
    return next((c for c in node if isinstance(c, list) and c and c[0] == name), None)


def _children(node: list, name: str) -> list[list]:
    return [c for c in node if isinstance(c, list) and c and c[0] == name]


def _xy(node: list | None) -> tuple[float, float]:
    return float(node[1]), -float(node[2])  # KiCad symbols have y up


def kicad_parts(folder: Path) -> list[Part]:
    """Every symbol of the chosen libraries that has its own graphics and at least one circle or arc."""
    parts = []
    for library in KICAD_LIBRARIES:
        path = folder / f"{library}.kicad_sym"
        if not path.exists():
            continue
        for symbol in _children(parse_sexpr(path.read_text(encoding="utf-8"))[0], "symbol"):
            part = _kicad_part(f"{library}:{symbol[1]}", symbol)
            if part is not None:
                parts.append(part)
    return parts


def _kicad_part(name: str, symbol: list) -> Part | None:
    if _child(symbol, "extends") is not None:
        return None
    part = Part(name, [])
    for prop in _children(symbol, "property"):
        if prop[1] in ("Reference", "Value") and not _hidden(prop):
            _kicad_text(part, prop[2], prop)
    for unit in _children(symbol, "symbol"):
        numbers = str(unit[1]).rsplit("_", 2)[-2:]
        if numbers[0] not in ("0", "1") or numbers[1] not in ("0", "1"):
            continue  # other units and the De Morgan alternative are other drawings
        for item in unit[2:]:
            if isinstance(item, list) and item:
                _kicad_item(part, item)
    kinds = {p.type for p in part.primitives}
    if part.skipped.get("bezier") or not kinds & {"circle", "arc"}:
        return None
    return part


def _hidden(node: list) -> bool:
    effects = _child(node, "effects")
    return effects is not None and "hide" in effects


def _kicad_text(part: Part, text: str, node: list) -> None:
    at = _child(node, "at")
    font = _child(_child(node, "effects") or [], "font")
    size = _child(font, "size") if font else None
    if at is None or not str(text).strip() or str(text) == "~":
        return
    x, y = _xy(at)
    justify = _child(_child(node, "effects") or [], "justify") or []
    anchor = 0.0 if "left" in justify else 1.0 if "right" in justify else 0.5
    part.texts.append((x, y, float(size[1]) if size else 1.27, str(text), anchor))


def _kicad_item(part: Part, item: list) -> None:
    kind = item[0]
    if kind == "polyline":
        points = [_xy(p) for p in _child(item, "pts")[1:]]
        part.primitives += [line(*a, *b) for a, b in pairwise(points) if a != b]
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = _xy(_child(item, "start")), _xy(_child(item, "end"))
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        part.primitives += [line(*a, *b) for a, b in pairwise(corners) if a != b]
    elif kind == "circle":
        cx, cy = _xy(_child(item, "center"))
        part.primitives.append(circle(cx, cy, float(_child(item, "radius")[1])))
    elif kind == "arc":
        found = arc_through(_xy(_child(item, "start")), _xy(_child(item, "mid")), _xy(_child(item, "end")))
        if found is not None:
            part.primitives.append(found)
    elif kind == "pin":
        if "hide" in item:
            return
        at, length = _child(item, "at"), float(_child(item, "length")[1])
        x, y = _xy(at)
        angle = math.radians(float(at[3]) if len(at) > 3 else 0.0)
        if length > 0:
            part.primitives.append(line(x, y, x + length * math.cos(angle), y - length * math.sin(angle)))
        if len(item) > 2 and item[2] != "line":
            part.skipped[f"pin style {item[2]}"] += 1  # its decoration is not drawn
    elif kind == "text":
        _kicad_text(part, item[1], item)
    elif kind == "bezier":
        part.skipped["bezier"] += 1


# -- LibreCAD parts ----------------------------------------------------------------------------------------
def librecad_part(folder: Path, path: Path) -> Part | None:
    """The part in `path` when it is readable, has a circle or an arc and nothing we cannot draw."""
    try:
        drawing = read_dxf_drawing(path, height=0.0)  # y down: y → −y
    except Exception:  # noqa: BLE001 - a few library files are not readable DXF: not chosen
        return None
    if set(drawing.skipped) & LIBRECAD_SKIP or not drawing.primitives:
        return None
    if not {p.type for p in drawing.primitives} & {"circle", "arc"}:
        return None
    texts = [(x, y - h / 2, h, t, 0.0) for x, y, h, t in drawing.texts]  # DXF's insertion: the left end
    return Part(path.relative_to(folder).as_posix(), drawing.primitives, texts, drawing.ellipses,
                Counter(drawing.skipped))


# -- KiCad footprints -------------------------------------------------------------------------------------
# the body as its fabrication drawing shows it: silkscreen and courtyard repeat that outline a tenth
# of a millimetre further out, strokes on top of each other that no reader of the image tells apart
FOOTPRINT_LAYER = "F.Fab"
# drilled pads are drawn (outline and hole); surface pads are not: a QFN's rows of tiny filled
# rectangles are copper, not a drawing's strokes
DRILLED = ("thru_hole", "np_thru_hole")
# mm: a larger part drawn in a quarter page (440 px) shows under 15 px a millimetre, its pads a
# pen or two across: rings no reader tells from dots (a 2 × 38 pin socket is one dark bar)
FOOTPRINT_SPAN = 30.0


def footprint_part(folder: Path, path: Path) -> Part | None:
    """The footprint in `path` as an assembly drawing (FOOTPRINT_LAYER's graphics, drilled pads'
    outlines and holes), or None when it has no circle or arc, draws a filled shape or is larger
    than FOOTPRINT_SPAN."""
    try:
        node = parse_sexpr(path.read_text(encoding="utf-8"))[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    part = Part(f"{path.parent.stem}:{path.stem}", [])
    for item in node[1:]:
        if not isinstance(item, list) or not item:
            continue
        if item[0] == "pad":
            _pad(part, item)
        elif _child(item, "layer") is not None and _child(item, "layer")[1] == FOOTPRINT_LAYER:
            _footprint_item(part, item)
    if part.skipped.get("filled shape") or not {p.type for p in part.primitives} & {"circle", "arc"}:
        return None
    x0, y0, x1, y1 = part.extent()
    return part if max(x1 - x0, y1 - y0) <= FOOTPRINT_SPAN else None


def _at(node: list | None) -> tuple[float, float]:
    return float(node[1]), float(node[2])  # footprints have y down


def _footprint_item(part: Part, item: list) -> None:
    kind = item[0]
    fill = _child(item, "fill")
    if fill is not None and fill[1] == "solid":
        part.skipped["filled shape"] += 1
    elif kind == "fp_line":
        part.primitives.append(line(*_at(_child(item, "start")), *_at(_child(item, "end"))))
    elif kind in ("fp_rect", "fp_poly"):
        if kind == "fp_rect":
            (x0, y0), (x1, y1) = _at(_child(item, "start")), _at(_child(item, "end"))
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        else:
            corners = [_at(p) for p in _child(item, "pts")[1:] if p[0] == "xy"]
        part.primitives += [line(*a, *b) for a, b in pairwise(corners + corners[:1]) if a != b]
    elif kind == "fp_circle":
        (cx, cy), (ex, ey) = _at(_child(item, "center")), _at(_child(item, "end"))
        part.primitives.append(circle(cx, cy, math.hypot(ex - cx, ey - cy)))
    elif kind == "fp_arc":
        part.primitives.append(arc_through(_at(_child(item, "start")), _at(_child(item, "mid")),
                                           _at(_child(item, "end"))))
    elif kind == "fp_text" and "hide" not in item:
        at, font = _child(item, "at"), _child(_child(item, "effects") or [], "font")
        size = _child(font, "size") if font else None
        text = str(item[2]).replace("${REFERENCE}", "REF**")
        if at is not None and text.strip():
            part.texts.append((*_at(at), float(size[1]) if size else 1.0, text, 0.5))


def _pad(part: Part, item: list) -> None:
    """A drilled pad's outline, turned as the pad is, and its hole when the hole shows inside it."""
    if len(item) < 4 or item[2] not in DRILLED:
        return
    at, size = _child(item, "at"), _child(item, "size")
    x, y = _at(at)
    w, h = float(size[1]), float(size[2])
    ratio = _child(item, "roundrect_rratio")
    outline = _pad_outline(item[3], w, h, float(ratio[1]) if ratio else 0.25)
    if outline is None:
        part.skipped[f"pad {item[3]}"] += 1
        return
    turn = -float(at[3]) if len(at) > 3 else 0.0  # KiCad turns anticlockwise on screen
    part.primitives += [transformed(p, 1.0, x, y, turn, (x, y)) for p in outline]
    drill = _child(item, "drill")
    if drill is None or drill[1] == "oval":
        return
    offset = _child(drill, "offset")
    dx, dy = _at(offset) if offset else (0.0, 0.0)
    if float(drill[1]) < min(w, h):  # a hole as wide as its pad is its outline already
        hole = circle(dx, dy, float(drill[1]) / 2)
        part.primitives.append(transformed(hole, 1.0, x, y, turn, (x, y)))


def _pad_outline(shape: str, w: float, h: float, ratio: float) -> list[Primitive] | None:
    """A pad's outline centred on (0, 0) before it is turned; None for shapes not drawn (custom,
    trapezoid)."""
    if shape == "circle" or (shape == "oval" and w == h):
        return [circle(0.0, 0.0, w / 2)]
    if shape == "rect":
        return _rounded_rectangle(w, h, 0.0)
    if shape == "oval":
        return _rounded_rectangle(w, h, min(w, h) / 2)
    if shape == "roundrect":
        return _rounded_rectangle(w, h, ratio * min(w, h))
    return None


def _rounded_rectangle(w: float, h: float, r: float) -> list[Primitive]:
    """A w × h rectangle centred on (0, 0) whose corners are quarter circles of radius r (a
    stadium when r is half the shorter side: its straight sides between two half circles)."""
    a, b = w / 2 - r, h / 2 - r
    sides = [line(-a, -h / 2, a, -h / 2), line(w / 2, -b, w / 2, b), line(a, h / 2, -a, h / 2),
             line(-w / 2, b, -w / 2, -b)]
    if r <= 0:
        return sides
    sides = [p for p in sides if _line_length(p) > 1e-9]
    if b <= 1e-9:  # a stadium lying down: two half circles
        return sides + [arc(a, 0.0, r, 270, 450), arc(-a, 0.0, r, 90, 270)]
    if a <= 1e-9:  # standing up
        return sides + [arc(0.0, b, r, 0, 180), arc(0.0, -b, r, 180, 360)]
    return sides + [arc(a, -b, r, 270, 360), arc(a, b, r, 0, 90), arc(-a, b, r, 90, 180), arc(-a, -b, r, 180, 270)]


# -- pages -----------------------------------------------------------------------------------------------
def choose_parts(name: str, folder: Path, slots: range) -> list[Part]:
    """The parts of the given slots: slot k is the first suitable part of the k-th of
    `CATALOGUE` equal stretches of the collection in a fixed shuffled order (so a slot's part never depends on how
    many are asked for)."""
    if name == "kicad":
        parts = sorted(kicad_parts(folder), key=lambda part: _shuffled(part.name))
        stride = max(1, len(parts) // CATALOGUE)
        return [parts[k * stride] for k in slots if k * stride < len(parts)]
    readers = {"librecad": ("*.dxf", librecad_part), "footprints": ("*.kicad_mod", footprint_part)}
    if name not in readers:
        raise ValueError(f"unknown collection {name!r} (known: {', '.join(COLLECTIONS)})")
    pattern, read = readers[name]
    paths = sorted(folder.rglob(pattern), key=lambda path: _shuffled(path.relative_to(folder).as_posix()))
    # read lazily: a whole library takes half a minute or more
    stride = max(1, len(paths) // CATALOGUE)
    chosen: list[Part] = []
    for slot in slots:
        for path in paths[slot * stride:(slot + 1) * stride]:
            part = read(folder, path)
            if part is not None:
                chosen.append(part)
                break
    return chosen


def _shuffled(name: str) -> str:
    """A fixed pseudo-random order (a page mixes libraries instead of taking four neighbours)."""
    return hashlib.sha1(name.encode()).hexdigest()


def sheets(name: str, folder: Path, count: int, scan: bool = False, size: int = 1000,
           first: int = 0) -> list[Sheet]:
    """Pages `first` … `first + count − 1` of collection `name` (its unpacked folder), four parts a
    page; a page's number alone decides its parts and its rendering."""
    sheets = []
    for page in range(first, min(first + count, CATALOGUE // PER_PAGE)):
        parts = choose_parts(name, folder, range(page * PER_PAGE, (page + 1) * PER_PAGE))
        sheets.append(render(f"{name}-{page:03d}", parts, size, scan))
    return sheets


def render(name: str, parts: list[Part], size: int, scan: bool) -> Sheet:
    rng = random.Random(name)  # str seeds are stable across runs
    width = rng.choice((2, 3, 3, 4))
    per_row = math.ceil(math.sqrt(len(parts)))
    cell = size / per_row
    ink = np.zeros((size, size), np.uint8)
    truth: list[Primitive] = []
    skipped: Counter = Counter()
    for index, part in enumerate(parts):
        ox, oy = (index % per_row) * cell, (index // per_row) * cell
        placed = _place(part, ox, oy, cell, rng)
        for p in placed.primitives:
            draw_stroke(ink, p, width, 255)
        for polyline in placed.polylines:
            pts = np.round(np.array(polyline) * 16).astype(np.int32)
            cv2.polylines(ink, [pts], False, 255, width, cv2.LINE_AA, 4)
        _draw_texts(ink, placed.texts, width)
        truth += placed.primitives
        skipped += placed.skipped
    ink_width = inked_width(width)
    truth, tiny, curves = tidy(truth, TINY_PENS * ink_width, max(TINY_RADIUS, ink_width), ink_width)
    skipped["tiny"] += len(tiny)
    skipped["curve drawn as lines"] += curves
    layer = ink.astype(np.float32) / 255
    if scan:
        image, turned = _scan(layer, truth + tiny, rng, size)
        truth, tiny = turned[:len(truth)], turned[len(truth):]
    else:
        grey = (255 * (1 - layer)).clip(0, 255).astype(np.uint8)
        image = np.dstack([grey] * 3)
    for i, p in enumerate(truth):
        p.id = f"gt{i}"
    return Sheet(name, image, truth, skipped, [p.name for p in parts], tiny)


@functools.cache
def inked_width(pen: int) -> float:
    """How wide a stroke of this pen inks, measured on a drawn line: cv2's anti-aliased pens ink
    wider than their width, and unevenly (about 3.8, 5.7 and 5.8 px for pens of 2, 3 and 4 px)."""
    size, length = 256, 200.0
    canvas = np.zeros((size, size), np.uint8)
    turn = math.radians(30.0)
    dx, dy = length / 2 * math.cos(turn), length / 2 * math.sin(turn)
    draw_stroke(canvas, line(size / 2 - dx, size / 2 - dy, size / 2 + dx, size / 2 + dy), pen, 255)
    return float(canvas.sum()) / 255.0 / length


def _place(part: Part, ox: float, oy: float, cell: float, rng: random.Random) -> Part:
    """The part scaled into its cell (a 6% margin), centred; KiCad symbols at most 25–40 px/mm."""
    x0, y0, x1, y1 = part.extent()
    span = max(x1 - x0, y1 - y0, 1e-6)
    scale = 0.88 * cell / span
    if ":" in part.name:  # KiCad, in mm: small symbols are not blown up past an enlarged print
        scale = min(scale, rng.uniform(25.0, 40.0))
    dx = ox + cell / 2 - scale * (x0 + x1) / 2
    dy = oy + cell / 2 - scale * (y0 + y1) / 2
    return Part(part.name, [transformed(p, scale, dx, dy) for p in part.primitives],
                [(scale * x + dx, scale * y + dy, scale * h, t, a) for x, y, h, t, a in part.texts],
                [[(scale * x + dx, scale * y + dy) for x, y in pl] for pl in part.polylines], Counter(part.skipped))


def transformed(p: Primitive, scale: float, dx: float, dy: float, degrees: float = 0.0,
                about: tuple[float, float] = (0.0, 0.0)) -> Primitive:
    """p scaled, shifted, then turned by `degrees` (clockwise on screen) about `about`."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def point(x: float, y: float) -> tuple[float, float]:
        x, y = scale * x + dx - about[0], scale * y + dy - about[1]
        return about[0] + c * x - s * y, about[1] + s * x + c * y

    g = p.geometry
    if p.type == "line":
        return line(*point(g["x1"], g["y1"]), *point(g["x2"], g["y2"]))
    cx, cy = point(g["cx"], g["cy"])
    if p.type == "circle":
        return circle(cx, cy, scale * g["r"])
    return arc(cx, cy, scale * g["r"], g["start"] + degrees, g["end"] + degrees)


UNICODE_ESCAPE = re.compile(r"\\U\+([0-9A-Fa-f]{4})")


def drawable(text: str) -> str:
    """The text as the Hershey font can draw it: DXF's \\U+XXXX escapes decoded, then each letter
    outside ASCII drawn as a letter of the same size ('x'), not as its escape code."""
    text = UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return "".join(c if " " <= c <= "~" else "x" for c in text)


def _draw_texts(ink: np.ndarray, texts: list[tuple[float, float, float, str, float]], pen: int) -> None:
    for x, y, height, text, anchor in texts:
        text = drawable(text)
        font_scale = max(0.3, height / 22.0)
        thickness = max(1, round(0.6 * pen))
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        cv2.putText(ink, text, (round(x - anchor * w), round(y + h / 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, 255, thickness, cv2.LINE_AA)


def _scan(layer: np.ndarray, truth: list[Primitive], rng: random.Random, size: int):
    """Skew (≤ 2°, truth turned alike), ink bleed, old paper (synthetic.print_on_paper), JPEG."""
    degrees = rng.uniform(-2.0, 2.0)
    centre = (size / 2, size / 2)
    matrix = cv2.getRotationMatrix2D(centre, -degrees, 1.0)  # OpenCV's positive angle is anticlockwise
    layer = cv2.warpAffine(layer, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.5, 0.9))
    layer = np.clip(layer * rng.uniform(1.1, 1.4), 0, 1)  # bleed: the blurred edge darkens outwards
    truth = [transformed(p, 1.0, 0.0, 0.0, degrees, centre) for p in truth]
    image = print_on_paper(layer, rng, size / 1000.0)
    _, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, rng.randint(60, 85)])
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return image, truth


def tidy(truth: list[Primitive], tiny_length: float = 6.0, tiny_radius: float = TINY_RADIUS,
         ink_width: float = 0.0) -> tuple[list[Primitive], list[Primitive], int]:
    """The truth as the image shows it: collinear lines that touch or overlap are one line (their
    ends nearer than `ink_width`: the round ends of their strokes overlap, the ink is one stroke),
    duplicates one, a full-turn arc a circle; tiny pieces and curves drawn as many short lines are
    counted and left out (tiny: lines and arcs shorter than `tiny_length` px, circles and arcs of
    radius under `tiny_radius` px: no wider than the ink, they show no hole, only a blob; circles only
    under TINY_RADIUS: a circle drawn smaller than the pen is a dot, which readers name as one).
    Returns (truth, the tiny pieces, how many curves)."""
    # lines are joined before the tiny ones go: a pin continued by a short collinear piece up to its
    # socket is drawn as one stroke, and a reader names it as one line, ends where the ink ends
    lines, curves = _without_curves([p for p in truth if p.type == "line"])
    kept = _merge_collinear(lines, gap=ink_width)
    for p in truth:
        g = p.geometry
        if p.type == "arc" and g["end"] - g["start"] >= 359.5:
            p = circle(g["cx"], g["cy"], g["r"])
        if p.type != "line" and not any(q.type == p.type and _same(p, q) for q in kept):
            kept.append(p)
    tiny = [_is_tiny(p, tiny_length, tiny_radius) for p in kept]
    return [p for p, small in zip(kept, tiny, strict=True) if not small], \
        [p for p, small in zip(kept, tiny, strict=True) if small], curves


def _without_curves(lines: list[Primitive]) -> tuple[list[Primitive], int]:
    """The lines less those that draw a curve in small steps (CURVE_SEGMENTS or more short lines
    joined end to end at points where nothing else meets, each turn at most CURVE_TURN): a reader
    sees a curve there, not lines; returns the rest and how many such curves there were."""
    ends: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, p in enumerate(lines):
        g = p.geometry
        for end, (x, y) in enumerate(((g["x1"], g["y1"]), (g["x2"], g["y2"]))):
            ends.setdefault((round(x * 2), round(y * 2)), []).append((i, end))
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for meeting in ends.values():
        if len(meeting) != 2:
            continue
        (i, ei), (j, ej) = meeting
        if i == j or max(_line_length(lines[i]), _line_length(lines[j])) > CURVE_STEP:
            continue
        if _turn(lines[i], ei, lines[j], ej) <= CURVE_TURN:
            parent[root(i)] = root(j)
    groups: Counter = Counter(root(i) for i in range(len(lines)))
    curves = {g for g, n in groups.items() if n >= CURVE_SEGMENTS}
    return [p for i, p in enumerate(lines) if root(i) not in curves], len(curves)


def _line_length(p: Primitive) -> float:
    g = p.geometry
    return math.hypot(g["x2"] - g["x1"], g["y2"] - g["y1"])


def _turn(a: Primitive, end_a: int, b: Primitive, end_b: int) -> float:
    """Degrees the pen turns going along `a` into `b` through their shared ends."""
    def heading(p: Primitive, towards_end: int) -> float:
        g = p.geometry
        dx, dy = g["x2"] - g["x1"], g["y2"] - g["y1"]
        return math.degrees(math.atan2(dy, dx)) if towards_end == 1 else math.degrees(math.atan2(-dy, -dx))

    into, out = heading(a, end_a), heading(b, 1 - end_b)
    return abs((out - into + 180) % 360 - 180)


def _is_tiny(p: Primitive, tiny_length: float, tiny_radius: float) -> bool:
    g = p.geometry
    if p.type == "line":
        return math.hypot(g["x2"] - g["x1"], g["y2"] - g["y1"]) < tiny_length
    if p.type == "circle":  # drawn smaller than the pen, a circle is a dot: readers name those too
        return g["r"] < TINY_RADIUS
    return g["r"] < tiny_radius or math.radians(g["end"] - g["start"]) * g["r"] < tiny_length


def _same(a: Primitive, b: Primitive) -> bool:
    return all(abs(a.geometry[k] - b.geometry[k]) < 0.5 for k in a.geometry)


def _merge_collinear(lines: list[Primitive], tolerance: float = 0.75, gap: float = 0.0) -> list[Primitive]:
    """Lines on one straight line (within `tolerance` px) whose extents overlap or lie less than
    `gap` px apart (at least `tolerance`) are merged."""
    items = [[np.array([p.geometry["x1"], p.geometry["y1"]]), np.array([p.geometry["x2"], p.geometry["y2"]])]
             for p in lines]
    merged = True
    while merged:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                joint = _joint(items[i], items[j], tolerance, max(tolerance, gap))
                if joint is not None:
                    items[i] = joint
                    del items[j]
                    merged = True
                    break
            if merged:
                break
    return [line(float(a[0]), float(a[1]), float(b[0]), float(b[1])) for a, b in items]


def _joint(a: list[np.ndarray], b: list[np.ndarray], tolerance: float, gap: float) -> list[np.ndarray] | None:
    d = a[1] - a[0]
    length = float(np.hypot(*d))
    if length < 1e-9:
        return None
    u = d / length
    n = np.array([-u[1], u[0]])
    if max(abs(float((b[0] - a[0]) @ n)), abs(float((b[1] - a[0]) @ n))) > tolerance:
        return None
    t = [0.0, length, float((b[0] - a[0]) @ u), float((b[1] - a[0]) @ u)]
    if min(t[2:]) >= length + gap or max(t[2:]) <= -gap:
        return None
    return [a[0] + min(t) * u, a[0] + max(t) * u]
