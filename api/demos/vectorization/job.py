"""One vectorization job, worker side: every image through the backend, its SVG, JSON and
preview written, and a zip of SVGs per document once the document is done."""
from __future__ import annotations

import time
import zipfile
from typing import Any

import cv2
import numpy as np

from .backends import make_backend
from .geometric import Settings
from .preview import draw_preview
from .primitives import counts
from .svg import to_svg

SETTING_PARAMS = ("tolerance", "min_length", "min_radius", "min_size", "sensitivity", "max_gap", "min_support")


def settings_of(params: dict) -> Settings:
    return Settings(**{name: params[name] for name in SETTING_PARAMS if name in params})


def run_job(job: Any, params: dict) -> dict:
    backend = make_backend(params.get("backend", "geometric"), settings_of(params))
    documents: dict[str, list[dict]] = {}
    zips: dict[str, str] = {}
    svgs: dict[str, list[str]] = {}
    totals = {"line": 0, "circle": 0, "arc": 0}
    current = None
    for item in job.images():
        src = item.source
        if current is not None and src.doc_uid != current:
            zips[current] = _zip_document(job, current, svgs.get(current, []))
        current = src.doc_uid
        rgb = np.asarray(item.image.convert("RGB"))
        height, width = rgb.shape[:2]
        started = time.perf_counter()
        try:
            detection = detect_at_most(backend, rgb, params.get("max_side") or 0)
        except (cv2.error, ValueError, np.linalg.LinAlgError, MemoryError) as exc:
            job.error(src, f"vectorization failed: {exc}")
            job.advance()
            continue
        job.timing("detect_s", time.perf_counter() - started)
        for stage, seconds in detection.timings.items():
            job.timing(stage, seconds)
        base = f"{src.doc_uid}/{src.name}"
        primitives = detection.primitives
        job.write(f"{base}.svg", to_svg(primitives, width, height, detection.stroke_width,
                                        title=f"{src.doc_uid}/{src.name}"))
        job.write_json(f"{base}.json", {
            "image": src.name, "doc_uid": src.doc_uid, "width": width, "height": height,
            "backend": backend.name, "stroke_width": round(detection.stroke_width, 2),
            "primitives": [p.to_dict() for p in primitives]})
        ok, png = cv2.imencode(".png", draw_preview(rgb, primitives)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if ok:
            job.write(f"{base}.png", png.tobytes())
        svgs.setdefault(src.doc_uid, []).append(f"{base}.svg")
        found = counts(primitives)
        for kind, n in found.items():
            totals[kind] += n
        documents.setdefault(src.doc_uid, []).append({
            "image": src.name, "width": width, "height": height,
            "svg": job.url(f"{base}.svg"), "json": job.url(f"{base}.json"), "preview": job.url(f"{base}.png"),
            "counts": found})
        job.advance()
    if current is not None:
        zips[current] = _zip_document(job, current, svgs.get(current, []))
    zips = {doc: url for doc, url in zips.items() if url}
    return {"documents": documents, "zips": zips, "summary": {
        "backend": backend.name, "images": sum(len(v) for v in documents.values()), "primitives": totals}}


def detect_at_most(backend: Any, rgb: np.ndarray, max_side: int) -> Any:
    """Detect on the image shrunk so its longer side is at most `max_side` px (0: as it is), and
    give the primitives back in the full image's pixels. Bounds a worker's time and memory on
    huge scans; thresholds then apply to the shrunk image."""
    height, width = rgb.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return backend.detect(rgb)
    scale = max_side / max(height, width)
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    detection = backend.detect(small)
    for p in detection.primitives:
        for key in ("x1", "y1", "x2", "y2", "cx", "cy", "r"):
            if key in p.geometry:
                p.geometry[key] /= scale
    detection.stroke_width /= scale
    return detection


def _zip_document(job: Any, doc_uid: str, svg_paths: list[str]) -> str:
    """`<doc_uid>.zip` of the document's SVGs; its URL ("" when no image of it was vectorized)."""
    if not svg_paths:
        return ""
    relpath = f"{doc_uid}.zip"
    with job.open(relpath) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in svg_paths:
            archive.write(job.path(path), path.split("/", 1)[1])
    return job.url(relpath)
