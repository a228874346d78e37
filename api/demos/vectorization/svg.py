"""SVG out (one file per image) and SVG in (to evaluate against any drawing's SVG).

Out: width, height and viewBox are the image's size in pixels, so the SVG overlays the scan
exactly; lines are <line>, circles <circle>, arcs <path d="M … A …">, each with an `id` and a
`data-confidence`; nothing else (no script, no external reference). SVGs are served as
attachments by the platform anyway.

In: <line>, <circle>, <ellipse> with equal radii, <polyline>, <polygon>, <rect> (as lines) and
<path> with M, L, H, V, A and Z (absolute or relative). `transform` attributes (matrix, translate,
scale, rotate, skewX, skewY, nested groups) are applied, so a drawing made by another tool is
compared in its rendered frame; a circle or arc under a transform that is not a similarity becomes
an ellipse. What is not one of our primitives (elliptical arcs and ellipses, Bézier curves) is
counted in `SvgDrawing.skipped`, never silently dropped; <defs>, <symbol>, <clipPath>, <mask>,
<pattern> and <marker> content is not drawn where it stands and is not read.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from xml.sax.saxutils import quoteattr

from .primitives import Primitive, arc, arc_point, arc_through, circle, line

SVG_NS = "http://www.w3.org/2000/svg"
COLOURS = {"line": "#d62728", "circle": "#1f4fd6", "arc": "#1a9c35"}


def _n(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def to_svg(primitives: list[Primitive], width: int, height: int, stroke_width: float = 2.0,
           title: str = "") -> str:
    """The primitives as an SVG document of the image's size."""
    sw = _n(max(1.0, stroke_width))
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    if title:
        out.append(f"<title>{_escape(title)}</title>")
    out.append(f'<g fill="none" stroke-width="{sw}" stroke-linecap="round">')
    for p in primitives:
        g = p.geometry
        attrs = f'id={quoteattr(p.id)} class="{p.type}" stroke="{COLOURS[p.type]}" ' \
                f'data-confidence="{_n(p.confidence) if p.confidence < 1 else "1"}"'
        if p.type == "line":
            out.append(f'<line {attrs} x1="{_n(g["x1"])}" y1="{_n(g["y1"])}" x2="{_n(g["x2"])}" y2="{_n(g["y2"])}"/>')
        elif p.type == "circle":
            out.append(f'<circle {attrs} cx="{_n(g["cx"])}" cy="{_n(g["cy"])}" r="{_n(g["r"])}"/>')
        else:
            out.append(f'<path {attrs} d="{arc_path(g)}" data-cx="{_n(g["cx"])}" data-cy="{_n(g["cy"])}"/>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def arc_path(g: dict[str, float]) -> str:
    """`M start A r r 0 large-arc 1 end`; sweep-flag 1 is the growing-angle direction (y down)."""
    sweep = g["end"] - g["start"]
    x0, y0 = arc_point(g, g["start"])
    r = _n(g["r"])
    if sweep >= 359.99:  # an SVG arc cannot close on itself: two halves
        xm, ym = arc_point(g, g["start"] + 180)
        return f"M {_n(x0)} {_n(y0)} A {r} {r} 0 1 1 {_n(xm)} {_n(ym)} A {r} {r} 0 1 1 {_n(x0)} {_n(y0)}"
    x1, y1 = arc_point(g, g["end"])
    return f"M {_n(x0)} {_n(y0)} A {r} {r} 0 {1 if sweep > 180 else 0} 1 {_n(x1)} {_n(y1)}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- reading -------------------------------------------------------------------------------------------
@dataclass
class SvgDrawing:
    width: float | None
    height: float | None
    view_box: tuple[float, float, float, float] | None
    primitives: list[Primitive] = field(default_factory=list)
    has_script: bool = False
    skipped: Counter = field(default_factory=Counter)  # what is drawn but is no primitive, by kind


NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
TOKEN = re.compile(rf"([MmLlHhVvAaZzCcSsQqTt])|({NUMBER})")
ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "A": 7, "Z": 0, "C": 6, "S": 4, "Q": 4, "T": 2}


def parse_svg(data: bytes | str) -> SvgDrawing:
    """Primitives of an SVG; raises ValueError when it is not SVG."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not valid SVG/XML: {exc}") from None
    if _local(root.tag) != "svg":
        raise ValueError("not an SVG document (root element is not <svg>)")
    view_box = None
    if root.get("viewBox"):
        values = [float(v) for v in re.split(r"[\s,]+", root.get("viewBox", "").strip()) if v]
        if len(values) == 4:
            view_box = (values[0], values[1], values[2], values[3])
    drawing = SvgDrawing(_length(root.get("width")), _length(root.get("height")), view_box)
    drawing.has_script = any(_local(e.tag) == "script" or any(n.lower().startswith("on") for n in e.attrib)
                             for e in root.iter())
    _read(root, IDENTITY, drawing)
    return drawing


Matrix = tuple[float, float, float, float, float, float]  # SVG's (a b c d e f): x' = a x + c y + e
IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
NOT_RENDERED = {"defs", "symbol", "clipPath", "mask", "pattern", "marker", "metadata", "title", "desc", "style"}
TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")


def _read(element: ET.Element, outer: Matrix, drawing: SvgDrawing) -> None:
    tag = _local(element.tag)
    if tag in NOT_RENDERED:
        return
    matrix = _compose(outer, parse_transform(element.get("transform", "")))
    found = _primitives_of(tag, element, drawing.skipped)
    if matrix != IDENTITY:
        found = [q for q in (_apply(matrix, p, drawing.skipped) for p in found) if q is not None]
    confidence = _float(element.get("data-confidence"), 1.0)
    for i, p in enumerate(found):
        p.confidence = confidence
        p.id = element.get("id", "") if len(found) == 1 else f"{element.get('id', tag)}-{i}"
    drawing.primitives.extend(found)
    for child in element:
        _read(child, matrix, drawing)


def parse_transform(text: str) -> Matrix:
    """An SVG `transform` attribute as one matrix (the list applies right to left, as SVG says)."""
    result = IDENTITY
    for name, args in TRANSFORM.findall(text or ""):
        v = [float(x) for x in re.findall(NUMBER, args)]
        if name == "matrix" and len(v) == 6:
            m = tuple(v)
        elif name == "translate" and v:
            m = (1.0, 0.0, 0.0, 1.0, v[0], v[1] if len(v) > 1 else 0.0)
        elif name == "scale" and v:
            m = (v[0], 0.0, 0.0, v[1] if len(v) > 1 else v[0], 0.0, 0.0)
        elif name == "rotate" and v:
            c, s_ = math.cos(math.radians(v[0])), math.sin(math.radians(v[0]))
            cx, cy = (v[1], v[2]) if len(v) == 3 else (0.0, 0.0)
            m = (c, s_, -s_, c, cx - c * cx + s_ * cy, cy - s_ * cx - c * cy)
        elif name == "skewX" and v:
            m = (1.0, 0.0, math.tan(math.radians(v[0])), 1.0, 0.0, 0.0)
        elif name == "skewY" and v:
            m = (1.0, math.tan(math.radians(v[0])), 0.0, 1.0, 0.0, 0.0)
        else:
            continue
        result = _compose(result, m)
    return result


def _compose(m: Matrix, n: Matrix) -> Matrix:
    """m · n: n applied first."""
    a, b, c, d, e, f = m
    a2, b2, c2, d2, e2, f2 = n
    return (a * a2 + c * b2, b * a2 + d * b2, a * c2 + c * d2, b * c2 + d * d2, a * e2 + c * f2 + e,
            b * e2 + d * f2 + f)


def _apply(m: Matrix, p: Primitive, skipped: Counter) -> Primitive | None:
    """p under the matrix; circles and arcs stay round only under a similarity (else: skipped)."""
    a, b, c, d, e, f = m

    def at(x: float, y: float) -> tuple[float, float]:
        return a * x + c * y + e, b * x + d * y + f

    g = p.geometry
    if p.type == "line":
        return line(*at(g["x1"], g["y1"]), *at(g["x2"], g["y2"]))
    if abs(math.hypot(a, b) - math.hypot(c, d)) > 1e-6 * max(1.0, math.hypot(a, b)) or abs(a * c + b * d) > 1e-6:
        skipped["ellipse (transformed circle or arc)"] += 1
        return None
    if p.type == "circle":
        return circle(*at(g["cx"], g["cy"]), g["r"] * math.hypot(a, b))
    mid = (g["start"] + g["end"]) / 2
    return arc_through(at(*arc_point(g, g["start"])), at(*arc_point(g, mid)), at(*arc_point(g, g["end"])))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _length(value: str | None) -> float | None:
    if not value:
        return None
    match = re.match(rf"\s*({NUMBER})\s*(px)?\s*$", value)
    return float(match.group(1)) if match else None


def _float(value: str | None, default: float = 0.0) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def _primitives_of(tag: str, e: ET.Element, skipped: Counter) -> list[Primitive]:
    f = lambda name: _float(e.get(name))  # noqa: E731
    if tag == "line":
        return [line(f("x1"), f("y1"), f("x2"), f("y2"))]
    if tag == "circle":
        return [circle(f("cx"), f("cy"), f("r"))]
    if tag == "ellipse":
        if abs(f("rx") - f("ry")) < 1e-6:
            return [circle(f("cx"), f("cy"), f("rx"))]
        skipped["ellipse"] += 1
        return []
    if tag in ("polyline", "polygon"):
        values = [float(v) for v in re.findall(NUMBER, e.get("points", ""))]
        points = list(zip(values[0::2], values[1::2], strict=False))  # an odd last number pairs with nothing: dropped
        if tag == "polygon" and len(points) > 2:
            points.append(points[0])
        return [line(*a, *b) for a, b in pairwise(points) if a != b]
    if tag == "rect":
        x, y, w, h = f("x"), f("y"), f("width"), f("height")
        corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]
        return [line(*a, *b) for a, b in pairwise(corners)]
    if tag == "path":
        return parse_path(e.get("d", ""), skipped)
    return []


def parse_path(d: str, skipped: Counter | None = None) -> list[Primitive]:
    """Lines and circular arcs of a path's data; curves and elliptical arcs only move the pen, and
    are counted in `skipped` (by kind) when it is given."""
    skipped = skipped if skipped is not None else Counter()
    tokens = [(m.group(1), m.group(2)) for m in TOKEN.finditer(d)]
    result: list[Primitive] = []
    x = y = sx = sy = 0.0
    i, command = 0, None
    while i < len(tokens):
        letter, number = tokens[i]
        if letter:
            command = letter
            i += 1
            if command in "Zz":
                if (x, y) != (sx, sy):
                    result.append(line(x, y, sx, sy))
                x, y = sx, sy
                continue
        elif command is None:
            raise ValueError("path data does not start with a command")
        upper = command.upper()
        count = ARGS[upper]
        args = []
        while len(args) < count and i < len(tokens) and tokens[i][1] is not None:
            args.append(float(tokens[i][1]))
            i += 1
        if len(args) < count:
            break
        relative = command.islower()
        if upper == "M":
            x, y = (x + args[0], y + args[1]) if relative else (args[0], args[1])
            sx, sy = x, y
            command = "l" if relative else "L"  # further pairs are line-tos
            continue
        if upper in ("L", "T"):
            nx, ny = (x + args[0], y + args[1]) if relative else (args[0], args[1])
        elif upper == "H":
            nx, ny = (x + args[0] if relative else args[0]), y
        elif upper == "V":
            nx, ny = x, (y + args[0] if relative else args[0])
        elif upper == "A":
            nx, ny = (x + args[5], y + args[6]) if relative else (args[5], args[6])
            found = _endpoint_arc(x, y, args[0], args[1], bool(args[3]), bool(args[4]), nx, ny)
            if found is not None:
                result.append(found)
            elif (nx, ny) != (x, y):
                skipped["elliptical arc"] += 1
            x, y = nx, ny
            continue
        else:  # C, S, Q: a curve; we only follow the pen
            nx, ny = (x + args[-2], y + args[-1]) if relative else (args[-2], args[-1])
            skipped["curve"] += 1
            x, y = nx, ny
            continue
        if upper == "T":
            skipped["curve"] += 1
        elif (nx, ny) != (x, y):
            result.append(line(x, y, nx, ny))
        x, y = nx, ny
    return result


def _endpoint_arc(x1: float, y1: float, rx: float, ry: float, large: bool, sweep: bool,
                  x2: float, y2: float) -> Primitive | None:
    """SVG's endpoint arc (implementation notes F.6.5, no rotation) as centre + angles, when it is
    circular; `sweep` = 1 is the growing-angle direction in y-down coordinates."""
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0 or (x1, y1) == (x2, y2):
        return line(x1, y1, x2, y2) if (x1, y1) != (x2, y2) else None
    if abs(rx - ry) > 1e-6 * max(rx, ry):
        return None  # elliptical
    r = rx
    dx, dy = (x1 - x2) / 2, (y1 - y2) / 2
    half = math.hypot(dx, dy)
    if half > r:  # radius too small: scaled up, as the spec says
        r = half
    factor = math.sqrt(max(0.0, r * r - half * half)) / half
    sign = -1 if large == sweep else 1
    cx, cy = (x1 + x2) / 2 + sign * factor * dy, (y1 + y2) / 2 - sign * factor * dx
    a1 = math.degrees(math.atan2(y1 - cy, x1 - cx))
    a2 = math.degrees(math.atan2(y2 - cy, x2 - cx))
    if sweep:
        return arc(cx, cy, r, a1, a1 + (a2 - a1) % 360.0)
    return arc(cx, cy, r, a2, a2 + (a1 - a2) % 360.0)
