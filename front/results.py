"""What each result view shows, computed from the job's `output` (as the API returned it).

The API's outputs name files by URLs on the API; the browser never talks to the API (the token
and the tunnel stay on the server), so every file is shown through the front's own proxy route.
The views here are plain dicts for the templates: regions (pages with boxes, crops), vectorization
(primitives per image), sorter (annotated photos, groups, moves) and a generic one for any demo.
"""
from __future__ import annotations

import re
from typing import Any, Callable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
PRIMITIVE_TYPES = ("line", "circle", "arc")

FileUrl = Callable[[str], str]    # result relpath → URL on the front
InputUrl = Callable[[str], str]   # document uid → URL of the image the front kept, or ""


def relpath_of(value: str, app: str, tracking_id: str) -> str:
    """The result-relative path in one of the API's result URLs (or a relative path as given)."""
    marker = f"/{app}/{tracking_id}/result/"
    if marker in value:
        return value.split(marker, 1)[1].split("?", 1)[0]
    if value.startswith(("http://", "https://", "/")):
        return ""
    return value


def view_for(app: str, job: dict, file_url: FileUrl, input_url: InputUrl) -> dict:
    """{"kind": template name, ...} for the job's result; "generic" when the output has an unknown shape."""
    output = job.get("output")
    if not isinstance(output, dict):
        return {"kind": "generic", "output": output}
    builders = {"regions": regions_view, "vectorization": vectorization_view, "sorter": sorter_view}
    builder = builders.get(app)
    if builder is None:
        if "annotations" in output:
            builder = regions_view
        elif "documents" in output and "zips" in output:
            builder = vectorization_view
    if builder is not None:
        try:
            return builder(job, output, file_url, input_url)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # the demo's output changed shape
            return {"kind": "generic", "output": output, "note": f"this result could not be drawn ({exc!r})"}
    return {"kind": "generic", "output": output}


# -- regions ---------------------------------------------------------------------------------------------
def regions_view(job: dict, output: dict, file_url: FileUrl, input_url: InputUrl) -> dict:
    crops_on = (job.get("parameters") or {}).get("crops", True)
    pages = []
    for doc, records in output["annotations"].items():
        for record in records:
            page = str(record["source"])
            width, height = float(record["width"]), float(record["height"])
            preview = file_url(f"{doc}/previews/{page}.jpg")
            original = input_url(doc) if len(records) == 1 else ""
            boxes = []
            for crop in record.get("crops", []):
                a = crop["absolute"]
                boxes.append({
                    "crop_id": crop["crop_id"], "label": str(crop.get("label", "")),
                    "confidence": float(crop.get("confidence", 0)),
                    "x": a["x1"], "y": a["y1"], "w": a["width"], "h": a["height"],
                    "crop_url": file_url(f"{doc}/crops/{crop['crop_id']}.jpg") if crops_on else "",
                })
            pages.append({"doc": doc, "page": page, "width": width, "height": height,
                          "image": original or preview, "image_is_preview": not original, "preview": preview,
                          "annotations": file_url(f"{doc}/annotations.json"), "boxes": boxes})
    return {"kind": "regions", "pages": pages, "summary": output.get("summary") or {},
            "model": output.get("model", ""), "boxes": sum(len(p["boxes"]) for p in pages)}


# -- vectorization -----------------------------------------------------------------------------------------
def vectorization_view(job: dict, output: dict, file_url: FileUrl, input_url: InputUrl,
                       read_json: Callable[[str], Any] | None = None) -> dict:
    """Images with their primitives; the primitives themselves come from each image's JSON file,
    which the route reads through the API (`read_json`) and passes in as `primitives`."""
    app, tracking_id = job["app"], job["tracking_id"]
    images = []
    for doc, entries in output["documents"].items():
        for entry in entries:
            json_rel = relpath_of(str(entry["json"]), app, tracking_id)
            images.append({
                "doc": doc, "image": str(entry["image"]), "width": float(entry["width"]),
                "height": float(entry["height"]), "counts": entry.get("counts") or {},
                "json_rel": json_rel, "json": file_url(json_rel),
                "svg": file_url(relpath_of(str(entry["svg"]), app, tracking_id)),
                "preview": file_url(relpath_of(str(entry["preview"]), app, tracking_id)),
                "original": input_url(doc) if len(entries) == 1 else "",
                "primitives": [],
            })
    zips = {doc: file_url(relpath_of(str(url), app, tracking_id)) for doc, url in (output.get("zips") or {}).items()}
    summary = output.get("summary") or {}
    return {"kind": "vectorization", "images": images, "zips": zips, "summary": summary,
            "total": sum((summary.get("primitives") or {}).values()) if summary.get("primitives") else None,
            "types": PRIMITIVE_TYPES}


def primitive_shapes(data: dict) -> list[dict]:
    """SVG element descriptions of an image's primitives JSON: {"type", "tag", "attrs", "confidence", "id"}."""
    shapes = []
    for p in data.get("primitives", []):
        g, kind = p.get("geometry") or {}, p.get("type")
        if kind == "line":
            tag, attrs = "line", {"x1": g["x1"], "y1": g["y1"], "x2": g["x2"], "y2": g["y2"]}
        elif kind == "circle":
            tag, attrs = "circle", {"cx": g["cx"], "cy": g["cy"], "r": g["r"]}
        elif kind == "arc":
            tag, attrs = "path", {"d": arc_path(g)}
        else:
            continue
        shapes.append({"type": kind, "tag": tag, "attrs": attrs, "id": str(p.get("id", "")),
                       "confidence": float(p.get("confidence", 1.0))})
    return shapes


def arc_path(g: dict) -> str:
    """An SVG path for an arc from `start` to `end` degrees, angles growing clockwise on screen
    (y down), as the vectorization demo defines them; a full turn is drawn as two halves."""
    import math

    def point(deg: float) -> tuple[float, float]:
        t = math.radians(deg)
        return g["cx"] + g["r"] * math.cos(t), g["cy"] + g["r"] * math.sin(t)

    start, end, r = float(g["start"]), float(g["end"]), float(g["r"])
    x0, y0 = point(start)
    if end - start >= 359.99:
        xm, ym = point(start + 180)
        return f"M {x0:.2f} {y0:.2f} A {r:.2f} {r:.2f} 0 1 1 {xm:.2f} {ym:.2f} A {r:.2f} {r:.2f} 0 1 1 {x0:.2f} {y0:.2f}"
    x1, y1 = point(end)
    return f"M {x0:.2f} {y0:.2f} A {r:.2f} {r:.2f} 0 {1 if end - start > 180 else 0} 1 {x1:.2f} {y1:.2f}"


# -- sorter ------------------------------------------------------------------------------------------------
def sorter_view(job: dict, output: dict, file_url: FileUrl, input_url: InputUrl) -> dict:
    """The sorter's result as far as its output shows it: annotated photos, groups as rows of crops,
    the list of moves, warnings. Files are recognised by name (annotated / contact sheet / crops),
    since the demo's output keys were still changing when this view was written."""
    app, tracking_id = job["app"], job["tracking_id"]
    found = sorted({rel for value in _strings(output) if (rel := relpath_of(value, app, tracking_id))
                    and rel.lower().endswith(IMAGE_SUFFIXES)})
    annotated = [r for r in found if re.search(r"annot", r, re.I)]
    sheets = [r for r in found if re.search(r"contact|sheet", r, re.I)]
    groups = []
    raw_groups = output.get("groups")
    if isinstance(raw_groups, dict):
        raw_groups = [{"group": k, **(v if isinstance(v, dict) else {"items": v})} for k, v in raw_groups.items()]
    for index, group in enumerate(raw_groups or []):
        if not isinstance(group, dict):
            group = {"items": group}
        items = group.get("items") or group.get("members") or []
        crops = [file_url(rel) for rel in sorted({relpath_of(s, app, tracking_id) for s in _strings(items)})
                 if rel and rel.lower().endswith(IMAGE_SUFFIXES)]
        groups.append({"name": str(group.get("group", group.get("id", index))), "crops": crops,
                       "count": len(items) if isinstance(items, list) else 0,
                       "container": group.get("container"), "colour": group.get("colour") or group.get("color")})
    moves = []
    for move in output.get("commands") or output.get("moves") or []:
        if isinstance(move, (list, tuple)) and len(move) == 2:
            moves.append({"item": _position(move[0]), "container": _position(move[1])})
        elif isinstance(move, dict):
            moves.append({"item": _position(move.get("item") or move.get("from")),
                          "container": _position(move.get("container") or move.get("to"))})
    warnings = [str(w) for w in output.get("warnings") or []]
    return {"kind": "sorter", "annotated": [file_url(r) for r in annotated], "sheets": [file_url(r) for r in sheets],
            "groups": groups, "moves": moves, "warnings": warnings,
            "detections": len(output.get("detections") or []), "pairings": output.get("pairings")}


def _position(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return "" if value is None else str(value)


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
