"""What a regions job writes for each page, from its detections: discover-api compatible
annotations, YOLO label lines, crops, a preview picture, and IIIF annotations for canvases."""
from __future__ import annotations

from collections.abc import Iterable

from PIL import Image, ImageDraw, ImageFont

from .common import Detection

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]
PREVIEW_MAX_SIDE = 1280


def _r(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


def clip(det: Detection, width: int, height: int) -> tuple[int, int, int, int]:
    """The box in whole pixels, inside the image."""
    x1 = min(max(int(round(det.x1)), 0), width)
    y1 = min(max(int(round(det.y1)), 0), height)
    x2 = min(max(int(round(det.x2)), x1), width)
    y2 = min(max(int(round(det.y2)), y1), height)
    return x1, y1, x2, y2


def crop_entry(det: Detection, crop_id: str, label: str, width: int, height: int) -> dict:
    """One detection as discover-api writes it: absolute pixels and the same box relative to the
    image (0-1), the box also as "x,y,w,h" in `bbox`."""
    x1, y1, x2, y2 = clip(det, width, height)
    w, h = x2 - x1, y2 - y1
    return {
        "bbox": f"{x1},{y1},{w},{h}",
        "crop_id": crop_id,
        "confidence": _r(det.confidence, 4),
        "class": det.cls,
        "label": label,
        "absolute": {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "width": w, "height": h},
        "relative": {"x1": _r(x1 / width), "y1": _r(y1 / height), "x2": _r(x2 / width), "y2": _r(y2 / height),
                     "width": _r(w / width), "height": _r(h / height)},
    }


def annotation(source_name: str, doc_uid: str, size: tuple[int, int], crops: list[dict]) -> dict:
    """One page's record; `size`: the full-resolution (width, height) the boxes are in."""
    return {"source": source_name, "doc_uid": doc_uid, "width": size[0], "height": size[1], "crops": crops}


def yolo_lines(crops: Iterable[dict]) -> str:
    """YOLO label file: `class cx cy w h`, normalised, one box per line."""
    lines = []
    for crop in crops:
        rel = crop["relative"]
        cx, cy = (rel["x1"] + rel["x2"]) / 2, (rel["y1"] + rel["y2"]) / 2
        lines.append(f"{crop['class']} {cx:.6f} {cy:.6f} {rel['width']:.6f} {rel['height']:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def crop_image(image: Image.Image, crop: dict, padding: int) -> Image.Image:
    a = crop["absolute"]
    box = (max(a["x1"] - padding, 0), max(a["y1"] - padding, 0),
           min(a["x2"] + padding, image.width), min(a["y2"] + padding, image.height))
    return image.crop(box)


def preview_size(size: tuple[int, int]) -> tuple[int, int]:
    """A page of full-resolution `size` is previewed at this size: at most PREVIEW_MAX_SIDE px."""
    scale = min(1.0, PREVIEW_MAX_SIDE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def preview(image: Image.Image, crops: list[dict], size: tuple[int, int] | None = None) -> Image.Image:
    """The page at `preview_size`, with each box and `label confidence` drawn on it. `image` may be
    the page reduced (decoded at a DCT scale) from its full-resolution `size`, in which the
    boxes are given; drawn from it, the preview needs no full-resolution decode. A page with no
    box that has the preview's size already is returned as it is (not copied: encode it, do not
    draw on it); most pages of a job have no box."""
    size = size or image.size
    picture = image if image.mode == "RGB" else image.convert("RGB")
    target = preview_size(size)
    scale = target[0] / size[0]
    if picture.size != target:
        # a box filter: an average over each preview pixel's area, as good as bilinear to shrink
        # a page, in about 60% of its time
        picture = picture.resize(target, Image.Resampling.BOX, reducing_gap=2.0)
    elif not crops:
        return picture
    elif picture is image:
        picture = image.copy()  # the boxes are drawn on the preview, never on the page
    draw = ImageDraw.Draw(picture)
    font_size = max(12, round(max(picture.size) / 60))
    font = ImageFont.load_default(size=font_size)
    width = max(2, round(max(picture.size) / 400))
    for crop in crops:
        a = crop["absolute"]
        colour = PALETTE[crop["class"] % len(PALETTE)]
        box = [round(a["x1"] * scale), round(a["y1"] * scale), round(a["x2"] * scale), round(a["y2"] * scale)]
        draw.rectangle(box, outline=colour, width=width)
        text = f"{crop['label']} {crop['confidence']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tx, ty = box[0], max(0, box[1] - (bottom - top) - 4)
        draw.rectangle([tx, ty, tx + right - left + 6, ty + bottom - top + 4], fill=colour)
        draw.text((tx + 3, ty + 2 - top), text, fill="white", font=font)
    return picture


def canvas_box(crop: dict, canvas: dict, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box (x, y, w, h) in canvas coordinates: the image a IIIF server sends may be smaller
    than the canvas (IIIF_IMAGE_SIZE), so pixels are scaled by canvas size / image size."""
    sx = (canvas.get("width") or size[0]) / size[0]
    sy = (canvas.get("height") or size[1]) / size[1]
    a = crop["absolute"]
    return round(a["x1"] * sx), round(a["y1"] * sy), round(a["width"] * sx), round(a["height"] * sy)


def iiif_annotations(pages: list[tuple[dict, tuple[int, int], list[dict]]], list_id: str) -> tuple[dict, dict]:
    """`pages`: (canvas, image size, crops). Returns (IIIF Presentation 2 `sc:AnnotationList`,
    W3C/IIIF 3 `AnnotationPage`), each annotation targeting its canvas
    with `#xywh=` in canvas coordinates, so viewers such as Mirador show the regions."""
    v2, v3 = [], []
    for canvas, size, crops in pages:
        for crop in crops:
            x, y, w, h = canvas_box(crop, canvas, size)
            text = f"{crop['label']} ({crop['confidence']:.2f})"
            target = f"{canvas['id']}#xywh={x},{y},{w},{h}"
            v2.append({"@id": f"{list_id}/{crop['crop_id']}", "@type": "oa:Annotation", "motivation": "oa:tagging",
                       "resource": {"@type": "dctypes:Text", "format": "text/plain", "chars": text},
                       "on": target})
            v3.append({"id": f"{list_id}/{crop['crop_id']}", "type": "Annotation", "motivation": "tagging",
                       "body": {"type": "TextualBody", "value": text, "format": "text/plain"},
                       "target": target})
    annotation_list = {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": f"{list_id}/list",
                       "@type": "sc:AnnotationList", "resources": v2}
    annotation_page = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{list_id}/page",
                       "type": "AnnotationPage", "items": v3}
    return annotation_list, annotation_page
