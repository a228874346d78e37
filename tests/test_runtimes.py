"""Exported runtimes for the regions detector: parity with PyTorch, the automatic choice, the
export cache, and a job that uses the export without any setting."""
from __future__ import annotations

import json
import shutil

import pytest

from api.demos.regions.detector import Detector, Options
from api.demos.regions.runtimes import RuntimeChooser, available, recorded_choices
from tests.conftest import YOLO_IMGSZ
from tests.synthetic_pages import iou, make_page

PAGES = range(9200, 9206)
RUNTIMES = [r for r in ("onnx", "openvino") if available(r)]


@pytest.fixture
def model_file(tmp_path, trained_yolo):
    folder = tmp_path / "models" / "regions"
    folder.mkdir(parents=True)
    shutil.copy(trained_yolo, folder / "pages.pt")
    return folder / "pages.pt"


def boxes(det):
    return det.x1, det.y1, det.x2, det.y2


def test_the_runtimes_this_machine_has_are_the_ones_tested():
    assert RUNTIMES == ["onnx", "openvino"]  # both are in requirements.txt


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_exported_runtime_gives_the_same_detections_as_pytorch(runtime, model_file, tmp_path):
    options = Options(conf=0.1, imgsz=YOLO_IMGSZ)
    reference = Detector(model_file, "cpu", runtime="torch", imgsz=YOLO_IMGSZ)
    exported = Detector(model_file, "cpu", runtime=runtime, cache_root=tmp_path / "cache", imgsz=YOLO_IMGSZ)
    assert exported.runtime == runtime, exported.runtime_report
    assert exported.runtime_report[runtime]["parity"] is True
    matched = 0
    for seed in PAGES:
        image = make_page(seed).image
        [expected] = reference.detect([image], options)
        [found] = exported.detect([image], options)
        assert len(found) == len(expected), (seed, expected, found)
        for det in expected:
            best = max(found, key=lambda other: iou(boxes(det), boxes(other)))
            assert iou(boxes(det), boxes(best)) >= 0.9
            assert best.cls == det.cls and abs(best.confidence - det.confidence) <= 0.05
            matched += 1
    assert matched >= len(PAGES)


def test_auto_exports_once_measures_and_keeps_its_choice(model_file, tmp_path):
    cache = tmp_path / "cache"
    detector = Detector(model_file, "cpu", runtime="auto", cache_root=cache, imgsz=YOLO_IMGSZ)
    report = detector.runtime_report
    assert set(report) == {"onnx", "openvino", "torch"}
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
    with pytest.raises(ValueError, match="INFERENCE_RUNTIME"):
        RuntimeChooser(model_file, model_file.parent, "cpu", "tflite")
