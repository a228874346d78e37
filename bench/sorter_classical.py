"""Sorter locators side by side: the classical one (no weights, classical.py) and a trained checkpoint
(locator.py): seconds per photo, recall of items and containers at IoU ≥ 0.5, and the ARI of the
groups that the whole pipeline (weights-free descriptors, grouping) makes from what each found.

    .venv/bin/python -m bench.sorter_classical [--model DATA_FOLDER/models/sorter/locator.pt] [--scenes 30]
                                               [--threads 2] [--device cpu]

Sets: generated scenes at 320×240 (2 or 3 bins, 5 to 9 items, the test's seed 77), generated scenes
at 640×480 (4 bins, 12 items of 4 kinds), and the real photos of tests/data/sorter/ (no bins;
boxes checked by eye, see its README). ARI: per photo, the found items matched to the true ones
(IoU ≥ 0.5) and their groups compared with the true kinds, averaged over photos; on the real
photos only the sweets have kinds (five colours, n_groups=5). Without --model a locator is trained
first on generated scenes as bench/sorter.py does (same cache, so either bench reuses it). One run;
prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.sorter import ensure_trained

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "sorter"


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def matched(truth_boxes, boxes) -> list:
    """For each true box, the index of the found box covering it at IoU ≥ 0.5 (the best), or None."""
    out = []
    for t in truth_boxes:
        scores = [iou(t, b) for b in boxes]
        best = max(range(len(scores)), key=scores.__getitem__) if scores else None
        out.append(best if best is not None and scores[best] >= 0.5 else None)
    return out


def measure(locator, photos, n_groups: int = 0) -> dict:
    """photos: [(image, [(box, "item"|"container", kind or None)])]. Locate timed alone, then the
    pipeline (descriptors, grouping) on each photo for the ARI."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from api.demos.sorter.embed import DescriptorEmbedder
    from api.demos.sorter.pipeline import sort_photos

    locator.detect([photos[0][0]])  # warm-up
    started = time.perf_counter()
    found = [locator.detect([image])[0] for image, _ in photos]
    seconds = (time.perf_counter() - started) / len(photos)
    hits = {"item": [0, 0], "container": [0, 0]}
    extra, aris = 0, []
    params = {"score_threshold": 0.5, "n_groups": n_groups, "dedup_distance": 150.0, "arm_constants": None}
    for (image, truth), dets in zip(photos, found, strict=True):
        extra += len(dets) - len(truth)
        for label in hits:
            boxes = [t[0] for t in truth if t[1] == label]
            hits[label][0] += sum(m is not None for m in matched(boxes, [d.box for d in dets if d.label == label]))
            hits[label][1] += len(boxes)
        kinds = [t for t in truth if t[1] == "item" and t[2] is not None]
        if len({t[2] for t in kinds}) > 1:
            result, _ = sort_photos([("bench/p", "p.jpg", image)], locator, DescriptorEmbedder(), params)
            items = [d for d in result["detections"] if d["class"] == "item"]
            pairs = [(t[2], items[m]["group"]) for t, m in zip(kinds, matched([t[0] for t in kinds],
                                                                               [d["box"] for d in items]),
                                                            strict=True) if m is not None]
            aris.append(adjusted_rand_score(*zip(*pairs, strict=True)) if len(pairs) > 1 else 0.0)
    return {"s": seconds, "items": hits["item"], "containers": hits["container"], "extra": extra,
            "ari": float(np.mean(aris)) if aris else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/sorter-bench"))
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import cv2
    import torch
    from PIL import Image

    from api.demos.sorter.classical import ClassicalLocator
    from api.demos.sorter.locator import Locator
    from api.demos.sorter.synthetic import ITEM, make_scene, make_scenes

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    model_path = args.model or args.cache / "locator.pt"
    ensure_trained(model_path)
    locators = [ClassicalLocator(), Locator.load(model_path, args.device)]

    def generated(scenes):
        return [(s.image, [(tuple(b), "item" if lab == ITEM else "container", int(k) if lab == ITEM else None)
                           for b, lab, k in zip(s.boxes, s.labels, s.kinds, strict=True)]) for s in scenes]

    sets = [("generated 320×240", generated(make_scenes(args.scenes, seed=77)), 0),
            ("generated 640×480", generated([make_scene(4200 + i, 640, 480, n_containers=4, n_items=12,
                                                        kinds=[0, 1, 2, 3]) for i in range(args.scenes)]), 0)]
    truth = json.loads((REAL / "truth.json").read_text())
    for name, entry in truth.items():
        groups = {it["group"] for it in entry["items"]}
        kind = name == "smarties.png"  # the only photo whose objects fall into kinds (five colours)
        photo = [(Image.open(REAL / name).convert("RGB"),
                  [(tuple(it["box"]), "item", it["group"] if kind else None) for it in entry["items"]])]
        sets.append((f"real {name}", photo, len(groups) if kind else 0))

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {args.threads} thread(s)"
    print(f"\nsorter locators — {device}; trained: {model_path.name} ({locators[1].header.get('arch')}, "
          f"{locators[1].header.get('min_size')} px); recall at IoU 0.5, score 0.5; ARI with descriptors")
    print(f"{'set':<26} {'locator':<12} {'ms/photo':>9} {'items':>13} {'containers':>13} {'extra':>6} {'ARI':>6}")
    for title, photos, n_groups in sets:
        for locator in locators:
            m = measure(locator, photos, n_groups)
            items = f"{m['items'][0] / m['items'][1]:.3f} ({m['items'][1]})" if m["items"][1] else "-"
            conts = f"{m['containers'][0] / m['containers'][1]:.3f} ({m['containers'][1]})" \
                if m["containers"][1] else "-"
            ari = f"{m['ari']:.3f}" if m["ari"] is not None else "-"
            print(f"{title:<26} {locator.name[:12]:<12} {m['s'] * 1000:>9.1f} {items:>13} {conts:>13} "
                  f"{m['extra']:>+6} {ari:>6}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
