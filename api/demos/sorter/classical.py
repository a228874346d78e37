"""A locator without weights: items and containers on a photo of a plain table, found with OpenCV
alone, so that a sorter job gives moves before anyone has trained or installed a locator checkpoint.

1. The table. Its colour is modelled as a quadratic in x and y for each Lab channel, fitted
   robustly from what the photo's border shows (samples far from the fit are dropped, it is fitted
   again), then let loose: a few rounds of averaging the photo over what is not an object (see
   `relax`), so that a light gradient, vignetting or a soft patch of light is table, not object.
2. The objects. Pixels far from that model in Lab are foreground; a darkening (a shadow) counts
   for less than a change of colour. Specks go. Each object's score grows with its contrast.
3. Touching objects. A blob's distance transform has one peak per round-ish object; peaks that
   stand out by a good fraction of their own height (two sweets side by side, an item against a
   bin; not bumps along the ridge of a pencil) seed OpenCV's marker watershed on the photo, which
   cuts the blob along the colour edge between them.
4. Item or container, by size and shape (see `classify`): when the objects fall into two sizes
   several times apart, the big ones that are not long and thin are containers; otherwise all are
   items, but for a large one with the table showing through its middle (hollow: a frame, a tray).

It suits what the demo is for, objects spread or touching on a plain surface. What it cannot do,
and a trained checkpoint (locator.py) can: objects piled on each other, an item pressed flat
against a bin's straight side (no notch between them, so no second peak), a bin about as pale as
the table (only its outline shows, in pieces), patterned cloths, items lying inside bins (a bin
and its contents are one blob).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from .locator import CLASSES, Detection

NAME = "classical"


@dataclass
class Found:
    """One object in work pixels: its mask over `box` and the measures that classified and scored it."""

    box: tuple[int, int, int, int]    # x0, y0, x1, y1 (exclusive) in the work image
    mask: np.ndarray                  # bool, the box's shape
    contrast: float                   # mean Lab distance from the table, in thresholds
    hole: float                       # share of the object that was a hole in the foreground
    label: str = "item"
    score: float = 0.0
    measures: dict = field(default_factory=dict)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


class ClassicalLocator:
    """Same face as locator.Locator (`detect`, `name`, `header`, `classes`, `device`), no weights.

    `work_side`: photos are shrunk to this longest side first (boxes are given back in the photo's
    own pixels); the method reads shapes, not texture, so more pixels only cost time."""

    def __init__(self, work_side: int = 640, sensitivity: float = 4.0, floor: float = 7.0,
                 shadow_weight: float = 0.45, rounds: int = 3, reach: float = 0.06, split_ratio: float = 0.3,
                 container_ratio: float = 4.0, longest: float = 2.5, container_share: float = 0.02,
                 hole_level: float = 0.3, min_share: float = 0.0006):
        self.work_side = work_side
        self.min_share = min_share            # smaller objects (share of the photo) are specks
        self.sensitivity = sensitivity        # foreground: farther from the table than this many spreads
        self.floor = floor                    # ... and than this Lab distance
        self.shadow_weight = shadow_weight    # weight of a darkening (1 for a change of colour)
        self.rounds = rounds                  # rounds of `relax` after the quadratic table
        self.reach = reach                    # its averaging radius, in parts of the photo's longest side
        self.split_ratio = split_ratio        # a peak seeds its own object when it stands out this much
        self.container_ratio = container_ratio  # the rest: see `classify`
        self.longest = longest
        self.container_share = container_share
        self.hole_level = hole_level
        self.name = NAME
        self.device = "cpu"
        self.classes = list(CLASSES)
        self.header = {"format": "sorter-locator/classical", "kind": "locator", "arch": NAME,
                       "classes": list(CLASSES), "min_size": work_side, "max_size": work_side,
                       "source": "no weights: OpenCV table model, distance-transform watershed, size and shape",
                       "trained": {}}

    def detect(self, images: Sequence[Image.Image], score_threshold: float = 0.5,
               batch_size: int = 4) -> list[list[Detection]]:
        """Detections per image (boxes in the image's own pixels), best score first. `batch_size`
        is accepted for the trained locator's signature; photos are done one by one."""
        del batch_size
        results = []
        for image in images:
            scale, objects = self.segment(image)
            found = [Detection(tuple(float(v) / scale for v in obj.box), obj.label, obj.score)
                     for obj in objects if obj.score >= score_threshold]
            results.append(sorted(found, key=lambda d: -d.score))
        return results

    # -- the steps ----------------------------------------------------------------------------------
    def segment(self, image: Image.Image) -> tuple[float, list[Found]]:
        """(work pixels per photo pixel, the objects in work pixels): everything `detect` reports,
        with the masks and measures behind it, for tests and tuning."""
        scale, smooth = self.shrink(image)
        h, w = smooth.shape[:2]
        _lab, _table, distance, threshold = self.table(smooth)
        mask = cleaned(distance > threshold, h * w)
        kept = []
        min_area = max(12, self.min_share * h * w)
        for box, part in self.split(mask, smooth):
            x0, y0, x1, y1 = box
            whole, holes = fill_holes(part)
            if whole.sum() < min_area or whole.sum() > 0.5 * h * w:
                continue
            d = distance[y0:y1, x0:x1][part]
            found = Found(box, whole, float(d.mean() / threshold), float(holes.sum() / whole.sum()))
            found.score = round(1.0 - 0.5 ** found.contrast, 4)
            kept.append(found)
        classify(kept, (h, w), self.container_ratio, self.hole_level, self.container_share, self.longest)
        return scale, kept

    def shrink(self, image: Image.Image) -> tuple[float, np.ndarray]:
        """(work pixels per photo pixel, the photo at `work_side`, lightly blurred against noise
        and JPEG blocks)."""
        rgb = np.asarray(image.convert("RGB"))
        h, w = rgb.shape[:2]
        scale = min(1.0, self.work_side / max(h, w))
        if scale < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return scale, cv2.GaussianBlur(rgb, (0, 0), 1.0)

    def table(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(Lab photo, Lab table model, distance from it, foreground threshold): steps 1 and 2."""
        lab = to_lab(rgb)
        table, spread = table_model(lab)
        for _ in range(self.rounds):
            threshold = max(self.sensitivity * spread, self.floor)
            table, spread = relax(lab, table, self.difference(lab, table) > threshold, self.reach)
        threshold = max(self.sensitivity * spread, self.floor)
        return lab, table, self.difference(lab, table), threshold

    def difference(self, lab: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Lab distance from the table, a darkening weighted down (shadows keep the table's hue).
        Not blurred again (the photo was): a blur fills the notch where two objects touch."""
        diff = lab - table
        dl = np.where(diff[..., 0] < 0, diff[..., 0] * self.shadow_weight, diff[..., 0])
        return np.sqrt(dl ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)

    def split(self, mask: np.ndarray, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """(box, mask over the box) per object: each blob, cut by OpenCV's marker watershed on the
        photo when its distance transform holds several peaks that stand out (see `peaks`)."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        h, w = mask.shape
        out = []
        for c in range(1, count):
            x, y, bw, bh, _area = stats[c]
            x0, y0, x1, y1 = max(0, x - 2), max(0, y - 2), min(w, x + bw + 2), min(h, y + bh + 2)
            own = labels[y0:y1, x0:x1] == c
            seeds = peaks(cv2.distanceTransform(own.astype(np.uint8), cv2.DIST_L2, 5), self.split_ratio)
            if len(seeds) < 2:
                out.append(_boxed(own, x0, y0))
                continue
            # each seed marks the middle of its object, the blob's outside is the background; the
            # watershed floods the rest from them along the photo's colour edges
            markers = np.where(own, 0, 1).astype(np.int32)
            for k, (py, px, height) in enumerate(seeds):
                disc = np.zeros(own.shape, np.uint8)
                cv2.circle(disc, (px, py), max(1, int(0.5 * height)), 1, -1)
                markers[(disc > 0) & own & (markers == 0)] = k + 2
            cv2.watershed(np.ascontiguousarray(rgb[y0:y1, x0:x1]), markers)
            for k in range(len(seeds)):
                part = (markers == k + 2) & own
                if part.any():
                    out.append(_boxed(part, x0, y0))
        return out


# -- the pieces, module functions so that tests and the bench can look at each -------------------------
def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (L 0..100, a and b about -128..127) through OpenCV's 8-bit table, several times
    faster than its float path and as exact as the photo's own 8 bits."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100 / 255
    lab[..., 1:] -= 128
    return lab


def table_model(lab: np.ndarray, samples: int = 80) -> tuple[np.ndarray, float]:
    """(the table's colour at every pixel, the median Lab distance of table samples from it).

    A quadratic per Lab channel, fitted by least squares on a grid of samples; started from the
    samples near the median colour of the photo's border (objects may cover most of the middle,
    rarely most of the border), then refitted on those within 3 spreads of the fit until that set
    stops changing, so objects drop out of the fit and the table's light gradient stays in."""
    h, w = lab.shape[:2]
    stride = max(1, round(max(h, w) / samples))
    ys, xs = np.mgrid[0:h:stride, 0:w:stride]
    values = lab[ys, xs].reshape(-1, 3).astype(np.float64)
    design = _design(xs.ravel() / w - 0.5, ys.ravel() / h - 0.5)
    # the table is what most of the photo's border shows (objects may fill most of its middle)
    grid = lab[ys, xs]
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]]).astype(np.float64)
    ref = np.median(border, axis=0)
    gap = np.linalg.norm(values - ref, axis=1)
    keep = gap <= max(2 * float(np.median(np.linalg.norm(border - ref, axis=1))), 2.0)
    coef = np.zeros((design.shape[1], 3))
    spread = 1.0
    for _ in range(8):
        a = design[keep]
        coef = np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ values[keep])
        residual = np.linalg.norm(values - design @ coef, axis=1)
        spread = max(float(np.median(residual[keep])), 0.5)
        now = residual <= 3 * spread
        if now.sum() < 12 or np.array_equal(now, keep):
            break
        keep = now
    u = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :, None]
    v = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None, None]
    c = coef.astype(np.float32)
    table = c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v
    return table, spread


def relax(lab: np.ndarray, table: np.ndarray, objects: np.ndarray, reach: float) -> tuple[np.ndarray, float]:
    """The table model let loose from the quadratic: the photo's colour averaged (Gaussian, `reach`
    of its longest side) over the pixels that are not `objects`, the quadratic where none are near.

    A patch of light or a soft shadow has no edge: the table around it is nearly as bright, so
    each round takes more of it in, while an object's sharp outline keeps it out. Done on a
    copy shrunk to 160 px, the scale of the light, then stretched back. Returns (table, spread)."""
    h, w = lab.shape[:2]
    f = min(1.0, 160 / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(lab, size, interpolation=cv2.INTER_AREA)
    base = cv2.resize(table, size, interpolation=cv2.INTER_AREA)
    free = 1.0 - cv2.resize(objects.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    free[free < 0.99] = 0.0  # a cell touched by an object is not table
    sigma = reach * max(size)
    weight = cv2.GaussianBlur(free, (0, 0), sigma)[..., None]
    mean = cv2.GaussianBlur(small * free[..., None], (0, 0), sigma)
    eps = 0.02
    model = (mean + eps * base) / (weight + eps)
    table = cv2.resize(model, (w, h), interpolation=cv2.INTER_LINEAR)
    quiet = ~objects[::3, ::3]
    residual = (lab[::3, ::3] - table[::3, ::3])[quiet]
    spread = float(np.median(np.sqrt((residual * residual).sum(axis=1)))) if quiet.any() else 1.0
    return table.astype(np.float32), max(spread, 0.5)


def _design(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


def cleaned(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Specks and one-pixel bridges gone, ragged edges closed (sizes follow the photo's)."""
    r = max(1, round((pixels ** 0.5) / 400))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel) > 0


def fill_holes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask with its holes filled, the holes): background that does not reach the mask's frame."""
    inverse = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _count, labels = cv2.connectedComponents(inverse, connectivity=4)
    holes = ((labels > 0) & (labels != labels[0, 0]))[1:-1, 1:-1]
    return mask | holes, holes


def peaks(dist: np.ndarray, ratio: float, min_height: float = 2.0) -> list[tuple[int, int, float]]:
    """(y, x, height) of the distance peaks of one blob that stand out: a peak's prominence (how far
    one must go down from it to reach a higher peak) at least `ratio` of its height and 1.5 px.

    Found by lowering a level over the distance map: a part above the level that holds no peak yet
    gives one (its highest pixel); when parts join, all but the highest peak end there."""
    top = float(dist.max())
    if top < 2 * min_height:
        py, px = np.unravel_index(int(dist.argmax()), dist.shape)
        return [(int(py), int(px), top)]
    step = max(0.5, top / 48)
    alive: list[list[float]] = []                 # [y, x, height]
    ended: list[tuple[float, float, float, float]] = []   # y, x, height, prominence
    level = top
    while level > 0:
        count, parts = cv2.connectedComponents((dist >= level).astype(np.uint8), connectivity=8)
        holders: dict[int, list[int]] = {}
        for i, (py, px, _h) in enumerate(alive):
            holders.setdefault(int(parts[int(py), int(px)]), []).append(i)
        for part in range(1, count):
            if part not in holders:
                where = np.where(parts == part, dist, -1.0)
                py, px = np.unravel_index(int(where.argmax()), where.shape)
                alive.append([float(py), float(px), float(dist[py, px])])
        gone = set()
        for members in holders.values():
            if len(members) > 1:
                best = max(members, key=lambda i: alive[i][2])
                for i in members:
                    if i != best:
                        ended.append((*alive[i], alive[i][2] - level))
                        gone.add(i)
        alive = [p for i, p in enumerate(alive) if i not in gone]
        level -= step
    ended += [(py, px, height, height) for py, px, height in alive]
    return [(int(py), int(px), height) for py, px, height, prominence in sorted(ended, key=lambda p: -p[2])
            if height >= min_height and prominence >= max(1.5, ratio * height)] or \
        [(int(py), int(px), height) for py, px, height in alive[:1]]


def _boxed(mask: np.ndarray, x0: int, y0: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    ys, xs = np.nonzero(mask)
    a, b, c, d = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return (x0 + a, y0 + b, x0 + c, y0 + d), mask[b:d, a:c]


def elongation(mask: np.ndarray) -> float:
    """Long side over short side of the mask's smallest rotated rectangle."""
    points = cv2.findNonZero(mask.astype(np.uint8))
    (_cx, _cy), (a, b), _angle = cv2.minAreaRect(points)
    return float(max(a, b) / max(min(a, b), 1.0))


def classify(objects: list[Found], shape: tuple[int, int], ratio: float, hole_level: float,
             share: float, longest: float) -> None:
    """Label each object item or container (see the module doc, step 4).

    Size decides first. Sizes are read on the objects that the photo's edge does not cut: in log
    area, sorted, the widest gap between neighbours splits them into two sizes when it is at least
    `ratio` and at least two objects are below it (one odd small thing among big ones is no sign of
    bins); objects above the gap's middle, cut or not, are containers unless they are longer than
    `longest` times their width (a bin holds items both ways: a pen or a ruler is an item however
    long). With no such gap every object is an item, but for a hollow one: large (`share` of the
    photo) with the table showing through its middle (`hole` ≥ `hole_level`: a frame, an open
    tray). A rim-against-floor contrast was tried as a sign of bins and left out: on the generated
    bins it ranges 0.16 to 0.8, over solid items' 0 to 0.4 (a lighter on a desk: 0.37)."""
    h, w = shape
    whole = [o for o in objects if o.box[0] > 0 and o.box[1] > 0 and o.box[2] < w and o.box[3] < h]
    areas = np.log(sorted(o.area for o in (whole or objects))) if objects else np.zeros(0)
    cut = None
    if len(areas) >= 3:
        gaps = np.diff(areas)
        k = int(gaps.argmax())
        if gaps[k] >= np.log(ratio) and k >= 1:
            cut = float(np.exp((areas[k] + areas[k + 1]) / 2))
    for obj in objects:
        long = elongation(obj.mask)
        if cut is not None:
            big = obj.area >= cut and long <= longest
        else:
            big = obj.hole >= hole_level and obj.area >= share * h * w
        obj.label = "container" if big else "item"
        obj.measures = {"area": obj.area, "elongation": round(long, 2), "hole": round(obj.hole, 3),
                        "cut": cut and round(cut), "contrast": round(obj.contrast, 3)}
