"""IIIF Presentation manifests (v2 and v3) → one image source per canvas.

Where an image has a IIIF Image API service, the image is asked of the service at the configured
size (IIIF_IMAGE_SIZE), so a 20000-pixel scan arrives at a size a model can use; otherwise the
resource's own URL is used. The Image API changed the word for "the whole image" from "full"
(v2) to "max" (v3), so that word is picked by the service's version.

A manifest is someone else's JSON: every value is checked for its type before use, and whatever
shape the parser still cannot use is a DocumentError for this document, never an exception that
would end the job (other documents of the job go on).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import Config
from .names import numbered
from .sources import DocumentError, ImageSource, check_count

FULL_SIZES = ("full", "max")
NOT_IMAGES = ("Sound", "Video", "Text", "dctypes:Sound", "dctypes:Video", "dctypes:Text")
LABEL_DEPTH = 8  # a label nested deeper than this is not a label anyone wrote by hand
# Parsed JSON takes 10-50 times its size in memory: a manifest may be a download of up to
# MAX_DOWNLOAD_BYTES, but the largest real ones (thousands of canvases) are a few MiB.
MAX_MANIFEST_BYTES = 64 * 2**20
# What a value of an unforeseen shape makes the parser raise (RecursionError: nesting).
_SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError, RecursionError)


def manifest_sources(path: Path, manifest_url: str, doc_uid: str, cfg: Config) -> list[ImageSource]:
    """The images of the manifest saved at `path` (fetched from `manifest_url`), in canvas order.
    Raises DocumentError for anything that is not a usable IIIF manifest."""
    manifest = _load(path)
    try:
        return _sources(manifest, manifest_url, doc_uid, cfg)
    except _SHAPE_ERRORS as exc:  # a shape the checks below did not foresee: still the manifest's fault
        raise DocumentError(f"malformed IIIF manifest ({type(exc).__name__})") from None


def _load(path: Path) -> dict:
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise DocumentError(f"the manifest is larger than {MAX_MANIFEST_BYTES // 2**20} MiB; "
                            "split it, or send its images as a url_list")
    try:
        manifest = json.loads(path.read_bytes())
    except RecursionError:
        raise DocumentError("the manifest is not valid JSON: nested too deeply") from None
    except ValueError:
        raise DocumentError("the manifest is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise DocumentError("not a IIIF manifest: expected a JSON object")
    return manifest


def _sources(manifest: dict, manifest_url: str, doc_uid: str, cfg: Config) -> list[ImageSource]:
    if (_text(manifest.get("type")) or _text(manifest.get("@type"))) in ("Collection", "sc:Collection"):
        raise DocumentError("this is a IIIF collection, not a manifest: send its manifests as documents")
    v3 = _is_v3(manifest)
    if v3:
        found = list(_v3_images(manifest))
    elif isinstance(manifest.get("sequences"), list):
        found = list(_v2_images(manifest))
    else:
        raise DocumentError("not a IIIF manifest: it has neither `sequences` (v2) nor `items` (v3)")
    if not found:
        raise DocumentError("the manifest has no images")
    check_count(len(found), cfg)
    sources = []
    for index, (canvas, resource) in enumerate(found):
        url = _image_url(resource, v3, cfg)
        if not url:
            raise DocumentError(f"canvas {index + 1} has an image without an id")
        sources.append(ImageSource(
            doc_uid=doc_uid, name=numbered(index, len(found)), index=index, url=url,
            canvas={"id": _id(canvas), "width": _side(canvas.get("width")), "height": _side(canvas.get("height")),
                    "label": _label_text(canvas.get("label")), "manifest": manifest_url}))
    return sources


def _v2_images(manifest: dict) -> Iterator[tuple[dict, dict]]:
    """(canvas, image resource) pairs of the first sequence; other sequences are other orders."""
    sequence = _first(manifest["sequences"])
    for canvas in _dicts(sequence.get("canvases") if sequence else None):
        for annotation in _dicts(canvas.get("images")):
            resource = _first(annotation.get("resource"))
            if resource and _text(resource.get("@type")) == "oa:Choice":
                resource = _first(resource.get("default")) or _first(resource.get("item"))
            if resource and _text(resource.get("@type")) not in NOT_IMAGES:
                yield canvas, resource
                break


def _v3_images(manifest: dict) -> Iterator[tuple[dict, dict]]:
    """(canvas, body) of each canvas's first painting annotation."""
    for canvas in _dicts(manifest.get("items")):
        body = _canvas_body(canvas)
        if body:
            yield canvas, body


def _canvas_body(canvas: dict) -> dict | None:
    for page in _dicts(canvas.get("items")):  # AnnotationPages
        for annotation in _dicts(page.get("items")):
            if _texts(annotation.get("motivation", "painting")) == ["painting"]:
                body = _painted(annotation.get("body"))
                if body:
                    return body
    return None


def _painted(body: Any) -> dict | None:
    """The image of an annotation body: the first of a list, the first choice of a Choice."""
    body = _first(body)
    if body and _text(body.get("type")) == "Choice":
        body = _first(body.get("items"))
    return body if body and _text(body.get("type")) not in NOT_IMAGES else None


def _image_url(resource: dict, manifest_v3: bool, cfg: Config) -> str | None:
    service = next((s for s in _dicts(resource.get("service")) if _is_image_service(s) and _id(s)), None)
    service_id = _id(service) if service is not None else None
    if service is None or service_id is None:
        return _id(resource)
    size = cfg.iiif_image_size
    if size in FULL_SIZES:
        size = "max" if _service_is_v3(service, manifest_v3) else "full"
    return f"{service_id.rstrip('/')}/full/{size}/0/default.jpg"


def _is_image_service(service: dict) -> bool:
    return _kind(service).startswith("ImageService") or "iiif.io/api/image" in _context(service)


def _service_is_v3(service: dict, manifest_v3: bool) -> bool:
    kind, context = _kind(service), _context(service)
    if kind == "ImageService3" or "image/3" in context:
        return True
    if kind in ("ImageService1", "ImageService2") or "image/2" in context or "image/1" in context:
        return False
    return manifest_v3


def _is_v3(manifest: dict) -> bool:
    context = manifest.get("@context")
    contexts = context if isinstance(context, list) else [context]
    if any(isinstance(c, str) and "presentation/3" in c for c in contexts):
        return True
    return "sequences" not in manifest and isinstance(manifest.get("items"), list)


def _kind(obj: dict) -> str:
    return _text(obj.get("type")) or _text(obj.get("@type"))


def _context(service: dict) -> str:
    """A service's @context and profile, which may be strings, lists or objects, as one text."""
    return " ".join(_texts(service.get("@context")) + _texts(service.get("profile")))


def _label_text(label: Any, depth: int = 0) -> str:
    """A label as one string: v2 gives a string, a list or {"@value"}; v3 a language map."""
    if isinstance(label, str):
        return label
    if depth >= LABEL_DEPTH:
        return ""
    if isinstance(label, list):
        return next((text for text in (_label_text(item, depth + 1) for item in label) if text), "")
    if isinstance(label, dict):
        if "@value" in label:
            value = label["@value"]
            return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
        for key in ("en", "none", *label):
            if label.get(key):
                return _label_text(label[key], depth + 1)
    return ""


def _id(obj: dict) -> str | None:
    value = obj.get("id") or obj.get("@id")
    return value if isinstance(value, str) and value else None


def _side(value: Any) -> int | None:
    """A canvas width or height: a positive whole number (JSON allows Infinity and NaN), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        side = int(value)
    except (ValueError, OverflowError):
        return None
    return side if side > 0 else None


def _text(value: Any) -> str:
    """A value that should be a string (a type, a motivation), or "" when it is anything else."""
    return value if isinstance(value, str) else ""


def _texts(value: Any) -> list[str]:
    """A value that may be one string or a list of them, as the list of its strings."""
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str)]


def _dicts(value: Any) -> list[dict]:
    """A JSON-LD value that may be one object or a list, as a list of its objects."""
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def _first(value: Any) -> dict | None:
    return next(iter(_dicts(value)), None)
