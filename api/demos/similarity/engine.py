"""The comparison itself, apart from the platform: items described, candidates retrieved, candidates
verified, pairs above the threshold kept. job.py feeds it a job's images and writes its results;
bench/similarity.py and the tests feed it images directly.

Cost: describing is linear in N; retrieval is one N × N matrix product of short vectors (VLAD or
CNN); verification, the costly step, runs on at most N × topk candidate pairs.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .clusters import connected_components
from .features import Extractor, ItemFeatures
from .index import normalised, top_candidates, vlad, vocabulary
from .pictures import thumbnail
from .verify import Verified, full_resolution, verify

MIRRORS = ("hflip", "vflip")
DEFAULTS = {"feature": "auto", "local_features": "sift", "topk": 10, "threshold": 0.25, "min_inliers": 12,
            "transform": "affine", "transpositions": ["none"], "max_side": 640, "max_features": 1000,
            "same_document": True, "query": []}


@dataclass
class Item:
    index: int
    doc_uid: str
    name: str
    width: int  # full resolution
    height: int
    features: ItemFeatures
    thumb: bytes = b""
    thumb_scale: float = 1.0  # thumbnail pixels per working pixel
    crop: dict | None = None  # for a regions crop: {"crop_id", "page", "bbox"}

    @property
    def key(self) -> str:
        return f"{self.doc_uid}/{self.name}"


@dataclass
class Pair:
    a: int
    b: int
    retrieval: float
    verified: Verified


@dataclass
class Comparison:
    items: list[Item]
    candidates: int
    pairs: list[Pair]  # above the threshold, best first
    clusters: list[list[int]]
    feature: str  # local | cnn: what retrieved the candidates
    timings: dict[str, float] = field(default_factory=dict)


def settings(params: dict) -> dict:
    return {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS}}


class Describer:
    """Turns images into Items (local features, thumbnail) and keeps what the backbone needs."""

    def __init__(self, params: dict, backbone: Any = None):
        p = settings(params)
        self.params = p
        self.extractor = Extractor(p["local_features"], p["max_features"])
        self.mirror = any(t in MIRRORS for t in p["transpositions"])
        self.backbone = backbone
        self.items: list[Item] = []
        self.small: list[Image.Image] = []  # 224-px copies for the backbone, embedded at the end
        self.seconds = 0.0

    def add(self, image: Image.Image, doc_uid: str, name: str, full_size: tuple[int, int] | None = None,
            crop: dict | None = None) -> Item:
        started = time.perf_counter()
        rgb = np.asarray(image.convert("RGB"))
        features = self.extractor.extract(rgb, self.params["max_side"], mirror=self.mirror)
        # `image` may be a reduced decoding of the full picture: keep transforms in full pixels
        full_w, full_h = full_size or image.size
        features.scale *= full_w / image.width
        thumb, thumb_width = thumbnail(image)
        thumb_scale = thumb_width / features.width
        item = Item(len(self.items), doc_uid, name, full_w, full_h, features, thumb, thumb_scale, crop)
        self.items.append(item)
        if self.backbone is not None:
            self.small.append(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
        self.seconds += time.perf_counter() - started
        return item


def select_queries(items: Sequence[Item], refs: Sequence[str]) -> np.ndarray | None:
    """Indices of the items named by `refs` ("<doc>" or "<doc>/<image>"); None without refs."""
    if not refs:
        return None
    docs = {r for r in refs if "/" not in r}
    keys = {r for r in refs if "/" in r}
    return np.array([i.index for i in items if i.doc_uid in docs or i.key in keys], np.int64)


def compare(describer: Describer, check: Callable[[], None] = lambda: None,
            log: Callable[[str], None] = lambda _m: None) -> Comparison:
    """Candidates for every item, verified; pairs at or above the threshold and their clusters."""
    p = describer.params
    items = describer.items
    timings = {"features_s": round(describer.seconds, 4)}
    n = len(items)
    started = time.perf_counter()
    if describer.backbone is not None:
        feature = "cnn"
        names = list(dict.fromkeys(["none", *p["transpositions"]]))
        embedded = describer.backbone.embed(describer.small, names)
        views = [normalised(embedded[t]) for t in names]
    else:
        feature = "local"
        kind = describer.extractor.kind
        centres = vocabulary(kind, [i.features.plain for i in items])
        views = [normalised(np.stack([vlad(kind, i.features.plain, centres) for i in items]))] if n else []
        if describer.mirror and n:
            views.append(normalised(np.stack([vlad(kind, i.features.mirror or i.features.plain, centres)
                                              for i in items])))
    docs = np.array([i.doc_uid for i in items])

    def allowed(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if p["same_document"]:
            return np.ones((len(rows), len(cols)), bool)
        return docs[rows][:, None] != docs[cols][None, :]

    queries = select_queries(items, p["query"])
    if queries is not None and not len(queries):
        raise ValueError(f"parameters.query: {', '.join(p['query'])} names no item of this job")
    candidates = top_candidates(views, p["topk"], allowed, queries) if n >= 2 else {}
    if queries is not None:  # only query ↔ other pairs
        chosen = set(queries.tolist())
        candidates = {k: v for k, v in candidates.items() if (k[0] in chosen) != (k[1] in chosen)}
    timings["retrieval_s"] = round(time.perf_counter() - started, 4)
    log(f"{n} items, {len(candidates)} candidate pairs to verify ({feature} retrieval, topk {p['topk']})")

    started = time.perf_counter()
    cache: dict = {}
    pairs: list[Pair] = []
    for done, ((a, b), similarity) in enumerate(sorted(candidates.items())):
        if done % 64 == 0:
            check()
        if (items[a].doc_uid, a) > (items[b].doc_uid, b):  # a's document first: per-document files are sorted
            a, b = b, a
        found = verify(items[a].features, items[b].features, p["transform"], p["min_inliers"],
                       mirror=describer.mirror, cache=cache)
        if found is not None and found.score >= p["threshold"]:
            pairs.append(Pair(a, b, round(similarity, 4), found))
    timings["verify_s"] = round(time.perf_counter() - started, 4)
    pairs.sort(key=lambda q: (-q.verified.score, -q.verified.inliers, q.a, q.b))
    clusters = connected_components(n, ((q.a, q.b) for q in pairs))
    return Comparison(items, len(candidates), pairs, clusters, feature, timings)


def transform_record(pair: Pair, items: Sequence[Item], kind: str) -> dict:
    """The matched transform a → b in full-resolution pixels (3×3, [x_b, y_b, 1] ∝ M [x_a, y_a, 1]),
    its scale and its rotation in degrees, counter-clockwise as seen."""
    a, b = items[pair.a], items[pair.b]
    matrix = full_resolution(pair.verified.matrix, a.features.scale, b.features.scale)
    linear = matrix[:2, :2] / matrix[2, 2]
    if pair.verified.mirror:
        linear = linear @ np.diag([-1.0, 1.0])
    scale = math.sqrt(abs(np.linalg.det(linear)))
    # counter-clockwise as seen (image y points down, so the matrix's own angle has the other sign)
    rotation = -math.degrees(math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1]))
    return {"type": kind, "mirror": pair.verified.mirror, "scale": round(scale, 4), "rotation": round(rotation, 2),
            "matrix": [[round(float(v), 6) for v in row] for row in matrix]}


def pair_record(pair: Pair, items: Sequence[Item], kind: str) -> dict:
    a, b = items[pair.a], items[pair.b]
    v = pair.verified
    return {"a": a.key, "b": b.key, "doc_a": a.doc_uid, "doc_b": b.doc_uid, "image_a": a.name, "image_b": b.name,
            "crop_a": a.crop["crop_id"] if a.crop else None, "crop_b": b.crop["crop_id"] if b.crop else None,
            "score": v.score, "inliers": v.inliers, "matches": v.matches, "coverage": v.coverage,
            "retrieval": pair.retrieval, "transform": transform_record(pair, items, kind)}
