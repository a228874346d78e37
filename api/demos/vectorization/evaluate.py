"""How right are the primitives? Precision, recall and F1 per type at a pixel tolerance.

    python -m api.demos.vectorization.evaluate <predictions> <ground truth> [--tolerance 3]

Each argument is a file (.svg, .json, .dxf) or a folder of them; in folders, files are paired by
stem (a.svg with a.dxf). A prediction matches a truth of the same type, one to one (Hungarian
assignment), when:
- line: both ends within the tolerance (either direction);
- circle: centre within the tolerance and radius within the tolerance;
- arc: its start, middle and end points each within the tolerance of the truth's (either direction).
Truth may come with pieces left out of the score (`unscored`: a real set's tiny pieces); a
prediction that matches no scored truth but one of those is left out too.
DXF has y up and no image size: its y is flipped with the image height, read from the paired
prediction SVG (`height` attribute) or given with --height.

The report lists the images worst first (mean F1 over the types present) and counts what the truth
files draw that is none of the three primitives (`skipped_in_truth`: elliptical arcs, curves,
ellipses, texts …). With --pictures DIR --images DIR, the worst images (--worst, default 5) get a
picture each (`overlay`): the truth pale and thick, magenta where missed, the prediction thin in its
type's colour over it, black where it matched nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from api.sdk import IMAGE_SUFFIXES

from .dxf import read_dxf_drawing
from .preview import COLOURS, draw_preview
from .primitives import TYPES, Primitive, arc_point
from .svg import parse_svg

INFEASIBLE = 1e9


def distance(kind: str, a: dict, b: dict) -> float:
    """The matching distance between two primitives of one type (see the module's doc)."""
    if kind == "line":
        p1, p2 = (a["x1"], a["y1"]), (a["x2"], a["y2"])
        q1, q2 = (b["x1"], b["y1"]), (b["x2"], b["y2"])
        return min(max(math.dist(p1, q1), math.dist(p2, q2)), max(math.dist(p1, q2), math.dist(p2, q1)))
    if kind == "circle":
        return max(math.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"]), abs(a["r"] - b["r"]))
    pa = [arc_point(a, t) for t in (a["start"], (a["start"] + a["end"]) / 2, a["end"])]
    pb = [arc_point(b, t) for t in (b["start"], (b["start"] + b["end"]) / 2, b["end"])]
    forward = max(math.dist(p, q) for p, q in zip(pa, pb, strict=True))
    backward = max(math.dist(p, q) for p, q in zip(pa, reversed(pb), strict=True))
    return min(forward, backward)


def match(predicted: list[Primitive], truth: list[Primitive], tolerance: float = 3.0,
          unscored: Sequence[Primitive] = ()) -> dict[str, dict]:
    """Per type: tp, fp, fn, precision, recall, f1 (and the mean distance of the matches).
    `unscored`: truth left out of the score (a real set's tiny pieces, drawn but too small to
    name); a prediction matching none of the truth but one of these is no false positive either."""
    report = {}
    for kind in TYPES:
        pairing = _pairing(kind, predicted, truth, tolerance, unscored)
        tp = len(pairing.matched)
        errors = [pairing.cost[i, j] for i, j in pairing.matched]
        report[kind] = _scores(tp, pairing.predicted - tp - len(pairing.excused), pairing.true - tp)
        report[kind]["mean_error_px"] = round(float(np.mean(errors)), 3) if tp else None
    return report


def misses(predicted: list[Primitive], truth: list[Primitive], tolerance: float = 3.0,
           unscored: Sequence[Primitive] = ()) -> tuple[list[Primitive], list[Primitive]]:
    """What `match` counts against the prediction, to be looked at: the false positives (matched
    to no truth, nor excused by an unscored piece) and the truth no prediction matched."""
    false, missed = [], []
    for kind in TYPES:
        pred = [p for p in predicted if p.type == kind]
        true = [t for t in truth if t.type == kind]
        pairing = _pairing(kind, predicted, truth, tolerance, unscored)
        found, hit = {i for i, _ in pairing.matched}, {j for _, j in pairing.matched}
        false += [p for i, p in enumerate(pred) if i not in found and i not in pairing.excused]
        missed += [t for j, t in enumerate(true) if j not in hit]
    return false, missed


@dataclass
class _Pairing:
    """One type's one-to-one assignment: (prediction, truth) index pairs within the tolerance, their
    distances, and the unmatched predictions an unscored piece excuses (indices among the type's)."""

    matched: list[tuple[int, int]]
    cost: np.ndarray
    excused: set[int]
    predicted: int
    true: int


def _pairing(kind: str, predicted: list[Primitive], truth: list[Primitive], tolerance: float,
             unscored: Sequence[Primitive]) -> _Pairing:
    pred = [p.geometry for p in predicted if p.type == kind]
    true = [t.geometry for t in truth if t.type == kind]
    cost = _costs(kind, pred, true, tolerance)
    rows, cols = linear_sum_assignment(cost) if cost.size else ([], [])
    matched = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if cost[i, j] < INFEASIBLE]
    found = {i for i, _ in matched}
    rest = [i for i in range(len(pred)) if i not in found]
    left_out = _costs(kind, [pred[i] for i in rest], [u.geometry for u in unscored if u.type == kind], tolerance)
    excused = set()
    if left_out.size:
        for r, c in zip(*linear_sum_assignment(left_out), strict=True):
            if left_out[r, c] < INFEASIBLE:
                excused.add(rest[r])
    return _Pairing(matched, cost, excused, len(pred), len(true))


def _costs(kind: str, pred: list[dict], true: list[dict], tolerance: float) -> np.ndarray:
    """Matching distances, prediction by truth; INFEASIBLE beyond the tolerance."""
    if not pred or not true:
        return np.zeros((0, 0))
    cost = np.array([[distance(kind, p, t) for t in true] for p in pred])
    cost[cost > tolerance] = INFEASIBLE
    return cost


def _scores(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4)}


def total(reports: Iterable[dict]) -> dict[str, dict]:
    """Pool several images' reports (micro-average: counts summed, then scores)."""
    sums = {kind: [0, 0, 0] for kind in TYPES}
    errors: dict[str, list[tuple[float, int]]] = {kind: [] for kind in TYPES}
    for report in reports:
        for kind in TYPES:
            r = report[kind]
            sums[kind][0] += r["tp"]
            sums[kind][1] += r["fp"]
            sums[kind][2] += r["fn"]
            if r.get("mean_error_px") is not None:
                errors[kind].append((r["mean_error_px"], r["tp"]))
    result = {}
    for kind in TYPES:
        result[kind] = _scores(*sums[kind])
        weight = sum(n for _, n in errors[kind])
        result[kind]["mean_error_px"] = round(sum(e * n for e, n in errors[kind]) / weight, 3) if weight else None
    return result


def worst_first(per_image: dict[str, dict]) -> list[str]:
    """Image names sorted worst first: by the mean F1 over the types that occur (in truth or
    prediction), ties by name; the images to look at first when a set scores low."""
    def score(name: str) -> tuple[float, str]:
        report = per_image[name]
        present = [r["f1"] for r in report.values() if r["tp"] + r["fp"] + r["fn"]]
        return (sum(present) / len(present) if present else 1.0), name

    return sorted(per_image, key=score)


TRUTH_COLOUR, MISSED_COLOUR, FALSE_COLOUR = (250, 200, 120), (235, 0, 190), (0, 0, 0)  # RGB


def overlay(rgb: np.ndarray, predicted: list[Primitive], truth: list[Primitive],
            unscored: Sequence[Primitive] = (), tolerance: float = 3.0) -> np.ndarray:
    """A picture to judge one image by, on the faded image: the truth thick and pale, the truth
    no prediction matched thick in magenta (a miss), the prediction thin over it in its type's
    colour (preview.py's), and black where it matched nothing (a false positive): what the score
    counts against the prediction is what stands out."""
    canvas = draw_preview(rgb, [], mark_ends=False)
    thin = max(1, round(max(canvas.shape[:2]) / 700))
    false, missed = misses(predicted, truth, tolerance, unscored)
    false_ids, missed_ids = {id(p) for p in false}, {id(t) for t in missed}
    layers = [(t, MISSED_COLOUR if id(t) in missed_ids else TRUTH_COLOUR, 3 * thin + 2) for t in truth]
    layers += [(p, FALSE_COLOUR if id(p) in false_ids else COLOURS[p.type], thin) for p in predicted]
    for p, colour, thickness in layers:
        pts = np.round(np.array(p.points(step=2.0)) * 16).astype(np.int32)
        cv2.polylines(canvas, [pts], p.type == "circle", colour, thickness, cv2.LINE_AA, 4)
    return canvas


# -- reading files -----------------------------------------------------------------------------------
def read_primitives(path: Path, height: float | None = None) -> list[Primitive]:
    """Primitives from our JSON, any SVG (line, polyline, polygon, circle, path M/L/H/V/A/Z) or a DXF."""
    return read_drawing(path, height)[0]


def read_drawing(path: Path, height: float | None = None) -> tuple[list[Primitive], Counter]:
    """(primitives, what the file draws that is none of them, by kind: elliptical arcs, curves, …)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text())
        items = data.get("primitives", data) if isinstance(data, dict) else data
        return [Primitive.from_dict(item) for item in items], Counter()
    if suffix == ".svg":
        drawing = parse_svg(path.read_bytes())
        return drawing.primitives, drawing.skipped
    if suffix == ".dxf":
        found = read_dxf_drawing(path, height=height)
        return found.primitives, found.skipped
    raise ValueError(f"{path}: unsupported file type (use .svg, .json or .dxf)")


def svg_height(path: Path) -> float | None:
    """The image height a prediction file records (SVG `height`, or our JSON's `height`)."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        return float(data["height"]) if isinstance(data, dict) and "height" in data else None
    if path.suffix.lower() != ".svg":
        return None
    return parse_svg(path.read_bytes()).height


def pairs(predictions: Path, truth: Path) -> list[tuple[Path, Path]]:
    if predictions.is_file() and truth.is_file():
        return [(predictions, truth)]
    if predictions.is_dir() and truth.is_dir():
        preds = _by_name(predictions)
        truths = _by_name(truth)
        common = sorted(set(preds) & set(truths))
        if not common:
            raise ValueError("no prediction and ground-truth files share a name")
        return [(preds[name], truths[name]) for name in common]
    raise ValueError("give two files or two folders")


def _by_name(folder: Path) -> dict[str, Path]:
    """Files by relative path without suffix (doc/0001); JSON wins over SVG (exact numbers)."""
    rank = {".json": 0, ".dxf": 1, ".svg": 2}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in rank or not path.is_file():
            continue
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key not in found or rank[suffix] < rank[found[key].suffix.lower()]:
            found[key] = path
    return found


def evaluate_paths(predictions: Path, truth: Path, tolerance: float = 3.0, height: float | None = None) -> dict:
    """Scores per image and pooled; `skipped_in_truth`: what the truth files draw that is not a
    primitive (counted, not scored); `worst_first`: image names, worst mean F1 first."""
    images, skipped = {}, Counter()
    for pred_path, true_path in pairs(predictions, truth):
        h = height
        if true_path.suffix.lower() == ".dxf" and h is None:
            sibling = pred_path.with_suffix(".svg")
            h = svg_height(pred_path) or (svg_height(sibling) if sibling.exists() else None)
        name = pred_path.relative_to(predictions).with_suffix("").as_posix() if predictions.is_dir() \
            else pred_path.stem
        true_primitives, true_skipped = read_drawing(true_path, height=h)
        images[name] = match(read_primitives(pred_path), true_primitives, tolerance)
        skipped += true_skipped
    return {"tolerance_px": tolerance, "images": len(images), "total": total(images.values()),
            "skipped_in_truth": dict(skipped), "worst_first": worst_first(images), "per_image": images}


# Where an image is looked for by name, first found wins when several share it: lossless PNG first, then
# the usual scan formats, then whatever else the platform accepts (the SDK's set is unordered: sorted).
_PREFERRED = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
IMAGE_SUFFIXES_IN_ORDER = _PREFERRED + tuple(sorted(IMAGE_SUFFIXES - set(_PREFERRED)))


def draw_worst(predictions: Path, truth: Path, images: Path, out: Path, names: list[str],
               height: float | None = None, tolerance: float = 3.0) -> list[str]:
    """A picture (overlay) of each named image, found in `images` by the same name as its
    prediction; returns the files written (an image not found is said, not skipped silently)."""
    out.mkdir(parents=True, exist_ok=True)
    by_name = {(p.relative_to(predictions).with_suffix("").as_posix() if predictions.is_dir() else p.stem): (p, t)
               for p, t in pairs(predictions, truth)}
    written = []
    for name in names:
        pred_path, true_path = by_name[name]
        found = [images / f"{name}{suffix}" for suffix in IMAGE_SUFFIXES_IN_ORDER] if images.is_dir() else [images]
        image_path = next((f for f in found if f.is_file()), None)
        if image_path is None:
            raise ValueError(f"no image named {name} (.png, .jpg, …) in {images}")
        rgb = np.asarray(Image.open(image_path).convert("RGB"))
        h = height if height is not None or true_path.suffix.lower() != ".dxf" else float(rgb.shape[0])
        picture = overlay(rgb, read_primitives(pred_path), read_primitives(true_path, height=h), tolerance=tolerance)
        target = out / f"{name.replace('/', '__')}.png"
        cv2.imwrite(str(target), picture[..., ::-1])
        written.append(str(target))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.demos.vectorization.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--tolerance", type=float, default=3.0, help="pixels (default 3)")
    parser.add_argument("--height", type=float, default=None, help="image height, to flip DXF's y axis")
    parser.add_argument("--per-image", action="store_true", help="also print each image's scores")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder (or file) of the images, named like the predictions, for --pictures")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="write <name>.png pictures (prediction over truth) of the worst images here")
    parser.add_argument("--worst", type=int, default=5, help="how many worst images get a picture (default 5)")
    args = parser.parse_args(argv)
    try:
        report = evaluate_paths(args.predictions, args.truth, args.tolerance, args.height)
        if args.pictures is not None:
            if args.images is None:
                raise ValueError("--pictures needs --images (the images the predictions were made from)")
            report["pictures"] = draw_worst(args.predictions, args.truth, args.images, args.pictures,
                                            report["worst_first"][:args.worst], args.height, args.tolerance)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.per_image:
        report.pop("per_image")
        report["worst_first"] = report["worst_first"][:10]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
