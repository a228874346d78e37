"""Vectorizers: one vector per item crop, so that similar items land near each other.

Two backends, same interface (`embed(crops) -> float32 array, one row per crop`):

- `CnnEmbedder` — a torchvision ResNet-18 cut at its average pool (512 values), crops resized to
  224 px with ImageNet normalisation, run in batches; as SorterBot's vectorizer did. Its weights
  come from a checkpoint in the demo's models folder (`backbone.pt`, see `save_backbone`) or, when
  the user has placed them in TORCH_HOME, torchvision's ImageNet weights. Nothing is downloaded.
- `DescriptorEmbedder` — no weights at all: colour (Lab mean and hue histogram of the item's own
  pixels, told apart from the table by the crop's border) and shape (the first two Hu moments, solidity, extent,
  elongation, holes), standardised over the job's items. For when no backbone is present.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.models import ResNet18_Weights

from .backbone_runtime import choose_forward
from .locator import write_sidecar

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.pt"
CROP_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def crop(image: Image.Image, box: Sequence[float], margin: float = 0.15) -> Image.Image:
    """The box cut out of the image, widened by `margin` of its size on every side (clipped), so
    the item's outline and a ring of table stay in view: the descriptors read the table there."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    left, top = max(0, int(round(x0 - mx))), max(0, int(round(y0 - my)))
    right, bottom = min(image.width, int(round(x1 + mx))), min(image.height, int(round(y1 + my)))
    return image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


# -- weights-free descriptors ---------------------------------------------------------------------
def _foreground(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are not table: far (in Lab) from the median colour of the crop's border."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    ref = np.median(border, axis=0)
    dist = np.linalg.norm(lab - ref, axis=2)
    spread = np.median(np.linalg.norm(border - ref, axis=1))
    scaled = np.clip(dist / max(dist.max(), 1e-6) * 255, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (mask > 0) & (dist > max(3 * spread, 12))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, 8)
    if count <= 1:
        return np.ones(mask.shape, bool)
    # keep the component nearest the centre among the large ones: the item, not a neighbour's edge
    h, w = mask.shape
    best, best_score = 1, -1.0
    for i in range(1, count):
        x, y, bw, bh, area = stats[i]
        cx, cy = x + bw / 2, y + bh / 2
        score = area / (1 + ((cx - w / 2) ** 2 + (cy - h / 2) ** 2) / (w * h))
        if score > best_score:
            best, best_score = i, score
    return labels == best


def describe(image: Image.Image, size: int = 96) -> np.ndarray:
    """Colour and shape descriptor of one crop (see the module doc)."""
    rgb = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    mask = _foreground(rgb)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)[mask]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[mask]
    lab_mean = lab.mean(axis=0) / 255.0 if len(lab) else np.zeros(3)
    # hue as a circular mean weighted by saturation (grey things vote little); a histogram would
    # split red between its first and last bins, since hue wraps around at red
    hue = hsv[:, 0].astype(np.float32) * 2 * np.pi / 180
    sat = hsv[:, 1].astype(np.float32) / 255
    hue_vec = np.array([(np.cos(hue) * sat).mean(), (np.sin(hue) * sat).mean()], np.float32) if len(hue) \
        else np.zeros(2, np.float32)
    m8 = mask.astype(np.uint8)
    hu = cv2.HuMoments(cv2.moments(m8, binaryImage=True)).ravel()
    hu = -np.sign(hu) * np.log10(np.abs(hu) + 1e-30)
    hu = np.clip(hu, -30, 30)[:2] / 10  # the higher moments are ~0 for symmetric shapes: log-noise
    contours, _ = cv2.findContours(m8, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    area = float(mask.sum())
    solidity = extent = elong = holes = 0.0
    if contours:
        outer = max(contours, key=cv2.contourArea)
        hull = cv2.contourArea(cv2.convexHull(outer))
        solidity = area / hull if hull > 0 else 0.0
        (_, _), (rw, rh), _ = cv2.minAreaRect(outer)
        extent = area / (rw * rh) if rw * rh > 0 else 0.0
        elong = min(rw, rh) / max(rw, rh) if max(rw, rh) > 0 else 0.0
        filled = np.zeros_like(m8)
        cv2.drawContours(filled, [outer], -1, 1, -1)
        holes = float(filled.sum() - area) / max(float(filled.sum()), 1.0)
    shape = np.array([solidity, extent, elong, holes], np.float32)
    return np.concatenate([lab_mean * 3, hue_vec * 2, hu, shape * 2]).astype(np.float32)


class DescriptorEmbedder:
    """Colour + shape descriptors; needs no weights (see `describe`)."""

    name = "descriptors"

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        if not crops:
            return np.zeros((0, 11), np.float32)
        return np.stack([describe(c) for c in crops])


# -- CNN backbone ---------------------------------------------------------------------------------
def resnet18_trunk() -> Any:
    """ResNet-18 without its classifier: image → 512 average-pooled features. No weights."""
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    return net


def save_backbone(trunk: Any, path: Path, source: str) -> None:
    """Write a backbone checkpoint the demo loads (`CnnEmbedder.from_folder`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"arch": "resnet18", "kind": "backbone", "dim": 512, "source": source,
                "state_dict": {k: v for k, v in trunk.state_dict().items() if not k.startswith("fc.")}}, tmp)
    os.replace(tmp, path)
    write_sidecar(path, {"kind": "backbone", "arch": "resnet18", "dim": 512, "classes": [], "source": source})


def torchvision_weights_present() -> bool:
    """True when torchvision's ImageNet ResNet-18 file is already in TORCH_HOME (never fetched)."""
    name = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()


def normalise(x: torch.Tensor) -> torch.Tensor:
    """NCHW pixels in [0, 1] as ImageNet-trained networks expect them."""
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


class CnnEmbedder:
    """ResNet-18 average-pool features of 224-px ImageNet-normalised crops, in batches."""

    name = "cnn"

    def __init__(self, trunk: Any, device: str = "cpu", batch_size: int = 32, source: str = ""):
        self.device = device
        self.batch_size = batch_size
        self.source = source
        self.trunk = trunk.to(device).eval()
        self.runtime, self.runtime_report = "torch", {}

        def forward(x):
            with torch.inference_mode():
                return self.trunk(x.to(self.device)).float().cpu().numpy()

        self.forward = forward

    def use_fastest_runtime(self, setting: str, weights: Path | None, cache_root: Path) -> None:
        """Run the trunk through OpenVINO when it matches PyTorch and is faster (backbone_runtime)."""
        self.forward, self.runtime, self.runtime_report = choose_forward(
            self.trunk, self.device, setting, weights, cache_root)

    @classmethod
    def from_folder(cls, folder: Path, device: str = "cpu", runtime: str = "torch",
                    cache_root: Path | None = None) -> CnnEmbedder | None:
        """The backbone of `folder` (see `_load`) through `runtime` (INFERENCE_RUNTIME); any runtime
        but torch needs `cache_root`, where conversions are kept (the demo's `exports_folder`)."""
        embedder = cls._load(folder, device)
        if embedder is not None and runtime != "torch":
            if cache_root is None:
                raise ValueError(f"runtime {runtime!r} needs a cache_root for its conversions")
            weights = Path(folder) / BACKBONE_FILE
            embedder.use_fastest_runtime(runtime, weights if weights.is_file() else None, cache_root)
        return embedder

    @classmethod
    def _load(cls, folder: Path, device: str = "cpu") -> CnnEmbedder | None:
        """The backbone from `folder/backbone.pt`, else torchvision's ImageNet weights when present
        in TORCH_HOME; None when neither is there (the caller falls back to descriptors)."""
        path = Path(folder) / BACKBONE_FILE
        trunk = resnet18_trunk()
        if path.is_file():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            trunk.load_state_dict(ckpt["state_dict"], strict=False)
            return cls(trunk, device, source=f"{path.name}: {ckpt.get('source', '')}")
        if torchvision_weights_present():
            full = torchvision.models.resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
            full.fc = torch.nn.Identity()
            return cls(full, device, source="torchvision ResNet18_Weights.IMAGENET1K_V1 (TORCH_HOME)")
        return None

    def tensor(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        arr = np.stack([np.asarray(c.convert("RGB").resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR)) for c in crops])
        return normalise(torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255)

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        if not crops:
            return np.zeros((0, 512), np.float32)
        out = [self.forward(self.tensor(crops[i:i + self.batch_size])) for i in range(0, len(crops), self.batch_size)]
        return np.concatenate(out).astype(np.float32)


def train_backbone(crops: Sequence[Image.Image], labels: Sequence[int], steps: int = 200, batch: int = 32,
                   seed: int = 0, lr: float = 1e-3) -> Any:
    """Teach a weights-free ResNet-18 to tell labelled crops apart (classification head thrown
    away afterwards). For when no ImageNet weights can be had: a few hundred steps on crops of the
    user's own items (or generated ones, in the tests) give average-pool features that group them."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    trunk = resnet18_trunk()
    n_classes = int(max(labels)) + 1
    head = torch.nn.Linear(512, n_classes)
    model = torch.nn.Sequential(trunk, head).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    y_all = torch.tensor(list(labels))
    size = 64  # small inputs while training: fast on CPU; the trunk is size-agnostic (global pool)
    small = [c.convert("RGB").resize((size, size), Image.BILINEAR) for c in crops]
    arr = normalise(torch.from_numpy(np.stack([np.asarray(c) for c in small])).permute(0, 3, 1, 2).float() / 255)
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(small), batch))
        x = arr[idx]
        if rng.random() < 0.5:
            x = x.flip(3)
        x = torch.rot90(x, int(rng.integers(0, 4)), (2, 3))
        loss = torch.nn.functional.cross_entropy(model(x), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return trunk.eval()
