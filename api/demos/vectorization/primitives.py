"""The three primitives a diagram is made of (lines, circles, arcs) and their JSON form.

Everything here is in image pixels, x to the right and y down. An arc runs from `start` to `end`
degrees with the angle growing clockwise on screen (the y-down convention of OpenCV and SVG's
sweep-flag 1), point(θ) = (cx + r cos θ, cy + r sin θ); 0 ≤ start < 360 and start < end ≤ start + 360.
Keeping one convention in one module is what lets the detector, the SVG writer, the SVG/DXF
readers and the evaluator agree on what an arc is.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TYPES = ("line", "circle", "arc")


@dataclass
class Primitive:
    """One detected or ground-truth primitive; `geometry` keys depend on `type`:
    line {x1, y1, x2, y2}, circle {cx, cy, r}, arc {cx, cy, r, start, end}."""

    type: str
    geometry: dict[str, float]
    confidence: float = 1.0
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {"id": self.id, "type": self.type,
                "geometry": {k: round(float(v), 2) for k, v in self.geometry.items()},
                "confidence": round(float(self.confidence), 3)}
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Primitive:
        kind = data.get("type")
        if kind not in TYPES:
            raise ValueError(f"unknown primitive type {kind!r}")
        geometry = {k: float(v) for k, v in data["geometry"].items()}
        if kind == "arc":
            geometry = normalised_arc(**geometry)
        return cls(kind, geometry, float(data.get("confidence", 1.0)), str(data.get("id", "")))

    def points(self, step: float = 2.0) -> list[tuple[float, float]]:
        """Points along the primitive about `step` px apart (to draw it, or measure its ink)."""
        return sample(self.type, self.geometry, step)

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the primitive's centre line."""
        g = self.geometry
        if self.type == "line":
            return min(g["x1"], g["x2"]), min(g["y1"], g["y2"]), max(g["x1"], g["x2"]), max(g["y1"], g["y2"])
        if self.type == "circle":
            return g["cx"] - g["r"], g["cy"] - g["r"], g["cx"] + g["r"], g["cy"] + g["r"]
        xs, ys = zip(*self.points(step=max(1.0, g["r"] * math.pi / 180)), strict=True)
        return min(xs), min(ys), max(xs), max(ys)


def line(x1: float, y1: float, x2: float, y2: float, confidence: float = 1.0) -> Primitive:
    return Primitive("line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, confidence)


def circle(cx: float, cy: float, r: float, confidence: float = 1.0) -> Primitive:
    return Primitive("circle", {"cx": cx, "cy": cy, "r": r}, confidence)


def arc(cx: float, cy: float, r: float, start: float, end: float, confidence: float = 1.0) -> Primitive:
    return Primitive("arc", normalised_arc(cx, cy, r, start, end), confidence)


def normalised_arc(cx: float, cy: float, r: float, start: float, end: float) -> dict[str, float]:
    """The arc with 0 ≤ start < 360 and start < end ≤ start + 360 (same points, same direction)."""
    sweep = (end - start) % 360.0
    if sweep == 0 and end != start:
        sweep = 360.0
    start = start % 360.0
    return {"cx": cx, "cy": cy, "r": r, "start": start, "end": start + sweep}


def arc_through(a: tuple[float, float], m: tuple[float, float], b: tuple[float, float]) -> Primitive:
    """The circular arc from `a` through `m` to `b` (y down), or the line a–b when they are collinear."""
    (ax, ay), (mx, my), (bx, by) = a, m, b
    d = 2 * (ax * (my - by) + mx * (by - ay) + bx * (ay - my))
    if abs(d) < 1e-12:
        return line(ax, ay, bx, by)
    ux = ((ax ** 2 + ay ** 2) * (my - by) + (mx ** 2 + my ** 2) * (by - ay) + (bx ** 2 + by ** 2) * (ay - my)) / d
    uy = ((ax ** 2 + ay ** 2) * (bx - mx) + (mx ** 2 + my ** 2) * (ax - bx) + (bx ** 2 + by ** 2) * (mx - ax)) / d
    r = math.hypot(ax - ux, ay - uy)
    sa, sm, sb = (math.degrees(math.atan2(y - uy, x - ux)) for x, y in (a, m, b))
    if (sm - sa) % 360 < (sb - sa) % 360:
        return arc(ux, uy, r, sa, sa + (sb - sa) % 360)
    return arc(ux, uy, r, sb, sb + (sa - sb) % 360)


def arc_point(g: dict[str, float], degrees: float) -> tuple[float, float]:
    t = math.radians(degrees)
    return g["cx"] + g["r"] * math.cos(t), g["cy"] + g["r"] * math.sin(t)


def same_circle(a: dict[str, float], b: dict[str, float], centres: float, radii: float) -> bool:
    """Whether two circles' (or arcs') geometries are one: centres within `centres` px of each
    other, radii within `radii` px."""
    return math.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"]) <= centres and abs(a["r"] - b["r"]) <= radii


def length(kind: str, g: dict[str, float]) -> float:
    if kind == "line":
        return math.hypot(g["x2"] - g["x1"], g["y2"] - g["y1"])
    if kind == "circle":
        return 2 * math.pi * g["r"]
    return math.radians(g["end"] - g["start"]) * g["r"]


def sample(kind: str, g: dict[str, float], step: float = 2.0) -> list[tuple[float, float]]:
    n = _samples(kind, g, step)
    if kind == "line":
        return [(g["x1"] + (g["x2"] - g["x1"]) * i / (n - 1), g["y1"] + (g["y2"] - g["y1"]) * i / (n - 1))
                for i in range(n)]
    start, end = (0.0, 360.0) if kind == "circle" else (g["start"], g["end"])
    return [arc_point(g, start + (end - start) * i / (n - 1)) for i in range(n)]


def sample_array(kind: str, g: dict[str, float], step: float = 2.0) -> np.ndarray:
    """`sample` as an N×2 array, the same values; lines without a Python loop (measuring ink along
    primitives samples hundreds of them a page)."""
    if kind != "line":
        return np.array(sample(kind, g, step))
    i = np.arange(_samples(kind, g, step), dtype=np.float64)
    n = len(i)
    return np.column_stack([g["x1"] + (g["x2"] - g["x1"]) * i / (n - 1), g["y1"] + (g["y2"] - g["y1"]) * i / (n - 1)])


def _samples(kind: str, g: dict[str, float], step: float) -> int:
    return max(2, int(math.ceil(length(kind, g) / max(step, 1e-3))) + 1)


def counts(primitives: Iterable[Primitive]) -> dict[str, int]:
    result = {kind: 0 for kind in TYPES}
    for p in primitives:
        result[p.type] += 1
    return result
