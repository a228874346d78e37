"""Similarity benchmark: precision and recall of the verified pairs on the real test sets, and the
time to compare 100 and 1,000 items on CPU.

    .venv/bin/python -m bench.similarity [--sets tune,held_out] [--seeds 0,1,2] [--sizes 100,1000]
                                         [--local-features sift] [--backbone FILE] [--threads 2]

Quality: each set of tests/data/similarity/sets.json (`tune`, on which the defaults were chosen,
and `held_out`, never tuned on) is built with each seed (api/demos/similarity/testset.py: 2-4
degraded copies of each reused picture in different documents, plus distractors), compared with
the default parameters, and scored: precision and recall of the reported pairs, and the precision
among the top pairs (as many as there are true pairs).

Speed: the items of both sets (seed 0) padded to N with tiles: random square crops of real
pictures that are in no set (scikit-image's retina, Hubble field, gravel and cell, and two scanned
pages of tests/data/pages), each degraded the same way; two tiles sharing most of their area are a
true pair too. Wall and CPU seconds per phase; precision over all reported pairs and recall of the
test sets' pairs at that scale. One process; prints JSON lines and a table.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "similarity"
PAGES = ROOT / "tests" / "data" / "pages"


def tiles(count: int, seed: int) -> tuple[list, dict]:
    """`count` distractor items, random square crops (160-400 px) of real pictures that are in no
    test set, degraded; and {key: (source, box)}, from which their own truth follows: two crops that
    share most of their area are a true pair (they show the same thing)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from api.demos.similarity.degrade import apply
    from api.demos.similarity.testset import PHOTO, Sample, recipe_for

    sources = [(n, Image.fromarray(np.asarray(getattr(skimage.data, n)())).convert("RGB"))
               for n in ("retina", "hubble_deep_field", "gravel", "cell")]
    for name in ("wiki-linux-scan.jpg", "linzensoep-typescript.png"):
        with Image.open(PAGES / name) as page:
            sources.append((Path(name).stem, page.convert("RGB")))
    weights = [p.width * p.height for _, p in sources]
    rng = random.Random(seed)
    out: list = []
    boxes: dict = {}
    while len(out) < count:
        name, picture = rng.choices(sources, weights)[0]
        side = rng.randint(160, min(400, picture.width, picture.height))
        x, y = rng.randint(0, picture.width - side), rng.randint(0, picture.height - side)
        crop = picture.crop((x, y, x + side, y + side))
        if np.asarray(crop.convert("L")).std() < 12:  # blank paper: no item a layout model would cut out
            continue
        recipe = recipe_for(PHOTO, rng)
        sample = Sample(apply(crop, recipe, seed=rng.randrange(1 << 30)), f"tiles{len(out) % 7}",
                        f"{name}-{x}-{y}-{side}", f"tile-{len(out)}", recipe.describe())
        out.append(sample)
        boxes[sample.key] = (name, (x, y, x + side, y + side))
    return out, boxes


def run(samples: list, params: dict, backbone=None) -> tuple:
    from api.demos.similarity.engine import Describer, compare

    cpu, wall = time.process_time(), time.perf_counter()
    describer = Describer(params, backbone)
    for sample in samples:
        describer.add(sample.image, sample.doc_uid, sample.name)
    result = compare(describer)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _shared(a: tuple, b: tuple) -> float:
    """Share of the smaller crop's area that two crops of one source have in common."""
    (sa, (ax0, ay0, ax1, ay1)), (sb, (bx0, by0, bx1, by1)) = a, b
    if sa != sb:
        return 0.0
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    return inter / min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))


def scores(result, samples: list, boxes: dict | None = None) -> dict:
    """Precision over every reported pair and recall over the test sets' true pairs. With tiles
    (`boxes`): two tiles sharing at least half of the smaller one are a true pair, sharing less but
    something is left out of the count (a partial overlap may or may not be found), nothing: false."""
    from api.demos.similarity.testset import score, truth

    boxes = boxes or {}
    true_pairs = truth([s for s in samples if s.key not in boxes])
    found = [(result.items[p.a].key, result.items[p.b].key) for p in result.pairs]
    counted, correct = 0, 0
    for a, b in found:
        if a in boxes and b in boxes:
            shared = _shared(boxes[a], boxes[b])
            if 0 < shared < 0.5:
                continue
            counted += 1
            correct += shared >= 0.5
        else:
            counted += 1
            correct += tuple(sorted((a, b))) in true_pairs
    report = score([f for f in found if f[0] not in boxes and f[1] not in boxes], true_pairs)
    report["precision"] = round(correct / counted, 4) if counted else 1.0
    report["reported_all"], report["correct_all"] = counted, correct
    test_found = [f for f in found if f[0] not in boxes or f[1] not in boxes]
    top = test_found[:len(true_pairs)]
    report["precision_at_top"] = round(sum(tuple(sorted(f)) in true_pairs for f in top) / max(len(top), 1), 4)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="tune,held_out")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sizes", default="100,1000", help="items per timed run (default 100,1000; '' for none)")
    parser.add_argument("--local-features", default="sift", choices=("sift", "orb"))
    parser.add_argument("--backbone", type=Path, help="a backbone checkpoint: CNN retrieval instead of VLAD")
    parser.add_argument("--threads", type=int, default=2, help="OpenCV and BLAS threads (default 2)")
    args = parser.parse_args()

    import cv2

    cv2.setNumThreads(args.threads)
    from api.demos.similarity import testset

    backbone = None
    if args.backbone:
        import torch

        from api.demos.similarity.backbone import load_backbone

        torch.set_num_threads(args.threads)
        backbone = load_backbone(args.backbone.parent, args.backbone.name, "cpu")
    params = {"local_features": args.local_features}
    rows = []
    for split in [s for s in args.sets.split(",") if s]:
        totals = {"reported": 0, "true": 0, "correct": 0}
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            samples = testset.build(DATA, split, seed=seed)
            result, wall, cpu = run(samples, params, backbone)
            report = {"set": split, "seed": seed, "items": len(samples), **scores(result, samples),
                      "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
            print(json.dumps(report), flush=True)
            for key in totals:
                totals[key] += report[key]
        rows.append({"set": split, "precision": round(totals["correct"] / max(totals["reported"], 1), 4),
                     "recall": round(totals["correct"] / max(totals["true"], 1), 4), **totals})
    timed = []
    base = testset.build(DATA, "tune", seed=0) + testset.build(DATA, "held_out", seed=0)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        extra, boxes = tiles(max(0, size - len(base)), seed=size)
        samples = (base + extra)[:size]
        result, wall, cpu = run(samples, params, backbone)
        entry = {"items": size, "candidates": result.candidates, "retrieval": result.feature, "wall_s": round(wall, 1),
                 "cpu_s": round(cpu, 1), **{k: round(v, 1) for k, v in result.timings.items()},
                 **scores(result, samples, boxes)}
        print(json.dumps(entry), flush=True)
        timed.append(entry)
    print("\nquality (default parameters, pairs reported at threshold 0.25):")
    for row in rows:
        print(f"  {row['set']:9s} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
              f"({row['correct']}/{row['reported']} reported correct, {row['true']} true pairs)")
    print("speed (CPU, one process):")
    for entry in timed:
        print(f"  {entry['items']:5d} items: {entry['wall_s']:.1f} s wall, {entry['cpu_s']:.1f} s CPU "
              f"(features {entry['features_s']}, retrieval {entry['retrieval_s']}, verify {entry['verify_s']} s; "
              f"{entry['candidates']} pairs verified); P {entry['precision']:.3f} R {entry['recall']:.3f}")


if __name__ == "__main__":
    main()
