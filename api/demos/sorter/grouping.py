"""Grouping: merge the same object seen in several photos, cluster items, give each group a container.

Positions live in *frames*. With arm constants every photo maps into the arm's polar frame (servo
pulse widths, see arm.py), so one table photographed from several base angles is one frame, and
an object seen in two overlapping photos is merged when both its coordinates are within
`dedup_distance` (SorterBot's rule, 150 pulse widths there). Without arm constants nothing tells
where two photos overlap, so each photo is its own frame and nothing is merged across photos.

Items of all photos are clustered together (scikit-learn KMeans, `random_state=0`, `n_init=10`)
into `n_groups`, or as many groups as a frame has containers, or — when neither is known — the
count from 2 to 8 with the best silhouette. Within each frame, groups are matched to containers by
the Hungarian algorithm on the summed distance from a group's items to a container, so the arm
travels least.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

MAX_AUTO_GROUPS = 8


@dataclass
class Found:
    """One detection placed in its frame."""

    image: int                     # index of the photo in the job
    frame: str                     # "arm" or the photo's key
    position: tuple[float, float]  # in the frame (pulse widths or pixels)
    score: float
    members: list[int] = field(default_factory=list)  # indices of the detections merged into it


def dedup(found: Sequence[Found], distance: float) -> list[Found]:
    """One entry per physical object: detections of the same frame, from different photos, whose
    positions differ by less than `distance` in both coordinates are merged (best score first;
    the merged position is the mean). Two detections of one photo are never merged (the locator
    already suppressed its duplicates)."""
    order = sorted(range(len(found)), key=lambda i: -found[i].score)
    merged: list[Found] = []
    for i in order:
        f = found[i]
        target = None
        if distance > 0:
            for m in merged:
                if m.frame != f.frame or f.image in {found[j].image for j in m.members}:
                    continue
                head = found[m.members[0]]
                if (abs(head.position[0] - f.position[0]) < distance
                        and abs(head.position[1] - f.position[1]) < distance):
                    target = m
                    break
        if target is None:
            merged.append(Found(f.image, f.frame, f.position, f.score, [i]))
        else:
            target.members.append(i)
            pts = np.array([found[j].position for j in target.members], float)
            target.position = tuple(float(v) for v in pts.mean(axis=0))
    return merged


def prepare(vectors: np.ndarray) -> np.ndarray:
    """Vectors ready for Euclidean KMeans: each feature standardised over the job's items (so no
    feature dominates by its unit), then each row scaled to unit length (cosine-like)."""
    x = np.asarray(vectors, np.float64)
    if len(x) == 0:
        return x
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 1e-12, norm, 1.0)


def cluster(vectors: np.ndarray, n_groups: int = 0) -> tuple[np.ndarray, dict]:
    """Group labels (0..k-1) and how k was chosen: {"k", "chosen_by", "silhouette"?}."""
    x = prepare(vectors)
    n = len(x)
    if n == 0:
        return np.zeros(0, int), {"k": 0, "chosen_by": "no items"}
    distinct = len(np.unique(np.round(x, 6), axis=0))
    if n_groups > 0:
        k = min(n_groups, distinct)
        info = {"k": k, "chosen_by": "n_groups" if k == n_groups else "n_groups (fewer distinct items)"}
        return _kmeans(x, k), info
    if distinct < 3:
        return _kmeans(x, max(1, distinct)), {"k": max(1, distinct), "chosen_by": "too few items for silhouette"}
    best: tuple[float, int, np.ndarray] | None = None
    scores = {}
    for k in range(2, min(MAX_AUTO_GROUPS, distinct - 1) + 1):
        labels = _kmeans(x, k)
        score = float(silhouette_score(x, labels))
        scores[k] = round(score, 4)
        if best is None or score > best[0] + 1e-9:
            best = (score, k, labels)
    assert best is not None
    return best[2], {"k": best[1], "chosen_by": "silhouette", "silhouette": scores}


def _kmeans(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return np.zeros(len(x), int)
    return KMeans(n_clusters=k, random_state=0, n_init=10).fit_predict(x).astype(int)


def assign(groups: np.ndarray, item_pos: np.ndarray, container_pos: np.ndarray) -> dict[int, int]:
    """{group: container index} for one frame, minimising the summed item-to-container distance
    (Hungarian). Groups absent from the frame are left out; with more groups than containers the
    groups that would cost most stay unassigned (the caller warns)."""
    present = sorted(set(int(g) for g in groups))
    if not present or len(container_pos) == 0:
        return {}
    cost = np.zeros((len(present), len(container_pos)))
    for r, g in enumerate(present):
        pts = item_pos[groups == g]
        cost[r] = np.linalg.norm(pts[:, None, :] - container_pos[None, :, :], axis=2).sum(axis=0)
    rows, cols = linear_sum_assignment(cost)
    return {present[r]: int(c) for r, c in zip(rows, cols, strict=True)}
