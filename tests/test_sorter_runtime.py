"""The sorter's embedding backbone through OpenVINO (INFERENCE_RUNTIME): same features as PyTorch,
converted once, chosen only when faithful and faster."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from api.demos.sorter.embed import BACKBONE_FILE, CnnEmbedder, resnet18_trunk, save_backbone


@pytest.fixture
def models_folder(tmp_path):
    import torch

    torch.manual_seed(0)
    folder = tmp_path / "models" / "sorter"
    save_backbone(resnet18_trunk().eval(), folder / BACKBONE_FILE, "random weights (test)")
    return folder


def crops(n: int = 12) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (rng.integers(40, 120), rng.integers(40, 120), 3), dtype=np.uint8))
            for _ in range(n)]


def test_openvino_features_match_pytorch_and_the_choice_is_measured_once(models_folder, tmp_path):
    cache = tmp_path / "cache"
    torch_embedder = CnnEmbedder.from_folder(models_folder, "cpu", runtime="torch")
    auto = CnnEmbedder.from_folder(models_folder, "cpu", runtime="auto", cache_root=cache)
    forced = CnnEmbedder.from_folder(models_folder, "cpu", runtime="openvino", cache_root=cache)
    report = auto.runtime_report
    assert report["parity"] is True and report["min_cosine"] >= 0.999
    assert auto.runtime == report["chosen"] == min(report["ms_per_crop"], key=report["ms_per_crop"].get)
    assert forced.runtime == "openvino" and torch_embedder.runtime == "torch"
    sample = crops()
    reference, converted = torch_embedder.embed(sample), forced.embed(sample)
    assert converted.shape == reference.shape == (12, 512)
    cosines = (reference * converted).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(converted, axis=1))
    assert cosines.min() >= 0.999
    [record] = list(cache.rglob("choice.json"))
    assert json.loads(record.read_text()) == report
    xml = next(cache.rglob("backbone.xml"))
    made = xml.stat().st_mtime_ns
    CnnEmbedder.from_folder(models_folder, "cpu", runtime="auto", cache_root=cache)
    assert xml.stat().st_mtime_ns == made  # converted once


def test_a_conversion_that_drifts_is_not_chosen(models_folder, tmp_path):
    """The cached OpenVINO model is swapped for one of other weights: parity fails, PyTorch runs."""
    import openvino as ov
    import torch

    cache = tmp_path / "cache"
    first = CnnEmbedder.from_folder(models_folder, "cpu", runtime="auto", cache_root=cache)
    xml = next(cache.rglob("backbone.xml"))
    torch.manual_seed(99)
    stranger = ov.convert_model(resnet18_trunk().eval(), example_input=torch.zeros(1, 3, 224, 224),
                                input=[-1, 3, 224, 224])
    ov.save_model(stranger, xml, compress_to_fp16=False)
    next(cache.rglob("choice.json")).unlink()
    again = CnnEmbedder.from_folder(models_folder, "cpu", runtime="auto", cache_root=cache)
    assert first.runtime_report["parity"] is True
    assert again.runtime_report["parity"] is False and again.runtime == "torch"
