"""Ground truth from CAD drawings (DXF, read with ezdxf): LINE, CIRCLE, ARC and (LW)POLYLINE.

DXF's y axis points up and its arcs run counter-clockwise; images have y down. With the image
`height`, y becomes height − y and each arc's angles are mirrored (start = −end, end = −start), so
the same points are described in our convention (primitives.py). Without a height, coordinates are
taken as they are. Units are assumed to be pixels (draw or export the CAD file at that scale).
Polyline segments with a bulge are arcs. What is drawn but is none of our three primitives
(ELLIPSE, SPLINE, HATCH, INSERT, …) is counted in `DxfDrawing.skipped`, never silently dropped;
ellipses and texts are kept apart so a renderer can draw them as clutter that is not truth.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import ezdxf
from ezdxf.math import bulge_to_arc

from .primitives import Primitive, arc, circle, line

NOT_DRAWN = {"POINT", "VIEWPORT", "ATTDEF"}  # nothing a reader of the image could see as a stroke


@dataclass
class DxfDrawing:
    primitives: list[Primitive]
    skipped: Counter = field(default_factory=Counter)  # DXF type → how many were not primitives
    texts: list[tuple[float, float, float, str]] = field(default_factory=list)  # x, y (baseline), height, text
    ellipses: list[list[tuple[float, float]]] = field(default_factory=list)  # as polylines, same frame


def read_dxf(path: Path | str, height: float | None = None) -> list[Primitive]:
    return read_dxf_drawing(path, height).primitives


def read_dxf_drawing(path: Path | str, height: float | None = None) -> DxfDrawing:
    try:
        document = ezdxf.readfile(str(path))
    except (OSError, ezdxf.DXFError) as exc:
        raise ValueError(f"{path}: not a readable DXF file ({exc})") from None
    flip = height is not None

    def y(value: float) -> float:
        return height - value if flip else value

    def make_arc(cx: float, cy: float, r: float, start: float, end: float) -> Primitive:
        if flip:
            return arc(cx, y(cy), r, -end, -start)
        return arc(cx, cy, r, start, end)

    drawing = DxfDrawing([])
    result = drawing.primitives
    for entity in document.modelspace():
        kind = entity.dxftype()
        if kind == "LINE":
            s, e = entity.dxf.start, entity.dxf.end
            result.append(line(s.x, y(s.y), e.x, y(e.y)))
        elif kind == "CIRCLE":
            c = entity.dxf.center
            result.append(circle(c.x, y(c.y), entity.dxf.radius))
        elif kind == "ARC":
            c = entity.dxf.center
            result.append(make_arc(c.x, c.y, entity.dxf.radius, entity.dxf.start_angle, entity.dxf.end_angle))
        elif kind in ("LWPOLYLINE", "POLYLINE"):
            if kind == "LWPOLYLINE":
                vertices = [(p[0], p[1], p[4]) for p in entity.get_points("xyseb")]
                closed = entity.closed
            else:
                vertices = [(v.dxf.location.x, v.dxf.location.y, v.dxf.get("bulge", 0.0)) for v in entity.vertices]
                closed = entity.is_closed
            pairs = list(pairwise(vertices))
            if closed and len(vertices) > 2:
                pairs.append((vertices[-1], vertices[0]))
            for (x1, y1, bulge), (x2, y2, _) in pairs:
                if (x1, y1) == (x2, y2):
                    continue
                if abs(bulge) < 1e-9:
                    result.append(line(x1, y(y1), x2, y(y2)))
                    continue
                centre, start, end, radius = bulge_to_arc((x1, y1), (x2, y2), bulge)
                result.append(make_arc(centre.x, centre.y, radius, math.degrees(start), math.degrees(end)))
        elif kind in ("TEXT", "MTEXT"):
            drawing.skipped[kind] += 1
            _add_text(drawing, entity, y)
        elif kind == "ELLIPSE":
            drawing.skipped[kind] += 1
            drawing.ellipses.append([(v.x, y(v.y)) for v in entity.flattening(0.01)])
        elif kind not in NOT_DRAWN:
            drawing.skipped[kind] += 1
    return drawing


def _add_text(drawing: DxfDrawing, entity, y) -> None:
    try:
        if entity.dxftype() == "TEXT":
            text, size = entity.dxf.text, entity.dxf.height
        else:
            text, size = entity.plain_text(), entity.dxf.char_height
        at = entity.dxf.insert
    except Exception:  # noqa: BLE001 - a malformed text entity is only clutter
        return
    for i, row in enumerate(str(text).splitlines() or [""]):
        if row.strip():
            drawing.texts.append((float(at.x), y(float(at.y)) + 1.4 * i * float(size), float(size), row))
