"""Exported runtimes for the regions detector: parity with PyTorch, the automatic choice, the
export cache, and a job that uses the export without any setting."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from api.demos.regions.common import Options, quiet_ultralytics
from tests.support.synthetic_pages import YOLO_IMGSZ, assert_same_detections, make_page

PAGES = range(9200, 9206)
RUNTIMES = ["onnx", "openvino"]  # both are in requirements.txt


@pytest.fixture(scope="session", autouse=True)
def ultralytics_settings(tmp_path_factory):
    """Before anything imports ultralytics (the worker's modules do, when imported): offline, and
    its settings in a folder of ours."""
    quiet_ultralytics(tmp_path_factory.mktemp("ultralytics"))


@pytest.fixture
def model_file(tmp_path, trained_yolo):
    folder = tmp_path / "models" / "regions"
    folder.mkdir(parents=True)
    shutil.copy(trained_yolo, folder / "pages.pt")
    return folder / "pages.pt"


def test_the_runtimes_this_machine_has_are_the_ones_tested():
    from api.demos.regions.runtimes import available

    assert [r for r in RUNTIMES if available(r)] == RUNTIMES


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_exported_runtime_gives_the_same_detections_as_pytorch(runtime, model_file, tmp_path):
    """Same weights and the same page-shaped input as PyTorch (a static export would get each
    page padded to a square: other pixels, so other boxes from a weakly trained model), hence
    the same detections, with a wide margin on any machine."""
    import torch

    from api.demos.regions.detector import Detector

    options = Options(conf=0.1, imgsz=YOLO_IMGSZ)
    reference = Detector(model_file, "cpu", runtime="torch", imgsz=YOLO_IMGSZ)
    exported = Detector(model_file, "cpu", runtime=runtime, cache_root=tmp_path / "cache", imgsz=YOLO_IMGSZ)
    assert exported.runtime == runtime, exported.runtime_report
    assert exported.runtime_report[runtime]["parity"] is True
    assert exported.runtime_report[runtime]["detections"] > 0  # the probes gave something to compare
    assert exported.lean  # exports run through our letterbox and NMS (tests/test_regions_fast.py)
    compared = page_shaped = 0
    for seed in PAGES:
        image = make_page(seed).image
        [expected] = reference.detect([image], options)
        [found] = exported.detect([image], options)
        compared += assert_same_detections(expected, found, options.conf)
        page = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        given = reference.model.predictor.preprocess([page])
        assert torch.equal(torch.from_numpy(exported.model.raw(image, options.imgsz)[0]), given)
        page_shaped += given.shape[2] != given.shape[3]
    assert compared >= len(PAGES) and page_shaped >= len(PAGES) // 2  # most pages are not padded to squares


def test_an_export_that_gets_squares_is_refused_when_its_boxes_differ(model_file, tmp_path):
    """A static ONNX export (fixed square input, as this module once made them) in the cache:
    its raw outputs match PyTorch's on the tensor it receives, but it receives each page padded
    to a square where PyTorch gets the page's shape, and the test detector then finds other
    boxes and confidences. Parity is judged on what a job gets, so it is refused."""
    from ultralytics import YOLO

    from api.demos.regions.runtimes import RuntimeChooser

    chooser = RuntimeChooser(model_file, tmp_path / "cache", "cpu", "onnx")
    genuine = chooser._export("onnx", YOLO_IMGSZ, half=False)
    source = tmp_path / "static" / "pages.pt"
    source.parent.mkdir()
    shutil.copy(model_file, source)
    shutil.copy(YOLO(str(source)).export(format="onnx", imgsz=YOLO_IMGSZ, dynamic=False, simplify=False), genuine)
    choice = chooser.choose(YOLO_IMGSZ)
    report = choice.report["onnx"]
    assert report["max_score_diff"] <= 0.02 and report["max_box_diff_px"] <= 1.5  # faithful weights
    assert report["parity"] is False and report["unmatched"] > 0, report
    assert choice.runtime == "torch"


def test_an_export_and_a_choice_made_by_an_older_check_are_made_again(model_file, tmp_path):
    """A cache from before exports were dynamic and detections compared: a static ONNX export
    (export.json without options) chosen by the raw-output check. It is exported again and
    measured again, not trusted."""
    from ultralytics import YOLO

    from api.demos.regions.runtimes import RuntimeChooser

    chooser = RuntimeChooser(model_file, tmp_path / "cache", "cpu", "onnx")
    folder = chooser.root / f"onnx-{YOLO_IMGSZ}"
    folder.mkdir(parents=True)
    shutil.copy(model_file, folder / "model.pt")
    static = Path(YOLO(str(folder / "model.pt")).export(format="onnx", imgsz=YOLO_IMGSZ, dynamic=False, simplify=False))
    (folder / "export.json").write_text(json.dumps({"artifact": static.name, "seconds": 1.0}))
    record = chooser.root / f"choice-cpu-onnx-{YOLO_IMGSZ}.json"
    record.write_text(json.dumps({"runtime": "onnx", "path": str(static), "half": False,
                                  "report": {"onnx": {"parity": True, "chosen": "fastest that passed parity"}}}))
    choice = chooser.choose(YOLO_IMGSZ)
    assert choice.runtime == "onnx" and choice.report["onnx"]["parity"] is True
    assert "options" in json.loads((folder / "export.json").read_text())
    import onnxruntime

    height, width = onnxruntime.InferenceSession(str(choice.path)).get_inputs()[0].shape[2:]
    assert isinstance(height, str) and isinstance(width, str)  # dynamic: page-shaped inputs


def test_auto_exports_once_measures_and_keeps_its_choice(model_file, tmp_path):
    from api.demos.regions.detector import Detector
    from api.demos.regions.models import recorded_choices
    from api.demos.regions.runtimes import PROBE_SHAPES

    cache = tmp_path / "cache"
    detector = Detector(model_file, "cpu", runtime="auto", cache_root=cache, imgsz=YOLO_IMGSZ)
    report = detector.runtime_report
    assert set(report) == {"onnx", "openvino", "torch"}
    assert all(report[r]["probes"] == len(PROBE_SHAPES) for r in ("onnx", "openvino"))
    passed = {r: v["ms_per_page"] for r, v in report.items() if v.get("parity", True)}
    assert detector.runtime == min(passed, key=passed.get)  # the fastest that passed parity
    assert report[detector.runtime]["chosen"]
    assert recorded_choices(cache, model_file) == {f"cpu-auto-{YOLO_IMGSZ}": detector.runtime}
    exports = {p: p.stat().st_mtime_ns for p in cache.rglob("export.json")}
    again = Detector(model_file, "cpu", runtime="auto", cache_root=cache, imgsz=YOLO_IMGSZ)
    assert again.runtime == detector.runtime
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("export.json")} == exports  # nothing exported again


def test_an_export_that_fails_parity_is_never_chosen(model_file, tmp_path):
    """The OpenVINO export in the cache is swapped for one of other weights (an untrained network
    of the same shape): it still runs, but its outputs differ, so auto must not pick it."""
    from ultralytics import YOLO

    from api.demos.regions.runtimes import RuntimeChooser

    cache = tmp_path / "cache"
    chooser = RuntimeChooser(model_file, cache, "cpu", "auto")
    genuine = chooser._export("openvino", YOLO_IMGSZ, half=False)
    stranger = tmp_path / "stranger" / "pages.pt"
    stranger.parent.mkdir()
    other = YOLO("yolov8n.yaml")
    other.model.names = {0: "illustration", 1: "diagram"}
    other.save(str(stranger))
    exported = YOLO(str(stranger), task="detect").export(format="openvino", imgsz=YOLO_IMGSZ, dynamic=True)
    shutil.rmtree(genuine)
    shutil.copytree(exported, genuine)
    choice = chooser.choose(YOLO_IMGSZ)
    assert choice.report["openvino"]["parity"] is False
    assert choice.runtime != "openvino"
    assert json.loads((chooser.root / f"choice-cpu-auto-{YOLO_IMGSZ}.json").read_text())["runtime"] == choice.runtime


def test_an_unknown_runtime_setting_is_refused(model_file):
    from api.demos.regions.runtimes import RuntimeChooser

    with pytest.raises(ValueError, match="INFERENCE_RUNTIME"):
        RuntimeChooser(model_file, model_file.parent, "cpu", "tflite")


def test_a_runtime_other_than_pytorch_needs_a_folder_for_its_exports(model_file):
    """Exports go to the demo's exports folder, named by the caller; none is made up beside the
    model (where the models listing would not look for them)."""
    from api.demos.regions.detector import Detector

    with pytest.raises(ValueError, match="cache_root"):
        Detector(model_file, "cpu", runtime="auto", imgsz=YOLO_IMGSZ)
    assert not (model_file.parent / ".cache").exists()
