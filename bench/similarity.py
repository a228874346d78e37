"""Similarity benchmark: precision and recall of the verified pairs on the real test sets, and the
time to compare 100 and 1,000 items on CPU.

    .venv/bin/python -m bench.similarity [--sets tune,held_out] [--seeds 0,1,2] [--sizes 100,1000]
                                         [--local-features sift] [--backbone FILE] [--threads 2]

Quality: each set of tests/data/similarity/sets.json (`tune`, on which the defaults were chosen,
and `held_out`, never tuned on) is built with each seed (api/demos/similarity/testset.py: 2-4
degraded copies of each reused picture in different documents, plus distractors), compared with
the default parameters, and scored: precision and recall of the reported pairs, and the precision
among the top pairs (as many as there are true pairs).

Speed: the items of both sets padded to N with distractor tiles, non-overlapping pieces of real
pictures that are in no set (scikit-image's retina, Hubble field, gravel and cell, and two scanned
pages of tests/data/pages), each degraded the same way. Wall and CPU seconds per phase;
precision and recall at that scale too (the tiles have no partner). One process; prints JSON lines
and a table.
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


def tiles(count: int, seed: int) -> list:
    """`count` distractor items: grid tiles of real pictures outside the test sets, degraded."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from api.demos.similarity.degrade import apply
    from api.demos.similarity.testset import PHOTO, Sample, recipe_for

    sources = [(f"sk-{n}", Image.fromarray(np.asarray(getattr(skimage.data, n)())).convert("RGB"))
               for n in ("retina", "hubble_deep_field", "gravel", "cell")]
    for name in ("wiki-linux-scan.jpg", "linzensoep-typescript.png"):
        with Image.open(PAGES / name) as page:
            sources.append((Path(name).stem, page.convert("RGB")))
    cells = []
    for name, picture in sources:
        side = max(160, min(picture.size) // 4)
        for y in range(0, picture.height - side + 1, side):
            for x in range(0, picture.width - side + 1, side):
                cells.append((name, x, y, side, picture))
    rng = random.Random(seed)
    rng.shuffle(cells)
    out = []
    for i in range(count):
        name, x, y, side, picture = cells[i % len(cells)]
        crop = picture.crop((x, y, x + side, y + side))
        if i >= len(cells):  # more tiles than cells: the same cell again, turned (still no true partner kept)
            crop = crop.rotate(90 * (i // len(cells)), expand=True)
        recipe = recipe_for(PHOTO, rng)
        out.append(Sample(apply(crop, recipe, seed=rng.randrange(1 << 30)), f"tiles{i % 7}", f"{name}-{x}-{y}-{i}",
                          f"tile-{i}", recipe.describe()))
    return out


def run(samples: list, params: dict, backbone=None) -> tuple:
    from api.demos.similarity.engine import Describer, compare

    cpu, wall = time.process_time(), time.perf_counter()
    describer = Describer(params, backbone)
    for sample in samples:
        describer.add(sample.image, sample.doc_uid, sample.name)
    result = compare(describer)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def scores(result, samples: list) -> dict:
    from api.demos.similarity.testset import score, truth

    true_pairs = {p for p in truth(samples) if not p[0].startswith("tiles")}
    found = [(result.items[p.a].key, result.items[p.b].key) for p in result.pairs]
    report = score(found, true_pairs)
    top = found[:len(true_pairs)]
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
        samples = (base + tiles(max(0, size - len(base)), seed=size))[:size]
        result, wall, cpu = run(samples, params, backbone)
        entry = {"items": size, "candidates": result.candidates, "retrieval": result.feature, "wall_s": round(wall, 1),
                 "cpu_s": round(cpu, 1), **{k: round(v, 1) for k, v in result.timings.items()},
                 **scores(result, samples)}
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
