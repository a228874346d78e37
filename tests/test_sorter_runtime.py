"""The sorter's embedding backbone through OpenVINO (INFERENCE_RUNTIME): same features as PyTorch,
converted once, chosen only when faithful and faster."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from api.demos.sorter import Sorter
from api.demos.sorter.embed import BACKBONE_FILE, CnnEmbedder, resnet18_trunk, save_backbone
from api.demos.sorter.locator import build, save
from api.platform.config import load_config


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


def test_a_conversion_needs_a_place_to_be_kept(models_folder):
    with pytest.raises(ValueError, match="cache_root"):
        CnnEmbedder.from_folder(models_folder, "cpu", runtime="auto")


def test_the_demo_keeps_its_conversions_in_its_exports_folder(models_folder, tmp_path):
    """load_model, on the configured device, runs the backbone through INFERENCE_RUNTIME with the
    conversion cached in DATA_FOLDER/models/.cache/sorter/ (the demo's exports_folder)."""
    save(build(head_dim=256, fpn_channels=128), models_folder / "locator.pt", arch="mobilenet_v3_fpn",
         min_size=320, max_size=320, head_dim=256, fpn_channels=128, source="untrained (test)")
    demo = Sorter()
    demo.configure(load_config({"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(tmp_path), "INSTALLED_APPS": "sorter",
                                "DEVICE": "cpu", "INFERENCE_RUNTIME": "auto"}))
    models = demo.load_model(demo.model_id(demo.validate({})))
    assert models.device == "cpu" and models.locator.name == "locator.pt"
    assert models.cnn is not None and models.cnn.runtime == models.cnn.runtime_report["chosen"]
    assert list((tmp_path / "models" / ".cache" / "sorter").rglob("choice.json"))
    assert not (models_folder / ".cache").exists()
