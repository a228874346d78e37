"""From a position in a photo to the arm's servo positions: SorterBot's polar conversion.

SorterBot's camera sits on the arm and turns with its base. Each photo is taken at a known base
rotation (a servo pulse width; SorterBot put it in the photo's file name, e.g. `1500.jpg`). The arm's
base lies `arm_radius` pixels below the photo's centre, so a point (x, y) in a photo is at

    a = |x - w/2|                       sideways distance from the photo's centre line
    b = h/2 - y                         distance above the photo's centre
    gamma = atan(a / (b + arm_radius))  its angle from the photo's centre line, in degrees
    dist  = sqrt(a² + (b + arm_radius)²) its distance from the base, in pixels

and the two servos that reach it are

    servo_0 = base_pw ∓ gamma · rotation_range_as_pw / rotation_range_as_deg   (− right of centre)
    servo_1 = dist_min_as_pw + (dist_max_as_pw − dist_min_as_pw) · (dist − (arm_radius − h/2)) / h

i.e. servo_1 moves linearly from `dist_min_as_pw` at the photo's bottom edge to `dist_max_as_pw` at
its top edge. This follows SorterBot Cloud's `object_to_polar` (simonszalai/sorterbot_cloud,
src/utils/coord_conversion.py), with two deliberate differences: box centres are not truncated to
integers, and atan2/hypot are used, which equal SorterBot's atan and a/sin(gamma) wherever the
point is in front of the base (b + arm_radius > 0) and stay defined at a = 0.

`arm_constants` (a JSON object):
    arm_radius             pixels from the photo's centre to the arm's base (required)
    rotation_range_as_pw   the base servo's pulse-width range ...        (required)
    rotation_range_as_deg  ... and the angle it covers, in degrees       (required)
    dist_min_as_pw         servo_1 pulse width reaching the photo's bottom edge (required)
    dist_max_as_pw         servo_1 pulse width reaching the photo's top edge    (required)
    base_angles            optional {"image name": base pulse width}; without it, a photo whose
                           name is a number (SorterBot's `1500.jpg`) is taken at that pulse width
    base_pw                optional base pulse width for every other photo
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

REQUIRED = ("arm_radius", "rotation_range_as_pw", "rotation_range_as_deg", "dist_min_as_pw", "dist_max_as_pw")
OPTIONAL = ("base_angles", "base_pw")


def parse_arm_constants(value: Any) -> dict | None:
    """The validated constants, or None when not given ({} or ""); ValueError with a plain message
    otherwise. The demo's `Param(dict, parse=...)` hook: the API has already read a JSON text into
    a dict; a string is still read here for callers outside the API (bench, tests)."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError("must be a JSON object such as "
                             '{"arm_radius": 1000, "rotation_range_as_pw": 1000, ...}') from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    unknown = sorted(set(value) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"unknown constant {unknown[0]!r}; known: {', '.join(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if k not in value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key in REQUIRED + ("base_pw",):
        if key not in value:
            continue
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{key} must be a number")
        out[key] = float(v)
    if out["rotation_range_as_deg"] == 0:
        raise ValueError("rotation_range_as_deg must not be 0")
    angles = value.get("base_angles", {})
    if not isinstance(angles, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in angles.values()):
        raise ValueError("base_angles must map image names to numbers")
    out["base_angles"] = {str(k): float(v) for k, v in angles.items()}
    return out


def base_angle(constants: dict, image_name: str) -> float | None:
    """The base servo's pulse width when this photo was taken; None when it cannot be known."""
    angles = constants.get("base_angles", {})
    stem = Path(image_name).stem
    for key in (image_name, stem):
        if key in angles:
            return angles[key]
    try:
        return float(stem)
    except ValueError:
        return constants.get("base_pw")


def to_polar(constants: dict, base_pw: float, width: float, height: float, x: float, y: float) -> tuple[float, float]:
    """(servo_0, servo_1) pulse widths that reach photo position (x, y) (see the module doc)."""
    half_w, half_h = width / 2, height / 2
    radius = constants["arm_radius"]
    a = abs(half_w - x)
    b = half_h - y
    gamma = math.degrees(math.atan2(a, b + radius))
    dist = math.hypot(a, b + radius)
    delta = constants["rotation_range_as_pw"] * gamma / constants["rotation_range_as_deg"]
    servo_0 = base_pw - delta if x > half_w else base_pw + delta
    span = constants["dist_max_as_pw"] - constants["dist_min_as_pw"]
    servo_1 = span * (dist - (radius - half_h)) / height + constants["dist_min_as_pw"]
    return servo_0, servo_1


def from_polar(constants: dict, base_pw: float, width: float, height: float, servo_0: float,
               servo_1: float) -> tuple[float, float]:
    """The photo position (x, y) that `to_polar` maps to (servo_0, servo_1): its inverse, used to
    place one table's objects in several overlapping photos."""
    half_w, half_h = width / 2, height / 2
    radius = constants["arm_radius"]
    delta = servo_0 - base_pw
    gamma = math.radians(abs(delta) * constants["rotation_range_as_deg"] / constants["rotation_range_as_pw"])
    span = constants["dist_max_as_pw"] - constants["dist_min_as_pw"]
    dist = (servo_1 - constants["dist_min_as_pw"]) * height / span + (radius - half_h)
    a = dist * math.sin(gamma)
    b = dist * math.cos(gamma) - radius
    x = half_w - a if delta > 0 else half_w + a
    return x, half_h - b
