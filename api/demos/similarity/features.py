"""Local features of one item: keypoints and descriptors (SIFT or ORB from OpenCV), on the item
shrunk to a working size, optionally also on its mirror image.

SIFT descriptors are kept as OpenCV makes them (uint8 values: a quarter of the memory of floats)
and turned into RootSIFT (L1-normalised, square-rooted: Hellinger kernel, fewer false matches on
hatching and halftone) when matched or indexed. Keypoints are in working pixels; `scale` maps them
back to the item's full-resolution pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIFT = "sift"
ORB = "orb"
# Working images are smoothed this much (px) before detection: a halftone screen or a dithered
# print otherwise fills the finest scale with dots that no other copy has (measured: matches of a
# halftoned copy of a photograph go from ~0 to dozens of inliers, clean copies keep most of theirs).
SMOOTH = 1.0
# Smaller items are enlarged to this long side first: a picture printed small (or cropped small by a
# layout model) otherwise gives a handful of keypoints once smoothed (measured: a 220×119 copy of a
# night photograph gave 7, too few for any verification).
MIN_SIDE = 480
# A keypoint whose descriptor recurs elsewhere in the same item (cosine of RootSIFT at least this) is
# dropped: the letters of the text around a picture, repeated across words, match the same font on
# any other page in a geometry RANSAC accepts, while a picture's own details are rarely exact repeats
# (burstiness, Jégou et al. 2009). 0 keeps every keypoint.
REPEATED = 0.9


@dataclass
class FeatureSet:
    """Keypoints (x, y in working pixels, float32 N×2), their sizes, and descriptors (uint8)."""

    points: np.ndarray
    sizes: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class ItemFeatures:
    kind: str  # sift | orb
    width: int  # working size (pixels of `points`)
    height: int
    scale: float  # full-resolution pixels per working pixel
    plain: FeatureSet
    mirror: FeatureSet | None = None  # features of the left-right mirror image, x mapped back to the plain image

    def sets(self) -> list[tuple[bool, FeatureSet]]:
        """(mirrored, features) for each variant computed."""
        return [(False, self.plain)] + ([(True, self.mirror)] if self.mirror is not None else [])


def working_gray(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The item in grey, shrunk (area-averaged) so its long side is at most `max_side`, or enlarged
    to MIN_SIDE, and smoothed (SMOOTH); and the full-resolution pixels per working pixel."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    height, width = gray.shape[:2]
    long = max(height, width, 1)
    scale = long / max_side if long > max_side else long / min(MIN_SIDE, max_side) if long < MIN_SIDE else 1.0
    if scale != 1.0:
        gray = cv2.resize(gray, (max(1, round(width / scale)), max(1, round(height / scale))),
                          interpolation=cv2.INTER_AREA if scale > 1 else cv2.INTER_CUBIC)
    if SMOOTH:  # in the item's own pixels when enlarged: its dots are that size
        gray = cv2.GaussianBlur(gray, (0, 0), SMOOTH * max(1.0, 1.0 / scale))
    return np.ascontiguousarray(gray), scale


class Extractor:
    """One detector per worker thread (OpenCV's detectors keep state between calls)."""

    def __init__(self, kind: str = SIFT, max_features: int = 1000):
        if kind not in (SIFT, ORB):
            raise ValueError(f"unknown local features {kind!r}")
        self.kind = kind
        self.max_features = max_features
        if kind == SIFT:
            self.detector = cv2.SIFT_create(nfeatures=max_features)
        else:
            self.detector = cv2.ORB_create(nfeatures=max_features, scaleFactor=1.2, nlevels=8, edgeThreshold=15,
                                           patchSize=31, fastThreshold=10)

    def _detect(self, gray: np.ndarray) -> FeatureSet:
        keypoints, descriptors = self.detector.detectAndCompute(gray, None)
        width = 32 if self.kind == ORB else 128
        if descriptors is None or not keypoints:
            return FeatureSet(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, width), np.uint8))
        if len(keypoints) > self.max_features:  # SIFT may keep ties past nfeatures
            order = np.argsort([-k.response for k in keypoints], kind="stable")[:self.max_features]
            keypoints = [keypoints[i] for i in order]
            descriptors = descriptors[order]
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        sizes = np.array([k.size for k in keypoints], np.float32)
        if self.kind == SIFT:
            descriptors = np.clip(np.rint(descriptors), 0, 255).astype(np.uint8)
            if REPEATED:
                keep = ~repeated(points, sizes, root_sift(descriptors), REPEATED)
                points, sizes, descriptors = points[keep], sizes[keep], descriptors[keep]
        return FeatureSet(points, sizes, np.ascontiguousarray(descriptors))

    def extract(self, rgb: np.ndarray, max_side: int, mirror: bool = False) -> ItemFeatures:
        gray, scale = working_gray(rgb, max_side)
        height, width = gray.shape
        plain = self._detect(gray)
        flipped = None
        if mirror:
            flipped = self._detect(np.ascontiguousarray(gray[:, ::-1]))
            if len(flipped):
                flipped.points[:, 0] = (width - 1) - flipped.points[:, 0]
        return ItemFeatures(self.kind, width, height, scale, plain, flipped)


def repeated(points: np.ndarray, sizes: np.ndarray, unit: np.ndarray, threshold: float) -> np.ndarray:
    """Which keypoints have a near-identical descriptor (cosine ≥ `threshold`) at another place of
    the same item (farther than their own size: SIFT puts several orientations on one spot)."""
    if len(unit) < 2:
        return np.zeros(len(unit), bool)
    similar = unit @ unit.T
    far = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1) > np.maximum(sizes[:, None], sizes[None, :]) ** 2
    return ((similar >= threshold) & far).any(axis=1)


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman 2012): L1-normalise, then square root; float32."""
    d = descriptors.astype(np.float32)
    d /= d.sum(axis=1, keepdims=True) + 1e-7
    return np.sqrt(d)


def matchable(kind: str, descriptors: np.ndarray) -> np.ndarray:
    """Descriptors as the matcher and the index take them."""
    return root_sift(descriptors) if kind == SIFT else descriptors
