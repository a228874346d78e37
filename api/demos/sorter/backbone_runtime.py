"""The embedding backbone through the fastest faithful runtime (INFERENCE_RUNTIME), as regions
does for its detector: on CPU, the ResNet-18 trunk converted once to OpenVINO (cached beside the
models, made under a file lock), kept only if its features match PyTorch's (cosine ≥ 0.999 on
every probe crop) and if it is faster on a batch of crops; else PyTorch. On CUDA, PyTorch."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from api.sdk import check_runtime_setting, export_folder, file_lock

try:
    import openvino as ov
except ImportError:  # pragma: no cover - in requirements.txt; without it the backbone runs in PyTorch
    ov = None

log = logging.getLogger(__name__)
PROBE_BATCH = 16


def probe_batch(size: int = 224) -> np.ndarray:
    """Deterministic, ImageNet-normalised crop-like inputs (NCHW float32)."""
    rng = np.random.default_rng(0)
    x = np.zeros((PROBE_BATCH, 3, size, size), np.float32)
    for i in range(PROBE_BATCH):
        x[i] = rng.normal(0, 1, (3, 1, 1))  # a flat colour per crop...
        y0, x0 = rng.integers(20, size // 2, 2)
        x[i, :, y0:y0 + size // 3, x0:x0 + size // 3] += rng.normal(0, 1.5, (3, 1, 1))  # ...and a shape
    return x


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def choose_forward(trunk: Any, device: str, setting: str, weights: Path | None,
                   cache_root: Path) -> tuple[Callable[[Any], np.ndarray], str, dict]:
    """(forward: NCHW torch tensor → features as numpy, runtime name, report)."""
    check_runtime_setting(setting)

    def torch_forward(x):
        with torch.inference_mode():
            return trunk(x.to(device)).float().cpu().numpy()

    if (device.startswith("cuda") or setting not in ("auto", "openvino") or weights is None
            or ov is None):
        return torch_forward, "torch", {}
    folder = export_folder(cache_root, weights) / "openvino"
    record = folder / "choice.json"
    with file_lock(folder.parent / ".lock"):
        if not (folder / "backbone.xml").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            converted = ov.convert_model(trunk.cpu().eval(), example_input=torch.zeros(1, 3, 224, 224),
                                         input=[-1, 3, 224, 224])
            ov.save_model(converted, folder / "backbone.xml", compress_to_fp16=False)
            record.unlink(missing_ok=True)
        ov_forward = _openvino_forward(folder / "backbone.xml")
        if record.is_file():
            report = json.loads(record.read_text())
        else:
            report = _measure(torch_forward, ov_forward)
            record.write_text(json.dumps(report, indent=1))
    if setting == "openvino" and report["parity"] or report.get("chosen") == "openvino":
        return ov_forward, "openvino", report
    return torch_forward, "torch", report


def _openvino_forward(xml: Path) -> Callable[[Any], np.ndarray]:
    # f32 on every CPU: some would otherwise run bf16 and drift from PyTorch's features
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "PERFORMANCE_HINT": "THROUGHPUT"})

    def forward(x):
        array = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        return np.asarray(compiled(array)[0], dtype=np.float32)

    return forward


def _measure(torch_forward: Callable[[Any], np.ndarray], ov_forward: Callable[[Any], np.ndarray]) -> dict:
    x = torch.from_numpy(probe_batch())
    reference, converted = torch_forward(x), ov_forward(x)
    worst = float(_cosines(reference, converted).min())
    report = {"parity": worst >= 0.999, "min_cosine": round(worst, 6)}
    if report["parity"]:
        timings = {}
        for name, forward in (("torch", torch_forward), ("openvino", ov_forward)):
            forward(x)
            start = time.perf_counter()
            for _ in range(2):
                forward(x)
            timings[name] = round((time.perf_counter() - start) / (2 * PROBE_BATCH) * 1000, 3)
        report["ms_per_crop"] = timings
        report["chosen"] = min(timings, key=timings.get)
    else:
        report["chosen"] = "torch"
    return report
