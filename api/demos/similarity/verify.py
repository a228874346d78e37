"""Geometric verification of one candidate pair: descriptor matches (ratio test, one-to-one), then a
transform fitted by RANSAC; the pair holds when enough matches agree on a plausible transform.

Why geometry: two engravings share many local patterns (hatching, letters, borders) but only a
reuse of the same block or plate, or a copy of the same drawing, puts hundreds of them in the same
arrangement. The inlier count is that evidence; the score turns it into [0, 1] with the share of
the smaller item's features it explains, so a big busy picture cannot win on sheer numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .features import ORB, FeatureSet, ItemFeatures, matchable

RATIO = 0.8  # Lowe's ratio test
AFFINE, SIMILARITY, HOMOGRAPHY = "affine", "similarity", "homography"
MAX_SCALE = 8.0  # one copy at most this many times larger than the other (after the working resize)
MAX_ANISOTROPY = 3.0  # stretch of one axis against the other
MAX_PERSPECTIVE = 0.5  # for homographies: how far the far corner may be foreshortened
SCORE_INLIERS = 24  # inliers worth half the score on their own
# The inliers must span this share of the smaller item (convex hull): a reused picture shares its
# area, while a few matching words or a frame corner agree on a small spot only (measured on the tune
# set: true pairs 0.12 and up, false ones on printed pages 0.06 and below).
MIN_COVERAGE = 0.05


@dataclass
class Verified:
    inliers: int
    matches: int
    score: float
    matrix: np.ndarray  # 3×3, working pixels of a → working pixels of b
    mirror: bool
    coverage: float  # share of the smaller item's area spanned by its inliers (convex hull)
    points_a: np.ndarray  # inlier keypoints, working pixels
    points_b: np.ndarray

    def better_than(self, other: Verified | None) -> bool:
        return other is None or (self.score, self.inliers) > (other.score, other.inliers)


def match(kind: str, a: FeatureSet, b: FeatureSet, desc_a: np.ndarray | None = None,
          desc_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into a, into b) of matches that pass the ratio test, at most one per keypoint of b.

    RootSIFT vectors have unit length, so the nearest two neighbours come from one matrix product
    (squared distance = 2 - 2 × dot): several times faster than OpenCV's brute-force matcher."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    da = matchable(kind, a.descriptors) if desc_a is None else desc_a
    db = matchable(kind, b.descriptors) if desc_b is None else desc_b
    if kind == ORB:
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
        rows = [(m[0].queryIdx, m[0].trainIdx, m[0].distance, m[1].distance) for m in pairs if len(m) == 2]
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        query, train, first, second = (np.array(c) for c in zip(*rows, strict=True))
    else:
        sims = da @ db.T
        query = np.arange(len(da))
        train = sims.argmax(axis=1)
        best = sims[query, train]
        sims[query, train] = -np.inf
        runner_up = sims.max(axis=1)
        first = np.sqrt(np.maximum(0.0, 2 - 2 * best))
        second = np.sqrt(np.maximum(0.0, 2 - 2 * runner_up))
    keep = first < RATIO * second
    query, train, first = query[keep], train[keep], first[keep]
    order = np.lexsort((query, first))  # best first; ties by index, for the same result every time
    _, unique = np.unique(train[order], return_index=True)
    chosen = order[unique]
    return query[chosen].astype(np.int64), train[chosen].astype(np.int64)


def fit(transform: str, src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[np.ndarray | None, np.ndarray]:
    """(3×3 matrix or None, inlier mask) by RANSAC; seeded so that a job gives the same pairs twice."""
    cv2.setRNGSeed(0)
    if transform == HOMOGRAPHY:
        if len(src) < 4:
            return None, np.zeros(len(src), bool)
        matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
    else:
        estimate = cv2.estimateAffinePartial2D if transform == SIMILARITY else cv2.estimateAffine2D
        if len(src) < 3:
            return None, np.zeros(len(src), bool)
        matrix, mask = estimate(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=2000,
                                confidence=0.995, refineIters=10)
        if matrix is not None:
            matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix is None or mask is None:
        return None, np.zeros(len(src), bool)
    return matrix, mask.ravel().astype(bool)


def plausible(matrix: np.ndarray, width: int, height: int) -> bool:
    """A reprint's geometry: no collapse, no mirror (mirrors are matched on mirrored features), a
    bounded change of scale and aspect, little perspective."""
    if not np.all(np.isfinite(matrix)):
        return False
    linear = matrix[:2, :2] / (matrix[2, 2] if abs(matrix[2, 2]) > 1e-9 else 1.0)
    if np.linalg.det(linear) <= 0:
        return False
    s = np.linalg.svd(linear, compute_uv=False)
    if s[1] <= 1e-6 or s[0] / s[1] > MAX_ANISOTROPY:
        return False
    scale = math.sqrt(s[0] * s[1])
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return False
    perspective = abs(matrix[2, 0]) * width + abs(matrix[2, 1]) * height
    return perspective <= MAX_PERSPECTIVE * abs(matrix[2, 2])


def hull_share(points: np.ndarray, width: int, height: int) -> float:
    if len(points) < 3:
        return 0.0
    area = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
    return float(area) / max(width * height, 1)


def score_of(inliers: int, n_a: int, n_b: int) -> float:
    """Evidence in [0, 1]: half from the inlier count (saturating), half from the share of the
    poorer item's features that agree."""
    if inliers <= 0:
        return 0.0
    count = inliers / (inliers + SCORE_INLIERS)
    share = min(1.0, inliers / max(min(n_a, n_b), 1) * 4)
    return round(0.5 * count + 0.5 * share, 4)


def verify(a: ItemFeatures, b: ItemFeatures, transform: str = AFFINE, min_inliers: int = 12,
           mirror: bool = False, cache: dict | None = None) -> Verified | None:
    """The best verified match of a against b (b's mirror too when computed and `mirror`);
    None when no variant has `min_inliers` agreeing on a plausible transform."""
    best: Verified | None = None
    threshold = max(3.0, 0.008 * max(b.width, b.height))
    for mirrored, set_b in b.sets():
        if mirrored and not mirror:
            continue
        desc_a = _cached(cache, a.kind, a.plain)
        desc_b = _cached(cache, b.kind, set_b)
        idx_a, idx_b = match(a.kind, a.plain, set_b, desc_a, desc_b)
        if len(idx_a) < min_inliers:
            continue
        src, dst = a.plain.points[idx_a], set_b.points[idx_b]
        matrix, mask = fit(transform, src, dst, threshold)
        inliers = int(mask.sum())
        if matrix is None or inliers < min_inliers:
            continue
        if mirrored:  # features of b's mirror image were mapped back to b: the transform reflects
            check = np.diag([-1.0, 1.0, 1.0]) @ matrix
        else:
            check = matrix
        if not plausible(check, a.width, a.height):
            continue
        pa, pb = src[mask], dst[mask]
        small_is_a = a.width * a.height <= b.width * b.height
        coverage = hull_share(pa, a.width, a.height) if small_is_a else hull_share(pb, b.width, b.height)
        if coverage < MIN_COVERAGE:
            continue
        found = Verified(inliers, len(idx_a), score_of(inliers, len(a.plain), len(set_b)), matrix, mirrored,
                         round(coverage, 4), pa, pb)
        if found.better_than(best):
            best = found
    return best


def _cached(cache: dict | None, kind: str, features: FeatureSet) -> np.ndarray:
    """Matchable descriptors, converted once per feature set when a cache (keyed by the set's
    id: the sets live as long as the job) is given."""
    if cache is None:
        return matchable(kind, features.descriptors)
    key = id(features)
    if key not in cache:
        cache[key] = matchable(kind, features.descriptors)
    return cache[key]


def full_resolution(matrix: np.ndarray, scale_a: float, scale_b: float) -> np.ndarray:
    """The transform in full-resolution pixels of a and b (the working resize undone)."""
    return np.diag([scale_b, scale_b, 1.0]) @ matrix @ np.diag([1 / scale_a, 1 / scale_a, 1.0])
