"""The stages of a sorter job: locate → embed → de-duplicate and group → assign → moves → pictures.

job.py runs them on a job's photos and writes the files; `bench/sorter.py` calls `sort_photos`
directly to time each stage.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import arm, grouping, pictures
from .embed import CnnEmbedder, DescriptorEmbedder, crop

KEEP_SIDE = 1600  # photos kept for annotation are shrunk to this longest side, to bound memory


@dataclass
class Photo:
    key: str                   # "<doc_uid>/<name>"
    name: str
    width: int
    height: int
    picture: Image.Image       # the photo (shrunk to KEEP_SIDE) for annotation
    scale: float               # picture pixels per photo pixel
    detections: list = field(default_factory=list)


def choose_embedder(choice: str, cnn: CnnEmbedder | None) -> tuple[Any, list[str]]:
    """The embedder for `choice` ("auto", "cnn", "descriptors") and any warning about it."""
    if choice == "descriptors" or (choice == "auto" and cnn is None):
        return DescriptorEmbedder(), []
    if cnn is None:
        return DescriptorEmbedder(), ["embedding=cnn asked but no backbone weights are present (backbone.pt in the "
                                      "models folder, or torchvision's ResNet-18 in TORCH_HOME); used descriptors"]
    return cnn, []


def sort_photos(photos: Iterable[tuple[str, str, Image.Image]], locator: Any, embedder: Any, params: dict,
                on_photo: Callable[[int], None] = lambda i: None) -> tuple[dict, dict]:
    """Everything but the files: returns (result JSON without URLs, {"photos": [Photo], "crops": [...]})
    for pictures. `photos`: (key, name, RGB image). Timings in result["timings"] (seconds)."""
    timings = {"locate_s": 0.0, "embed_s": 0.0, "group_s": 0.0}
    warnings: list[str] = []
    constants = params.get("arm_constants")
    kept: list[Photo] = []
    crops: list[Image.Image] = []
    detections: list[dict] = []
    for i, (key, name, image) in enumerate(photos):
        started = time.perf_counter()
        found = drop_nested(locator.detect([image], params["score_threshold"])[0])
        timings["locate_s"] += time.perf_counter() - started
        w, h = image.size
        scale = min(1.0, KEEP_SIDE / max(w, h))
        picture = image if scale == 1.0 else image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
        photo = Photo(key, name, w, h, picture, scale)
        base = arm.base_angle(constants, name) if constants else None
        if constants and base is None:
            warnings.append(f"{key}: no base angle for this photo (its name is not a number, it is not in "
                            "arm_constants.base_angles and there is no base_pw); its moves are in image pixels")
        for det in found:
            x0, y0, x1, y1 = det.box
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if base is not None:
                position, frame = arm.to_polar(constants, base, w, h, cx, cy), "arm"
            else:
                position, frame = (cx, cy), f"image:{key}"
            entry = {"id": len(detections), "image": key, "image_index": i, "class": det.label,
                     "score": round(det.score, 4), "box": [round(v, 1) for v in det.box],
                     "box_relative": [round(x0 / w, 5), round(y0 / h, 5), round(x1 / w, 5), round(y1 / h, 5)],
                     "position": [round(v, 2) for v in position], "frame": frame}
            if det.label == "item":
                entry["crop"] = len(crops)
                crops.append(crop(image, det.box))
            detections.append(entry)
            photo.detections.append(entry)
        kept.append(photo)
        on_photo(i)

    started = time.perf_counter()
    item_dets = [d for d in detections if d["class"] == "item"]
    vectors = embedder.embed([crops[d["crop"]] for d in item_dets])
    timings["embed_s"] = time.perf_counter() - started

    started = time.perf_counter()
    items = _merge(item_dets, params["dedup_distance"])
    containers = _merge([d for d in detections if d["class"] == "container"], params["dedup_distance"])
    frames = sorted({d["frame"] for d in detections}, key=lambda f: (f != "arm", f))
    containers.sort(key=lambda c: (frames.index(c["frame"]), c["position"][0], c["position"][1]))
    for n, c in enumerate(containers, 1):
        c["number"] = n
    per_frame = {f: sum(1 for c in containers if c["frame"] == f) for f in frames}
    n_groups = params["n_groups"] or max(per_frame.values(), default=0)
    index_of = {d["id"]: k for k, d in enumerate(item_dets)}
    unique_vectors = np.stack([vectors[[index_of[m] for m in it["detections"]]].mean(axis=0) for it in items]) \
        if items else np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 1))
    labels, info = grouping.cluster(unique_vectors, n_groups)
    if params["n_groups"] and info["k"] < params["n_groups"]:
        warnings.append(f"n_groups={params['n_groups']} but only {info['k']} distinct item(s) were found")
    for it, g in zip(items, labels, strict=True):
        it["group"] = int(g)
    by_id = {d["id"]: d for d in detections}
    for obj in items:
        for m in obj["detections"]:
            by_id[m]["group"] = obj["group"]
    for obj in containers:
        for m in obj["detections"]:
            by_id[m]["container"] = obj["number"]

    pairings, commands = [], []
    groups = [{"group": g, "items": [it["id"] for it in items if it["group"] == g], "containers": []}
              for g in range(info["k"])]
    for frame in frames:
        f_items = [it for it in items if it["frame"] == frame]
        f_conts = [c for c in containers if c["frame"] == frame]
        if not f_items:
            continue
        where = "" if frame == "arm" else f" in {frame[len('image:'):]}"
        if not f_conts:
            warnings.append(f"no container found{where}; its {len(f_items)} item(s) have no move")
            continue
        mapping = grouping.assign(np.array([it["group"] for it in f_items]),
                                  np.array([it["position"] for it in f_items], float),
                                  np.array([c["position"] for c in f_conts], float))
        present = sorted({it["group"] for it in f_items})
        if len(present) > len(f_conts):
            left = [g + 1 for g in present if g not in mapping]
            warnings.append(f"{len(present)} groups but {len(f_conts)} container(s){where}: group(s) "
                            f"{', '.join(map(str, left))} have no container and are not moved")
        for g, c_index in mapping.items():
            container = f_conts[c_index]
            container.setdefault("groups", []).append(g)
            groups[g]["containers"].append(container["number"])
        for it in f_items:
            if it["group"] not in mapping:
                continue
            container = f_conts[mapping[it["group"]]]
            it["target"] = container["number"]
            pairings.append({"item": it["id"], "group": it["group"], "container": container["number"],
                             "frame": frame, "item_position": it["position"],
                             "container_position": container["position"]})
            commands.append([it["position"], container["position"]])
    timings["group_s"] = time.perf_counter() - started

    result = {
        "coordinates": "arm" if frames == ["arm"] else ("image" if "arm" not in frames else "mixed"),
        "embedding": embedder.name,
        "embedding_runtime": getattr(embedder, "runtime", "none"),
        "grouping": info,
        "detections": [{k: v for k, v in d.items() if k != "crop"} for d in detections],
        "items": items, "containers": containers, "groups": groups,
        "pairings": pairings, "commands": commands, "warnings": warnings,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    return result, {"photos": kept, "crops": crops, "item_dets": item_dets}


def drop_nested(found: list, covered: float = 0.7) -> list:
    """Detections less those mostly inside a better one of the same class (`covered` of their area):
    the locator's NMS works on IoU, so a partial box inside a whole container survives it, and
    would become a container of its own."""
    kept: list = []
    for det in sorted(found, key=lambda d: -d.score):
        x0, y0, x1, y1 = det.box
        area = max((x1 - x0) * (y1 - y0), 1e-6)
        inside = False
        for other in kept:
            if other.label != det.label:
                continue
            a0, b0, a1, b1 = other.box
            overlap = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
            if overlap / area >= covered:
                inside = True
                break
        if not inside:
            kept.append(det)
    return kept


def _merge(dets: list[dict], distance: float) -> list[dict]:
    """Physical objects from detections (see grouping.dedup); each lists the detections it merges."""
    found = [grouping.Found(d["image_index"], d["frame"], tuple(d["position"]), d["score"]) for d in dets]
    objects = []
    for n, obj in enumerate(grouping.dedup(found, distance)):
        members = [dets[i]["id"] for i in obj.members]
        objects.append({"id": n, "frame": obj.frame, "position": [round(v, 2) for v in obj.position],
                        "score": round(obj.score, 4), "detections": members})
    return objects


def draw_pictures(result: dict, extras: dict) -> tuple[dict[str, Image.Image], Image.Image]:
    """The annotated photo per photo key, and the contact sheet."""
    by_det_item = {m: it for it in result["items"] for m in it["detections"]}
    by_det_cont = {m: c for c in result["containers"] for m in c["detections"]}
    out = {}
    for photo in extras["photos"]:
        s = photo.scale
        items, conts = [], []
        for d in photo.detections:
            box = [v * s for v in d["box"]]
            if d["class"] == "item":
                obj = by_det_item[d["id"]]
                items.append({"box": box, "group": obj.get("group"), "target": obj.get("target")})
            else:
                c = by_det_cont[d["id"]]
                conts.append({"box": box, "number": c["number"], "group": (c.get("groups") or [None])[0]})
        out[photo.key] = pictures.annotate(photo.picture, items, conts)
    crops, item_dets = extras["crops"], extras["item_dets"]
    det_crop = {d["id"]: crops[d["crop"]] for d in item_dets}
    rows, titles = [], []
    for g in result["groups"]:
        members = [it for it in result["items"] if it["group"] == g["group"]]
        rows.append([det_crop[it["detections"][0]] for it in members])
        target = ", ".join(f"C{c}" for c in g["containers"]) or "no container"
        titles.append(f"group {g['group'] + 1}\n{len(members)} item(s)\nto {target}")
    return out, pictures.contact_sheet(rows, titles)
