"""Candidate retrieval: a few likely partners per item, so that geometric verification (the costly
step) runs N × topk times, not N² / 2.

Items are described globally, either by a CNN backbone (backbone.py) or, with no model, by VLAD
(Jégou et al. 2010) over their local features: descriptors are assigned to a small vocabulary learnt
by k-means on the job's own descriptors, the residuals summed per visual word, each word's block
normalised, square-rooted and the whole L2-normalised. Two copies of one print share most of their
local patterns, hence most of their residuals: their VLADs' dot product is high.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from .features import ORB, FeatureSet, matchable

VOCABULARY = 64
SAMPLE_PER_ITEM = 150
MAX_SAMPLE = 60_000
BLOCK = 512


def _as_float(kind: str, descriptors: np.ndarray) -> np.ndarray:
    """Descriptors as float vectors for k-means and residuals (ORB's 256 bits as 0/1 values)."""
    if kind == ORB:
        return np.unpackbits(descriptors, axis=1).astype(np.float32)
    return matchable(kind, descriptors)


def vocabulary(kind: str, sets: Sequence[FeatureSet], words: int = VOCABULARY, seed: int = 0) -> np.ndarray:
    """k-means centres learnt on a seeded sample of the job's descriptors (at most MAX_SAMPLE)."""
    rng = np.random.default_rng(seed)
    per_item = max(8, min(SAMPLE_PER_ITEM, MAX_SAMPLE // max(len(sets), 1)))
    sample = []
    for features in sets:
        if len(features):
            take = rng.choice(len(features), min(per_item, len(features)), replace=False)
            sample.append(_as_float(kind, features.descriptors[np.sort(take)]))
    if not sample:
        return np.zeros((0, 0), np.float32)
    data = np.ascontiguousarray(np.concatenate(sample))
    words = max(1, min(words, len(data) // 4))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 25, 1e-4)
    _, _, centres = cv2.kmeans(data, words, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres.astype(np.float32)


def vlad(kind: str, features: FeatureSet, centres: np.ndarray) -> np.ndarray:
    """One item's VLAD vector (words × dimension), intra- and power-normalised, unit length."""
    k, d = centres.shape
    out = np.zeros((k, d), np.float32)
    if len(features) and k:
        x = _as_float(kind, features.descriptors)
        distances = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
        nearest = distances.argmin(1)
        np.add.at(out, nearest, x - centres[nearest])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    flat = out.ravel()
    flat = np.sign(flat) * np.sqrt(np.abs(flat))
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 0 else flat


def normalised(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def top_candidates(views: Sequence[np.ndarray], topk: int,
                   allowed: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   queries: np.ndarray | None = None) -> dict[tuple[int, int], float]:
    """{(i, j) with i < j: similarity} of each item's `topk` most similar allowed partners.

    `views[0]` holds one unit vector per item; further views are variants (a mirror, a rotation)
    compared against the plain vectors of the others, the best of all counting. `allowed(rows, cols)`
    says which pairs may be compared (boolean, rows × cols). With `queries` (item indices), only
    queries look for partners among the others, and the others for partners among the queries.
    Memory and time grow with N × BLOCK per step, the whole with N²·d flops of one matrix product:
    a second for thousands of items."""
    plain = views[0]
    n = len(plain)
    found: dict[tuple[int, int], float] = {}
    if n < 2 or topk <= 0:
        return found
    rows_all = np.arange(n) if queries is None else np.unique(np.asarray(queries, np.int64))
    passes = [(rows_all, np.arange(n))]
    if queries is not None:  # the others look among the queries too: a query's k-th best may miss them
        others = np.setdiff1d(np.arange(n), rows_all)
        passes.append((others, rows_all))
    for rows_of_pass, cols in passes:
        if not len(rows_of_pass) or not len(cols):
            continue
        for start in range(0, len(rows_of_pass), BLOCK):
            rows = rows_of_pass[start:start + BLOCK]
            sims = _similarities(views, rows, cols)
            mask = allowed(rows, cols) & (rows[:, None] != cols[None, :])
            sims = np.where(mask, sims, -np.inf)
            k = min(topk, len(cols))
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(cols) else \
                np.tile(np.arange(len(cols)), (len(rows), 1))
            for r, row in enumerate(rows):
                for c in part[r]:
                    value = sims[r, c]
                    if not np.isfinite(value):
                        continue
                    col = int(cols[c])
                    key = (int(row), col) if row < col else (col, int(row))
                    if value > found.get(key, -np.inf):
                        found[key] = float(value)
    return found


def _similarities(views: Sequence[np.ndarray], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    plain = views[0]
    sims = plain[rows] @ plain[cols].T
    for variant in views[1:]:  # a variant of either side against the plain other
        sims = np.maximum(sims, variant[rows] @ plain[cols].T)
        sims = np.maximum(sims, plain[rows] @ variant[cols].T)
    return sims
