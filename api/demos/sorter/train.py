"""Fine-tune (or train from nothing) the sorter's locator on labelled table photos.

    python -m api.demos.sorter.train <coco.json> <images folder> [--out DATA_FOLDER/models/sorter/locator.pt]
        [--arch mobilenet_v3_fpn|resnet50_fpn] [--epochs N] [--size 320] [--init existing.pt]

The labels are a COCO detection file (what most labelling tools export: CVAT, Label Studio,
labelme2coco, SorterBot's label tool). A category named `container` (or `containers`, `bin`,
`box`) becomes the container class; every other category is an item — the grouping, not the
locator, tells items apart. `--init` starts from an existing checkpoint (fine-tuning); without it
the network starts from random weights, which needs more epochs. Nothing is downloaded.

SorterBot users train on their own items this way; `synthetic.py` makes a first training set when
none exists (`--synthetic N` trains on N generated scenes instead of a COCO file).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .locator import ARCHS, CLASSES, build, save
from .synthetic import make_scenes

CONTAINER_NAMES = {"container", "containers", "bin", "bins", "box", "boxes"}
Sample = tuple[Image.Image, np.ndarray, np.ndarray]  # image, boxes (N×4, x0 y0 x1 y1), labels (N,)


def read_coco(coco_json: Path, images_folder: Path) -> list[Sample]:
    """(image, boxes, labels) for every image of a COCO file; `container` categories → 2, others → 1."""
    data = json.loads(Path(coco_json).read_text())
    kind = {c["id"]: 2 if c["name"].strip().lower() in CONTAINER_NAMES else 1 for c in data.get("categories", [])}
    per_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        if not ann.get("iscrowd"):
            per_image.setdefault(ann["image_id"], []).append(ann)
    samples: list[Sample] = []
    for info in data.get("images", []):
        path = Path(images_folder) / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} is named in {coco_json} but is not there")
        boxes, labels = [], []
        for ann in per_image.get(info["id"], []):
            x, y, w, h = ann["bbox"]
            if w >= 1 and h >= 1:
                boxes.append([x, y, x + w, y + h])
                labels.append(kind.get(ann["category_id"], 1))
        with Image.open(path) as im:
            samples.append((im.convert("RGB"), np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)))
    if not samples:
        raise ValueError(f"{coco_json} lists no images")
    return samples


def _augment(sample: Sample, rng: np.random.Generator) -> tuple[Any, dict]:
    """Flips (a table seen from above has no up) and a little brightness/contrast change."""
    image, boxes, labels = sample
    arr = np.asarray(image, np.float32) / 255
    h, w = arr.shape[:2]
    boxes = boxes.copy()
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        arr = arr[::-1]
        boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    arr = np.clip((arr - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.08, 0.08), 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return x, {"boxes": torch.from_numpy(boxes).float().reshape(-1, 4), "labels": torch.from_numpy(labels).long()}


def train_locator(samples: Sequence[Sample], *, arch: str = "mobilenet_v3_fpn", iterations: int = 300,
                  batch_size: int = 4, size: int = 320, head_dim: int = 256, fpn_channels: int = 128,
                  lr: float = 0.01, seed: int = 0, init: Path | None = None, device: str = "cpu",
                  log: Callable[[str], None] = print) -> Any:
    """Train a locator; return the model (eval mode), its shape in `model.sorter_shape` (what
    `save_trained` writes). SGD with momentum, warm-up then cosine decay. With `init`, the
    architecture is that checkpoint's and training starts from its weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ckpt = torch.load(init, map_location="cpu", weights_only=True) if init is not None else None
    if ckpt is not None:
        arch, head_dim, fpn_channels = ckpt["arch"], ckpt.get("head_dim", 1024), ckpt.get("fpn_channels", 256)
    model = build(arch, len(CLASSES), size, size, head_dim, fpn_channels)
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
    model.sorter_shape = {"arch": arch, "min_size": size, "max_size": size, "head_dim": head_dim,
                          "fpn_channels": fpn_channels}
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warm = max(1, iterations // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / warm if i < warm
        else 0.5 * (1 + np.cos(np.pi * (i - warm) / max(1, iterations - warm))))
    started = time.perf_counter()
    for it in range(iterations):
        picks = rng.integers(0, len(samples), batch_size)
        batch = [_augment(samples[i], rng) for i in picks]
        images = [x.to(device) for x, _ in batch]
        targets = [{k: v.to(device) for k, v in t.items()} for _, t in batch]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at iteration {it} (loss {loss.item()}); lower --lr")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        if it % 50 == 0 or it == iterations - 1:
            parts = ", ".join(f"{k[5:]} {v.item():.3f}" for k, v in losses.items())
            log(f"iteration {it + 1}/{iterations} loss {loss.item():.3f} ({parts}) "
                f"{time.perf_counter() - started:.0f}s")
    return model.eval()


def save_trained(model: Any, path: Path, source: str, trained: dict | None = None) -> None:
    """Write a model from `train_locator` as a checkpoint the demo loads."""
    save(model.cpu(), path, source=source, trained=trained, **model.sorter_shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.demos.sorter.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("coco", nargs="?", help="COCO detection JSON with item/container boxes")
    parser.add_argument("images", nargs="?", help="folder the COCO file's file_name entries are relative to")
    parser.add_argument("--out", default="locator.pt",
                        help="checkpoint to write (put it in DATA_FOLDER/models/sorter/)")
    parser.add_argument("--arch", default="mobilenet_v3_fpn", choices=ARCHS)
    parser.add_argument("--epochs", type=int, default=30, help="passes over the photos")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=320, help="network input size (shorter = longer side)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--head-dim", type=int, default=256, help="box head width (torchvision: 1024)")
    parser.add_argument("--fpn-channels", type=int, default=128, help="FPN width, MobileNet only (torchvision: 256)")
    parser.add_argument("--init", type=Path, help="start from this checkpoint (fine-tuning)")
    parser.add_argument("--synthetic", type=int, default=0, help="train on N generated scenes instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.synthetic:
        samples = [(s.image, s.boxes.astype(np.float32), s.labels.astype(np.int64))
                   for s in make_scenes(args.synthetic, seed=args.seed)]
        source = f"synthetic scenes ({args.synthetic}, seed {args.seed})"
    elif args.coco and args.images:
        samples = read_coco(Path(args.coco), Path(args.images))
        source = f"{Path(args.coco).name} ({len(samples)} photos)"
    else:
        parser.error("give <coco.json> <images folder>, or --synthetic N")
    iterations = max(1, args.epochs * len(samples) // args.batch)
    print(f"training {args.arch} on {len(samples)} photos, {iterations} iterations, device {device}", flush=True)
    model = train_locator(samples, arch=args.arch, iterations=iterations, batch_size=args.batch, size=args.size,
                          head_dim=args.head_dim, fpn_channels=args.fpn_channels, lr=args.lr, seed=args.seed,
                          init=args.init, device=device, log=lambda m: print(m, flush=True))
    save_trained(model, Path(args.out), source, trained={"iterations": iterations, "epochs": args.epochs,
                                                         "photos": len(samples), "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
