"""Sorter benchmark: seconds per photo for locate, embed and group, at 1, 8 and 32 photos per job.

    .venv/bin/python -m bench.sorter [--model DATA_FOLDER/models/sorter/locator.pt] [--backbone backbone.pt]
                                     [--sizes 1,8,32] [--threads 2] [--device cpu]

Photos are generated table scenes (640×480, 4 containers, 12 items of 4 kinds). Without --model a
locator is trained first on generated scenes (as the tests do) and kept in --cache, so the timings
are those of a model that really finds the items (an untrained one finds nothing, which would make
embed and group look free). The CNN row uses --backbone when given, else a ResNet-18 with random
weights: the time is the same, only the grouping would differ. One run; prints a table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def ensure_trained(model_path: Path) -> None:
    """Train the benches' locator on generated scenes unless `model_path` exists: an untrained one
    finds nothing, which would make everything after locating look free."""
    if model_path.is_file():
        return
    import numpy as np

    from api.demos.sorter.synthetic import make_scenes
    from api.demos.sorter.train import save_trained, train_locator

    print(f"no locator at {model_path}: training one on 60 generated scenes (200 iterations)...", flush=True)
    scenes = make_scenes(60, seed=1)
    started = time.perf_counter()
    model = train_locator([(s.image, s.boxes.astype(np.float32), s.labels.astype(np.int64)) for s in scenes],
                          iterations=200, batch_size=2, size=320, lr=0.02, seed=0, log=lambda m: None)
    save_trained(model, model_path, "bench: 60 synthetic scenes, 200 iterations")
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--backbone", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/sorter-bench"))
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from api.demos.sorter.embed import CnnEmbedder, DescriptorEmbedder, resnet18_trunk
    from api.demos.sorter.locator import Locator
    from api.demos.sorter.pipeline import sort_photos
    from api.demos.sorter.synthetic import make_scene

    torch.set_num_threads(args.threads)
    model_path = args.model or args.cache / "locator.pt"
    ensure_trained(model_path)
    locator = Locator.load(model_path, args.device)
    if args.backbone:
        cnn = CnnEmbedder.from_folder(args.backbone.parent, args.device)
    else:
        cnn = CnnEmbedder(resnet18_trunk(), args.device, source="random weights (timing only)")
    sizes = [int(s) for s in args.sizes.split(",")]
    photos = [(f"bench/{i}", str(i), make_scene(31_000 + i, 640, 480, n_containers=4, n_items=12,
                                                kinds=[0, 1, 2, 3]).image) for i in range(max(sizes))]
    params = {"score_threshold": 0.5, "n_groups": 0, "dedup_distance": 150.0, "arm_constants": None}
    sort_photos(photos[:1], locator, DescriptorEmbedder(), params)  # warm-up
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {args.threads} thread(s)"
    print(f"\nsorter bench — {device}, locator {model_path.name} "
          f"({locator.header.get('arch')}, {locator.header.get('min_size')} px); seconds per photo")
    print(f"{'photos':>6} {'embedding':<12} {'items':>6} {'locate':>8} {'embed':>8} {'group':>8} {'total':>8}")
    for n in sizes:
        for embedder in (DescriptorEmbedder(), cnn):
            result, _ = sort_photos(photos[:n], locator, embedder, params)
            t = result["timings"]
            total = t["locate_s"] + t["embed_s"] + t["group_s"]
            items = sum(1 for d in result["detections"] if d["class"] == "item")
            print(f"{n:>6} {embedder.name:<12} {items:>6} {t['locate_s'] / n:>8.3f} {t['embed_s'] / n:>8.3f} "
                  f"{t['group_s'] / n:>8.3f} {total / n:>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
