"""What each result view shows, computed from the job's `output` (as the API returned it).

The API's outputs name files by URLs on the API; the browser never talks to the API (the token
and the tunnel stay on the server), so every file is shown through the front's own proxy route.
The views here are plain dicts for the templates: regions (pages with boxes, crops), vectorization
(primitives per image), sorter (annotated photos, groups, moves), similarity (pairs side by side,
clusters, the per-document-pair files) and a generic one for any demo.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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
    builders = {"regions": regions_view, "vectorization": vectorization_view, "sorter": sorter_view,
                "similarity": similarity_view}
    builder = builders.get(app)
    if builder is None:
        if "annotations" in output:
            builder = regions_view
        elif "documents" in output and "zips" in output:
            builder = vectorization_view
        elif "pairs" in output and "per_document" in output:
            builder = similarity_view
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
def vectorization_view(job: dict, output: dict, file_url: FileUrl, input_url: InputUrl) -> dict:
    """Images with their counts and files. The primitives themselves are in each image's JSON file
    (not in the job's output, which stays small): the route reads it through the API and fills
    `primitives` with `primitive_shapes`."""
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
    def point(deg: float) -> tuple[float, float]:
        t = math.radians(deg)
        return g["cx"] + g["r"] * math.cos(t), g["cy"] + g["r"] * math.sin(t)

    start, end, r = float(g["start"]), float(g["end"]), float(g["r"])
    x0, y0 = point(start)
    if end - start >= 359.99:
        xm, ym = point(start + 180)
        half = f"A {r:.2f} {r:.2f} 0 1 1"
        return f"M {x0:.2f} {y0:.2f} {half} {xm:.2f} {ym:.2f} {half} {x0:.2f} {y0:.2f}"
    x1, y1 = point(end)
    return f"M {x0:.2f} {y0:.2f} A {r:.2f} {r:.2f} 0 {1 if end - start > 180 else 0} 1 {x1:.2f} {y1:.2f}"


# -- sorter ------------------------------------------------------------------------------------------------
def sorter_view(job: dict, output: dict, file_url: FileUrl, input_url: InputUrl) -> dict:
    """The sorter's result as api/demos/sorter/pipeline.py returns it: `images` (the annotated photo
    per photo: image "<doc>/<name>", width, height, picture URL), `contact_sheet`, `detections`
    (image, class, score, box in photo pixels), `items` (merged objects: id, detections, group,
    target), `groups` ({group, items, containers}), `pairings`, `commands`, `warnings`,
    `coordinates` ("arm": servo pulse widths, "image": pixels). Each group's row of crops is drawn
    in the browser from the photo itself (an SVG whose viewBox is the item's box), since the demo
    writes no crop files."""
    app, tracking_id = job["app"], job["tracking_id"]
    photos = {}
    for entry in output.get("images") or []:
        key = str(entry["image"])
        doc = key.split("/", 1)[0]
        picture = file_url(relpath_of(str(entry.get("picture", "")), app, tracking_id))
        photos[key] = {"key": key, "width": float(entry["width"]), "height": float(entry["height"]),
                       "picture": picture, "original": input_url(doc)}
    detections = {d["id"]: d for d in output.get("detections") or [] if isinstance(d, dict) and "id" in d}
    items = {it["id"]: it for it in output.get("items") or [] if isinstance(it, dict) and "id" in it}
    groups: list[dict] = []
    for group in output.get("groups") or []:
        crops = []
        for item_id in group.get("items") or []:
            item = items.get(item_id) or {}
            det = detections.get((item.get("detections") or [None])[0])
            photo = photos.get(str(det.get("image"))) if det else None
            if not det or not photo:
                continue
            x0, y0, x1, y1 = (float(v) for v in det["box"])
            crops.append({"item": item_id, "href": photo["original"] or photo["picture"],
                          "width": photo["width"], "height": photo["height"],
                          "box": (x0, y0, max(1.0, x1 - x0), max(1.0, y1 - y0)), "score": float(det.get("score", 0))})
        number = int(group.get("group", len(groups)))
        groups.append({"name": str(number + 1), "containers": [f"C{c}" for c in group.get("containers") or []],
                       "count": len(group.get("items") or []), "crops": crops})
    unit = {"arm": "servo pulse widths", "image": "image pixels"}.get(str(output.get("coordinates")),
                                                                      "arm or image coordinates")
    moves = []
    for pairing in output.get("pairings") or []:
        moves.append({"item": pairing.get("item"), "group": int(pairing.get("group", -1)) + 1,
                      "container": f"C{pairing.get('container')}",
                      "from": _position(pairing.get("item_position")),
                      "to": _position(pairing.get("container_position")),
                      "frame": str(pairing.get("frame", ""))})
    if not moves:
        for command in output.get("commands") or []:
            if isinstance(command, (list, tuple)) and len(command) == 2:
                moves.append({"item": "", "group": "", "container": "", "from": _position(command[0]),
                              "to": _position(command[1]), "frame": ""})
    sheet = relpath_of(str(output.get("contact_sheet") or ""), app, tracking_id)
    return {"kind": "sorter", "photos": list(photos.values()), "sheet": file_url(sheet) if sheet else "",
            "groups": groups, "moves": moves, "unit": unit, "warnings": [str(w) for w in output.get("warnings") or []],
            "n_detections": len(detections), "n_items": len(items),
            "n_containers": len(output.get("containers") or []), "embedding": str(output.get("embedding", ""))}


def _position(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return "" if value is None else str(value)


# -- similarity --------------------------------------------------------------------------------------------
# The contact sheet's layout, as api/demos/similarity/pictures.py draws it (the front imports nothing
# from the API; tests/test_front.py checks these against it): one row per best pair, in the order of
# the output's `pairs`, each row a title line and two CELL-px cells with the matched keypoints joined.
SHEET_CELL, SHEET_GAP, SHEET_TITLE = 320, 16, 22
SHEET_WIDTH = 2 * SHEET_CELL + 3 * SHEET_GAP
SHEET_ROW = SHEET_CELL + SHEET_TITLE + SHEET_GAP
CONTACT_PAIRS = 12  # the demo's default `contact_pairs`


def sheet_row_box(row: int) -> tuple[int, int, int, int]:
    """The viewBox (x, y, width, height) of the contact sheet's row `row`: both items and their lines."""
    return 0, SHEET_GAP + row * SHEET_ROW, SHEET_WIDTH, SHEET_TITLE + SHEET_CELL


def similarity_view(job: dict, output: dict, file_url: FileUrl, input_url: InputUrl) -> dict:
    """The similarity demo's result as api/demos/similarity/job.py returns it: `summary`, `pairs`
    (the best ones: a, b, doc_a, doc_b, image_a, image_b, crop_a, crop_b, score, inliers, matches,
    coverage, retrieval, transform {type, mirror, scale, rotation, matrix}), `clusters` (lists of
    item keys "<doc>/<image>"), `pairs_url`, `per_document` ({"<doc_a>-<doc_b>": URL}) and
    `contact_sheet`. The first `contact_pairs` pairs are the sheet's rows, so each is shown side by
    side from the sheet itself (an SVG whose viewBox is the row, keypoint lines included): the items
    may be crops of another job or pages of a many-page document, which the front has no file of."""
    app, tracking_id = job["app"], job["tracking_id"]
    sheet_rel = relpath_of(str(output.get("contact_sheet") or ""), app, tracking_id)
    sheet = file_url(sheet_rel) if sheet_rel else ""
    params = job.get("parameters") or {}
    pairs = [p for p in output.get("pairs") or [] if isinstance(p, dict)]
    rows = min(len(pairs), int(params.get("contact_pairs", CONTACT_PAIRS))) if sheet else 0
    shown = []
    for k, pair in enumerate(pairs):
        transform = pair.get("transform") if isinstance(pair.get("transform"), dict) else {}
        sides = []
        for side in ("a", "b"):
            doc, image = str(pair.get(f"doc_{side}", "")), str(pair.get(f"image_{side}", ""))
            crop = pair.get(f"crop_{side}")
            sides.append({"key": str(pair.get(side, f"{doc}/{image}")), "doc": doc, "image": image,
                          "crop": "" if crop is None else str(crop), "original": input_url(doc) if doc else ""})
        shown.append({
            "rank": k + 1, "a": sides[0], "b": sides[1], "score": float(pair.get("score", 0)),
            "inliers": int(pair.get("inliers", 0)), "matches": pair.get("matches"),
            "coverage": pair.get("coverage"), "retrieval": pair.get("retrieval"),
            "transform": {"type": str(transform.get("type", "")), "mirror": bool(transform.get("mirror")),
                          "scale": transform.get("scale"), "rotation": transform.get("rotation")} if transform else {},
            "row": sheet_row_box(k) if k < rows else None,
        })
    clusters = [[str(key) for key in cluster] for cluster in output.get("clusters") or []
                if isinstance(cluster, (list, tuple))]
    pairs_rel = relpath_of(str(output.get("pairs_url") or ""), app, tracking_id)
    files = [{"name": str(name), "url": file_url(relpath_of(str(url), app, tracking_id))}
             for name, url in sorted((output.get("per_document") or {}).items())]
    summary = output.get("summary") or {}
    return {"kind": "similarity", "pairs": shown, "clusters": clusters, "sheet": sheet,
            "sheet_width": SHEET_WIDTH, "sheet_height": SHEET_GAP + max(rows, 1) * SHEET_ROW,
            "pairs_json": file_url(pairs_rel) if pairs_rel else "", "files": files, "summary": summary,
            "total_pairs": int(summary.get("pairs", len(shown))),
            "total_clusters": int(summary.get("clusters", len(clusters)))}
