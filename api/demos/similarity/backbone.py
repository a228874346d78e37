"""A CNN or ViT backbone from DATA_FOLDER/models/similarity/ giving one global descriptor per item,
for candidate retrieval only (local features give the final score). Nothing is downloaded: the
checkpoint is a torchvision state dict put there by hand (e.g. `resnet50-0676ba61.pth` or
`vit_b_16-c867db91.pth` copied from TORCH_HOME/hub/checkpoints), or `{"arch": ..., "state_dict": ...}`.

ResNets are pooled with generalised mean (GeM, p = 3) over their last feature map, which retrieves
the same object better than the average pool they were trained with; ViTs give their class token.
Imported by `load_model` only: a job on local features never pays for importing torch.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image

INPUT = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ARCH = re.compile(r"^(resnet(?:18|34|50|101|152)|wide_resnet(?:50|101)_2|resnext\d+_\d+x\d+d|vit_[bhl]_(?:14|16|32))")


class Backbone:
    """(arch, model): `embed(images, transpositions)` → {transposition: N × d unit vectors}."""

    def __init__(self, arch: str, model: Any, device: str, source: str):
        self.arch = arch
        self.model = model.to(device).eval()
        self.device = device
        self.source = source
        self.vit = arch.startswith("vit_")

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.vit:
            return self.model(x)  # heads replaced by Identity: the class token
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return x.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)  # GeM, p = 3

    def embed(self, images: Sequence[Image.Image], transpositions: Sequence[str] = ("none",),
              batch: int = 32) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {t: [] for t in transpositions}
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        for start in range(0, len(images), batch):
            chunk = [np.asarray(im.convert("RGB").resize((INPUT, INPUT), Image.Resampling.BILINEAR))
                     for im in images[start:start + batch]]
            x = (torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).float() / 255 - mean) / std
            for name in transpositions:
                with torch.inference_mode():
                    v = self._features(transpose(x, name).to(self.device)).float().cpu()
                out[name].append(torch.nn.functional.normalize(v, dim=1).numpy())
        return {t: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for t, v in out.items()}


def transpose(x: torch.Tensor, name: str) -> torch.Tensor:
    """The reference's transpositions of an NCHW batch."""
    if name == "rot90":
        return torch.rot90(x, 1, (2, 3))
    if name == "rot180":
        return torch.rot90(x, 2, (2, 3))
    if name == "rot270":
        return torch.rot90(x, 3, (2, 3))
    if name == "hflip":
        return x.flip(3)
    if name == "vflip":
        return x.flip(2)
    return x


def arch_of(path: Path, checkpoint: Any) -> str:
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("arch"), str):
        return checkpoint["arch"]
    found = ARCH.match(path.name.lower())
    if found:
        return found.group(1)
    raise ValueError(f"{path.name}: cannot tell the architecture; name the file after it (resnet50-….pth, "
                     f"vit_b_16-….pth) or save {{'arch': 'resnet50', 'state_dict': ...}}")


def load_backbone(folder: Path, name: str, device: str) -> Backbone | None:
    """The checkpoint `folder/name` as a Backbone; None when `name` is empty (local features only)."""
    if not name:
        return None
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"no backbone {path}: put a torchvision ResNet or ViT state dict there "
                                f"(nothing is downloaded), or use feature=local")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    arch = arch_of(path, checkpoint)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    model = torchvision.models.get_model(arch, weights=None)
    head = "heads." if arch.startswith("vit_") else "fc."
    missing, _unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head)]
    if missing:
        raise ValueError(f"{path.name}: not a {arch} state dict (missing {', '.join(missing[:3])}…)")
    if arch.startswith("vit_"):
        model.heads = torch.nn.Identity()
    else:
        model.fc = torch.nn.Identity()
    source = checkpoint.get("source", "") if isinstance(checkpoint, dict) and "state_dict" in checkpoint else ""
    return Backbone(arch, model, device, f"{path.name}{': ' + source if source else ''}")
