"""The locator: a torchvision Faster R-CNN that finds items and containers on a table photo.

Architectures: `mobilenet_v3_fpn` (Faster R-CNN MobileNet-v3-Large-FPN; light, the default) and
`resnet50_fpn` (Faster R-CNN ResNet-50-FPN; heavier, more accurate on real photos). Both are built
with `weights=None, weights_backbone=None` — nothing is ever downloaded — and take their weights
from a checkpoint in the demo's models folder:

    torch.save({"format": "sorter-locator/1", "arch": "mobilenet_v3_fpn",
                "classes": ["background", "item", "container"], "min_size": 320, "max_size": 320,
                "head_dim": 256, "fpn_channels": 128, "state_dict": model.state_dict(), "source": "...",
                "trained": {...}}, path)

`python -m api.demos.sorter.train` writes such files (see train.py).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models import detection, mobilenet_v3_large
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

FORMAT = "sorter-locator/1"
CLASSES = ["background", "item", "container"]
ARCHS = ("mobilenet_v3_fpn", "resnet50_fpn")


class LocatorMissing(RuntimeError):
    """No usable locator checkpoint: the message tells the user what to put where."""


def build(arch: str = "mobilenet_v3_fpn", num_classes: int = 3, min_size: int = 320, max_size: int = 320,
          head_dim: int = 1024, fpn_channels: int = 256) -> Any:
    """An untrained Faster R-CNN of the given architecture (no weights are fetched).

    `mobilenet_v3_fpn` is torchvision's Faster R-CNN MobileNet-v3-Large-FPN with the FPN also fed
    from the stride-8 and stride-16 stages and anchors from 16 px: torchvision's own builder reads
    only the stride-32 stages, which suits COCO but loses the small items of a table photo.
    `resnet50_fpn` is torchvision's builder unchanged. `head_dim` is the width of the box head's
    two layers (torchvision's 1024 by default; 256 trains several times faster on a CPU and is
    plenty for two classes). `fpn_channels` (MobileNet only; torchvision: 256) narrows the FPN and
    the RPN head: at 128 they cost a quarter, which matters most at stride 8. Proposal and sampling
    counts are cut from torchvision's COCO settings (2000 proposals, 512 sampled boxes) to what a
    table of a few dozen objects needs."""
    common: dict[str, Any] = dict(
        min_size=min_size, max_size=max_size,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=200, rpn_batch_size_per_image=128, box_batch_size_per_image=128,
        box_detections_per_img=100)
    if arch == "mobilenet_v3_fpn":
        features = mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d).features
        # as torchvision's mobilenet_backbone: stages start at the strided blocks; take strides 8, 16, 32
        stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
        taken = [2, 3, 5]
        backbone = BackboneWithFPN(features, {str(stages[k]): str(v) for v, k in enumerate(taken)},
                                   [features[stages[k]].out_channels for k in taken], fpn_channels)
        anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
        model = detection.FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **common)
    elif arch == "resnet50_fpn":
        model = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                                  **common)
    else:
        raise ValueError(f"unknown locator architecture {arch!r}; use one of {', '.join(ARCHS)}")
    if head_dim != 1024 or fpn_channels != 256:
        model.roi_heads.box_head = TwoMLPHead(fpn_channels * 7 * 7, head_dim)
        model.roi_heads.box_predictor = FastRCNNPredictor(head_dim, num_classes)
    return model


def save(model: Any, path: Path, *, arch: str, min_size: int, max_size: int, source: str, head_dim: int = 1024,
         fpn_channels: int = 256, trained: dict | None = None, classes: Sequence[str] = CLASSES) -> None:
    """Write a checkpoint atomically (a worker may be reading the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "arch": arch, "classes": list(classes), "min_size": min_size,
                "max_size": max_size, "head_dim": head_dim,
                "fpn_channels": fpn_channels, "source": source, "trained": trained or {},
                "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)
    write_sidecar(path, {"format": FORMAT, "kind": "locator", "arch": arch, "classes": list(classes),
                         "min_size": min_size, "max_size": max_size, "source": source, "trained": trained or {}})


def write_sidecar(path: Path, header: dict) -> None:
    """`<checkpoint>.json` beside a checkpoint: its metadata, for GET /sorter/models, which runs in
    the API process where torch is never imported."""
    side = Path(path).with_suffix(".json")
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(header, indent=1))
    os.replace(tmp, side)


def missing_message(folder: Path, name: str) -> str:
    return (f"no locator checkpoint {name!r} in {folder}: put a sorter locator checkpoint there "
            f"(or set SORTER_MODEL to one that is), or train one from labelled photos with "
            f"`python -m api.demos.sorter.train <coco.json> <images folder> --out {Path(folder) / name}`")


@dataclass
class Detection:
    box: tuple[float, float, float, float]
    label: str
    score: float


class Locator:
    """A loaded checkpoint, ready to find items and containers in batches of photos."""

    def __init__(self, model: Any, header: dict, device: str = "cpu", name: str = ""):
        self.model = model.to(device).eval()
        self.header = header
        self.device = device
        self.name = name
        self.classes = list(header.get("classes", CLASSES))

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Locator:
        path = Path(path)
        if not path.is_file():
            raise LocatorMissing(missing_message(path.parent, path.name))
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: say which and why
            raise LocatorMissing(f"locator checkpoint {path} cannot be read ({exc}); "
                                 "replace it or train a new one with `python -m api.demos.sorter.train`") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise LocatorMissing(f"{path} is not a sorter locator checkpoint (format {FORMAT}); "
                                 "train one with `python -m api.demos.sorter.train`")
        model = build(ckpt["arch"], len(ckpt["classes"]), ckpt["min_size"], ckpt["max_size"],
                      ckpt.get("head_dim", 1024), ckpt.get("fpn_channels", 256))
        model.load_state_dict(ckpt["state_dict"])
        return cls(model, {k: v for k, v in ckpt.items() if k != "state_dict"}, device, path.name)

    def detect(self, images: Sequence[Image.Image], score_threshold: float = 0.5,
               batch_size: int = 4) -> list[list[Detection]]:
        """Detections per image (boxes in the image's own pixels), best score first."""
        results: list[list[Detection]] = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                batch = [torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float().div(255)
                         .to(self.device) for im in images[i:i + batch_size]]
                for out in self.model(batch):
                    found = []
                    for box, label, score in zip(out["boxes"].cpu().numpy(), out["labels"].cpu().numpy(),
                                                 out["scores"].cpu().numpy(), strict=True):
                        if score < score_threshold or not 0 < label < len(self.classes):
                            continue
                        found.append(Detection(tuple(float(v) for v in box), self.classes[label], float(score)))
                    results.append(found)
        return results
