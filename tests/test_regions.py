"""The regions demo with real inference: a YOLO built from its yaml and trained here for about a
minute on synthetic pages (tests/support/synthetic_pages.py), then run through the API and a real worker."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from api.demos.regions.common import Options, quiet_ultralytics
from api.platform.config import load_config
from tests.support import ROOT
from tests.support.platform import json_of, use_regions, wait_for
from tests.support.synthetic_pages import CLASSES, TRAIN_THREADS, YOLO_IMGSZ, assert_same_detections, iou, make_page

IMGSZ = YOLO_IMGSZ
UNSEEN = range(9000, 9006)
WORKER_LIBRARIES = {"torch", "torchvision", "ultralytics", "cv2", "numpy", "onnx", "onnxruntime", "openvino"}


@pytest.fixture(scope="session", autouse=True)
def ultralytics_settings(tmp_path_factory):
    """Before anything imports ultralytics (the worker's modules do, when imported): offline, and
    its settings in a folder of ours."""
    quiet_ultralytics(tmp_path_factory.mktemp("ultralytics"))


@pytest.fixture
def trained_model(trained_yolo):
    """conftest's session-wide detector (trained once per run)."""
    return trained_yolo


@pytest.fixture
def regions_env(env, procs, trained_model):
    # PyTorch here (exports are tested in test_runtimes.py and in the first test below)
    return use_regions(env, procs, trained_model, REGIONS_BATCH_SIZE="4", INFERENCE_RUNTIME="torch")


@pytest.fixture
def regions_client(regions_env):
    from api import create_app

    return create_app(load_config(regions_env)).test_client()


def page_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_page(seed).image.save(buffer, "PNG")
    return buffer.getvalue()


def run_job(client, procs, data=None, json_body=None) -> tuple[str, dict]:
    procs.worker(queue="regions", timeout=120)
    if json_body is not None:
        response = client.post("/regions/start", json=json_body)
    else:
        response = client.post("/regions/start", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_for(lambda: (s := json_of(client.get(f"/regions/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE") and s, 180, message="the regions job")
    assert status["state"] == "SUCCESS", (status, procs.logs())
    return tracking_id, status


def test_finds_the_figures_of_unseen_pages_through_the_api_and_a_worker(regions_client, procs, data_folder):
    """With no runtime setting (auto), the CPU worker runs the fastest export that passed parity."""
    procs.env.pop("INFERENCE_RUNTIME")
    files = [(io.BytesIO(page_png(seed)), f"page{seed}.png") for seed in UNSEEN]
    files.append((io.BytesIO(b"\x89PNG\r\n\x1a\n but not really"), "corrupt.png"))
    tracking_id, status = run_job(regions_client, procs, data={
        "files": files, "parameters": json.dumps({"imgsz": IMGSZ, "conf": 0.1, "crop_padding": 3})})
    assert status["progress"]["done"] == status["progress"]["total"] == len(UNSEEN) + 1
    assert [e["doc_uid"] for e in status["errors"]] == ["corrupt"]
    folder = data_folder / "results" / "regions" / tracking_id
    output = status["output"]  # job.json mirrors it a moment after Redis says SUCCESS
    found = expected = 0
    for seed in UNSEEN:
        doc = f"page{seed}"
        truth = make_page(seed)
        [record] = output["annotations"][doc]
        assert record == json.loads((folder / doc / "annotations" / f"{doc}.json").read_text())
        assert (record["width"], record["height"]) == truth.image.size
        boxes = [(c["absolute"]["x1"], c["absolute"]["y1"], c["absolute"]["x2"], c["absolute"]["y2"])
                 for c in record["crops"]]
        expected += len(truth.boxes)
        found += sum(any(iou(t[1:], b) >= 0.5 for b in boxes) for t in truth.boxes)
        labels = (folder / doc / "labels" / f"{doc}.txt").read_text().splitlines()
        assert len(labels) == len(record["crops"])
        for crop, line in zip(record["crops"], labels, strict=True):
            a, r = crop["absolute"], crop["relative"]
            w, h = record["width"], record["height"]
            # relative and absolute boxes agree, and so does the YOLO label line
            assert abs(r["x1"] * w - a["x1"]) < 1 and abs(r["y2"] * h - a["y2"]) < 1
            assert abs(r["width"] * w - a["width"]) < 1 and a["x2"] - a["x1"] == a["width"]
            assert crop["bbox"] == f"{a['x1']},{a['y1']},{a['width']},{a['height']}"
            cls, cx, cy, bw, bh = line.split()
            assert int(cls) == crop["class"] and crop["label"] == CLASSES[crop["class"]]
            assert abs(float(cx) - (r["x1"] + r["x2"]) / 2) < 1e-4 and abs(float(bw) - r["width"]) < 1e-4
            # the crop is its box plus the padding, clipped to the page
            with Image.open(folder / doc / "crops" / f"{crop['crop_id']}.jpg") as image:
                assert image.size == (min(a["x2"] + 3, w) - max(a["x1"] - 3, 0),
                                      min(a["y2"] + 3, h) - max(a["y1"] - 3, 0))
        with Image.open(folder / doc / "previews" / f"{doc}.jpg") as image:
            assert image.size == truth.image.size
    recall = found / expected
    print(f"regions recall at IoU 0.5 on {len(UNSEEN)} unseen pages: {recall:.2f} ({found}/{expected})")
    assert recall >= 0.8
    summary = output["summary"]
    assert summary["images"] == len(UNSEEN) and summary["images_failed"] == 1
    assert summary["detections"] == sum(len(r[0]["crops"]) for r in output["annotations"].values())
    assert set(summary["detections_per_class"]) <= set(CLASSES)
    runtime = summary["runtime"]
    assert runtime in ("openvino", "onnx", "torch") and summary["runtime_choice"][runtime]["chosen"]
    assert summary["batch_size"] == (4 if runtime == "torch" else 1)
    assert status["timings"]["runtime"] == runtime
    assert f'api_inference_seconds_count{{app="regions",runtime="{runtime}"}} {len(UNSEEN)}.0' in \
        regions_client.get("/metrics").get_data(as_text=True)
    details = json_of(regions_client.get("/regions/models?details=1"))["pages.pt"]
    assert details["runtimes"] == {"cpu-auto-640": details["runtimes"]["cpu-auto-640"], f"cpu-auto-{IMGSZ}": runtime}
    assert summary == json.loads((folder / "summary.json").read_text())
    assert "inference" in summary["timings"]


def test_a_iiif_manifest_gives_annotations_on_its_canvases(regions_client, procs, http_server):
    """The IIIF server sends images at half the canvas size: boxes are scaled back to the canvas."""
    canvases = []
    for i, seed in enumerate(UNSEEN[:2]):
        http_server.add(f"/iiif/p{i}/full/full/0/default.jpg", page_png(seed), "image/png")
        w, h = make_page(seed).image.size
        canvases.append({"@id": http_server.url(f"/canvas/{i}"), "@type": "sc:Canvas", "label": f"p{i}",
                         "width": 2 * w, "height": 2 * h, "images": [{
                             "@type": "oa:Annotation", "motivation": "sc:painting",
                             "on": http_server.url(f"/canvas/{i}"),
                             "resource": {"@id": http_server.url(f"/iiif/p{i}/full/full/0/default.jpg"),
                                          "@type": "dctypes:Image", "width": w, "height": h}}]})
    manifest = {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": http_server.url("/manifest.json"),
                "@type": "sc:Manifest", "label": "book", "sequences": [{"@type": "sc:Sequence", "canvases": canvases}]}
    http_server.add("/manifest.json", json.dumps(manifest).encode(), "application/json")
    tracking_id, status = run_job(regions_client, procs, json_body={
        "documents": [{"type": "iiif", "src": http_server.url("/manifest.json"), "uid": "book"}],
        "parameters": {"imgsz": IMGSZ, "conf": 0.1, "crops": False}})
    output = json_of(regions_client.get(f"/regions/{tracking_id}/result/book/iiif/annotation-list.json"))
    assert output["@type"] == "sc:AnnotationList" and output["resources"]
    annotations = json_of(regions_client.get(f"/regions/{tracking_id}/result/book/annotations.json"))
    by_canvas = {c["@id"]: c for c in canvases}
    crops = {c["crop_id"]: (page, c) for page in annotations for c in page["crops"]}
    for resource in output["resources"]:
        canvas_id, _, fragment = resource["on"].partition("#xywh=")
        canvas = by_canvas[canvas_id]
        x, y, w, h = map(int, fragment.split(","))
        assert 0 <= x and 0 <= y and x + w <= canvas["width"] and y + h <= canvas["height"] and w > 0 and h > 0
        page, crop = crops[resource["@id"].rsplit("/", 1)[1]]
        assert page["canvas"] == canvas_id
        assert abs(x - 2 * crop["absolute"]["x1"]) <= 1 and abs(w - 2 * crop["absolute"]["width"]) <= 1
    page = json_of(regions_client.get(f"/regions/{tracking_id}/result/book/iiif/annotation-page.json"))
    assert page["type"] == "AnnotationPage" and len(page["items"]) == len(output["resources"])
    assert regions_client.get(f"/regions/{tracking_id}/result/book/crops/p0-0.jpg").status_code == 404


def test_models_are_listed_with_classes_and_bad_parameters_are_400(regions_client, data_folder):
    assert json_of(regions_client.get("/regions/models")) == {"pages.pt": wait_for(lambda: True) and
                                                              json_of(regions_client.get("/regions/models"))["pages.pt"]}
    details = json_of(regions_client.get("/regions/models?details=1"))["pages.pt"]
    assert details["classes"] == list(CLASSES) and details["format"] == "ultralytics"
    assert details["size"] == (data_folder / "models" / "regions" / "pages.pt").stat().st_size
    assert details["source"] == "local file"
    for params, field in (({"model": "nope.pt"}, "parameters.model"), ({"model": "../x.pt"}, "parameters.model"),
                          ({"conf": 2}, "parameters.conf"), ({"classes": [-1]}, "parameters.classes"),
                          ({"imgsz": "big"}, "parameters.imgsz")):
        response = regions_client.post("/regions/start", json={
            "documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": params})
        assert response.status_code == 400, params
        assert json_of(response)["error"]["field"] == field
    response = regions_client.post("/regions/start", json={
        "documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": {"model": "nope.pt"}})
    message = json_of(response)["error"]["message"]
    assert "models/regions" in message and "python -m api models pull regions" in message and "pages.pt" in message


def test_the_api_reads_checkpoints_without_importing_torch(trained_model):
    code = ("import sys, json; from pathlib import Path; from api.demos.regions.models import describe; "
            f"d = describe(Path({str(trained_model)!r})); "
            "assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules, 'torch imported'; "
            "print(json.dumps(d))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classes"] == list(CLASSES)


def test_an_onnx_export_gives_the_same_boxes(trained_model, tmp_path):
    """An ONNX file as the model. Exported with dynamic shapes, as the runtime chooser does, it
    gets the same page-shaped input as PyTorch, so the same boxes whatever the training made of
    the weights (a static export gets padded squares: other pixels, other boxes)."""
    from ultralytics import YOLO

    from api.demos.regions.checkpoints import CheckpointInfo, inspect_checkpoint
    from api.demos.regions.detector import Detector

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(trained_model, folder / "pages.pt")
    exported = YOLO(str(folder / "pages.pt")).export(format="onnx", imgsz=IMGSZ, simplify=False, dynamic=True)
    torch_model = Detector(folder / "pages.pt", "cpu")
    onnx_model = Detector(folder / "pages.onnx", "cpu")
    assert str(exported).endswith("pages.onnx") and onnx_model.format == "onnx"
    assert inspect_checkpoint(folder / "pages.onnx") == CheckpointInfo("onnx", list(CLASSES), "detect")
    assert onnx_model.classes == torch_model.classes == list(CLASSES)
    options = Options(conf=0.1, imgsz=IMGSZ)
    compared = 0
    for seed in UNSEEN:
        image = make_page(seed).image
        [a] = torch_model.detect([image], options)
        [b] = onnx_model.detect([image], options)
        compared += assert_same_detections(a, b, options.conf)
    assert compared > 0


def test_the_test_detector_trains_with_the_same_threads_on_every_machine(trained_model):
    """Ultralytics would train it with cpu_count - 1 threads, which rounds sums differently on
    each machine: other weights, other boxes. The fixture pins the count for every epoch."""
    record = json.loads((trained_model.parent / "training.json").read_text())
    assert set(record["threads_per_epoch"]) == {TRAIN_THREADS}


# -- legacy YOLOv5 checkpoints ---------------------------------------------------------------------
def legacy_checkpoint(path, names=("illustration", "diagram"), anchor=(40.0, 30.0)):
    """A small network laid out as ultralytics/yolov5 v7 saves it: whole modules pickled under
    `models.common.*` / `models.yolo.*` in {"model": DetectionModel, "ema": None, ...}.

    Its layers are built from ultralytics' modules (same attribute names as yolov5's), then given
    classes named as yolov5's. The head's weights are zero and its biases chosen so that every
    cell of the stride-8 level proposes class 0 with confidence ~1 and a box of `anchor` size
    centred on the cell: the expected detections are known exactly."""
    import types as types_module

    import torch
    from torch import nn
    from ultralytics.nn.modules import C3, SPPF, Concat, Conv

    modules = {}
    for module_name, class_names in (("models", []), ("models.common", ["Conv", "C3", "SPPF", "Concat", "Bottleneck"]),
                                     ("models.yolo", ["Detect", "DetectionModel"])):
        module = types_module.ModuleType(module_name)
        for class_name in class_names:
            cls = type(class_name, (nn.Module,), {"__module__": module_name})
            setattr(module, class_name, cls)
        modules[module_name] = module
    saved = {k: sys.modules.get(k) for k in modules}
    sys.modules.update(modules)
    try:
        layers = [Conv(3, 16, 6, 2, 2), Conv(16, 32, 3, 2), C3(32, 32, 1), Conv(32, 64, 3, 2), C3(64, 64, 1),
                  Conv(64, 128, 3, 2), SPPF(128, 128, 5), nn.Upsample(None, 2, "nearest"), Concat(1),
                  C3(192, 64, 1, False)]
        froms = [-1, -1, -1, -1, -1, -1, -1, -1, [-1, 4], -1, [9, 6]]
        nc, na = len(names), 3
        detect = nn.Module()
        detect.nc, detect.no, detect.nl, detect.na = nc, nc + 5, 2, na
        detect.stride = torch.tensor([8.0, 16.0])
        anchors = torch.tensor([[anchor, (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)]], dtype=torch.float32)
        detect.register_buffer("anchors", anchors / detect.stride.view(-1, 1, 1))
        detect.m = nn.ModuleList(nn.Conv2d(c, (nc + 5) * na, 1) for c in (64, 128))
        detect.grid, detect.anchor_grid, detect.inplace = [torch.empty(0)] * 2, [torch.empty(0)] * 2, True
        for level, conv in enumerate(detect.m):
            nn.init.zeros_(conv.weight)
            bias = torch.full((na, nc + 5), -20.0)
            bias[:, :4] = 0.0  # xy offset 0.5 → cell centre; wh → (2 * 0.5)^2 * anchor = anchor
            if level == 0:
                bias[0, 4] = bias[0, 5] = 20.0  # anchor 0: objectness and class 0 certain
            conv.bias.data = bias.flatten()
        layers.append(detect)
        for i, (layer, f) in enumerate(zip(layers, froms, strict=True)):
            layer.i, layer.f, layer.type, layer.np = i, f, type(layer).__name__, 0
        model = nn.Module()
        model.model = nn.Sequential(*layers)
        model.save, model.names, model.stride, model.yaml = [4, 6, 9], list(names), detect.stride, {"nc": nc}
        renamed = {"Conv": "models.common", "C3": "models.common", "SPPF": "models.common", "Concat": "models.common",
                   "Bottleneck": "models.common"}
        for module in model.modules():
            kind = type(module).__name__
            if kind in renamed:
                module.__class__ = getattr(modules[renamed[kind]], kind)
        detect.__class__ = modules["models.yolo"].Detect
        model.__class__ = modules["models.yolo"].DetectionModel
        torch.save({"epoch": 10, "best_fitness": None, "model": model.half(), "ema": None, "updates": 0,
                    "optimizer": None, "opt": {"imgsz": 320}, "git": None, "date": "2023-01-01"}, path)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def test_a_legacy_yolov5_checkpoint_loads_and_predicts_what_its_weights_say(tmp_path):
    from api.demos.regions.checkpoints import inspect_checkpoint
    from api.demos.regions.detector import Detector

    path = tmp_path / "legacy.pt"
    legacy_checkpoint(path)
    assert "models.yolo" not in sys.modules
    info = inspect_checkpoint(path)
    assert (info.format, info.classes) == ("yolov5", ["illustration", "diagram"])
    detector = Detector(path, "cpu")
    assert detector.format == "yolov5" and detector.classes == ["illustration", "diagram"]
    image = Image.new("RGB", (640, 320), "white")  # letterboxed at imgsz 320 to 320x160: scale 0.5
    [found] = detector.detect([image], Options(conf=0.5, iou=0.3, imgsz=320, max_det=1000))
    assert len(found) > 20
    for det in found:
        assert det.cls == 0 and det.confidence > 0.99
        width, height = det.x2 - det.x1, det.y2 - det.y1
        cx, cy = (det.x1 + det.x2) / 2, (det.y1 + det.y2) / 2
        inside = 0 < det.x1 and det.x2 < 640 and 0 < det.y1 and det.y2 < 320
        if inside:  # boxes cut by the image border are clipped
            assert abs(width - 80) < 0.5 and abs(height - 60) < 0.5  # the anchor (40x30) / scale 0.5
        # centres on the stride-8 lattice of the 320x160 letterboxed input, scaled back by 2
        assert abs((cx / 2 / 8 - 0.5) - round(cx / 2 / 8 - 0.5)) < 0.02 or not inside
        assert abs((cy / 2 / 8 - 0.5) - round(cy / 2 / 8 - 0.5)) < 0.02 or not inside
    [none] = detector.detect([image], Options(conf=0.5, imgsz=320, classes=(1,)))
    assert none == []


def test_a_checkpoint_naming_foreign_code_is_refused(tmp_path):
    import pickle

    import torch

    from api.demos.regions.legacy import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_checkpoint(path)


def test_pulling_a_model_offline_says_which_file_to_put_where(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "ENV_FILE": "/nonexistent",
           "DATA_FOLDER": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "api", "models", "pull", "regions", "someone/pages", "best.pt"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"Copy the file by hand to {tmp_path / 'data' / 'models' / 'regions' / 'best.pt'}" in result.stderr
    assert not (tmp_path / "data" / "models" / "regions" / "best.pt").exists()


def test_a_batch_of_mixed_page_shapes_finds_what_pages_one_by_one_find(trained_model):
    """GPU batches regroup pages by aspect ratio and give each batch one page-shaped input
    (inference.same_shape); boxes come back in each page's own pixels."""
    from api.demos.regions.detector import Detector
    from api.demos.regions.inference import by_aspect, same_shape

    detector = Detector(trained_model, "cpu", runtime="torch", imgsz=IMGSZ)
    pages = [make_page(seed).image for seed in UNSEEN[:4]]
    assert len({p.size for p in pages}) == 4
    resized, scales = same_shape(pages, IMGSZ)
    assert len({im.size for im in resized}) == 1 and max(resized[0].size) == IMGSZ
    options = Options(conf=0.1, imgsz=IMGSZ)
    together = detector.detect(pages, options)
    for page, batch_found in zip(pages, together, strict=True):
        [alone] = detector.detect([page], options)
        confident = [d for d in alone if d.confidence >= 0.3]
        for det in confident:
            assert max(iou((det.x1, det.y1, det.x2, det.y2), (o.x1, o.y1, o.x2, o.y2)) for o in batch_found) >= 0.7
        assert all(0 <= d.x1 <= d.x2 <= page.width and 0 <= d.y1 <= d.y2 <= page.height for d in batch_found)
    ratios = [0.5, 1.4, 0.7, 1.5, 0.55, 1.3]
    grouped = by_aspect(list(range(6)), 3, lambda i: ratios[i])
    assert grouped == [[0, 4, 2], [5, 1, 3]]


# -- the demo's modules: what the API imports, and how they depend on each other -------------------
def regions_config(tmp_path, **settings: str):
    return load_config({"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(tmp_path / "data"),
                        "INSTALLED_APPS": "regions", **settings})


def test_the_model_setting_names_the_default_model_else_the_newest_file(tmp_path):
    from api.demos.regions import Regions

    folder = tmp_path / "data" / "models" / "regions"
    folder.mkdir(parents=True)
    for age, name in enumerate(("new.pt", "old.pt")):
        (folder / name).write_bytes(b"not read here")
        os.utime(folder / name, (1_700_000_000 - age, 1_700_000_000 - age))
    demo = Regions()
    demo.configure(regions_config(tmp_path))
    assert demo.validate({})["model"] == "new.pt" and demo.setting("batch_size") == 0
    demo.configure(regions_config(tmp_path, REGIONS_MODEL="old.pt", REGIONS_BATCH_SIZE="8"))
    assert demo.validate({})["model"] == "old.pt" and demo.setting("batch_size") == 8
    assert demo.validate({"model": "new.pt"})["model"] == "new.pt"


def tiny_onnx(path, metadata: dict[str, str]) -> None:
    """A valid ONNX model (one MatMul and its weights) with `metadata` in its metadata_props."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).random((3, 3), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weights])
    model = helper.make_model(graph, producer_name="tests")
    helper.set_model_props(model, metadata)
    onnx.save(model, str(path))


def test_onnx_class_names_are_read_as_the_onnx_package_reads_them(tmp_path):
    import onnx

    from api.demos.regions.checkpoints import CheckpointInfo, inspect_checkpoint, onnx_metadata

    path = tmp_path / "pages.onnx"
    tiny_onnx(path, {"names": "{0: 'illustration', 1: 'diagram'}", "task": "detect", "stride": "32"})
    assert onnx_metadata(path) == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert inspect_checkpoint(path) == CheckpointInfo("onnx", ["illustration", "diagram"], "detect")
    whole = path.read_bytes()
    for name, data in (("cut", whole[:-3]), ("text", b"not a model\n" * 50), ("empty", b"")):
        (tmp_path / f"{name}.onnx").write_bytes(data)
        assert inspect_checkpoint(tmp_path / f"{name}.onnx").format == "unknown", name


def test_the_api_side_imports_no_worker_library(tmp_path):
    """Validating a job and listing the models (with their classes and the runtimes workers chose)
    in a fresh process: none of the worker's libraries may come in, directly or through another
    module of the demo, nor the onnx package for an ONNX model."""
    folder = tmp_path / "data" / "models" / "regions"
    folder.mkdir(parents=True)
    (folder / "pages.pt").write_bytes(b"not a checkpoint")
    tiny_onnx(folder / "pages.onnx", {"names": "{0: 'illustration', 1: 'diagram'}"})
    env = {"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(tmp_path / "data"), "INSTALLED_APPS": "regions"}
    code = ("import sys, json; from api.platform.config import load_config; from api.demos.regions import demo; "
            f"demo.configure(load_config({env!r})); params = demo.validate({{'model': 'pages.pt', 'conf': 0.5}}); "
            "models = demo.models(); "
            f"loaded = sorted(set({sorted(WORKER_LIBRARIES)!r}) & set(sys.modules)); "
            "assert not loaded, loaded; print(json.dumps([params['model'], models]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    model, models = json.loads(result.stdout)
    assert model == "pages.pt" and models["pages.pt"]["format"] == "unknown"
    assert (models["pages.onnx"]["format"], models["pages.onnx"]["classes"]) == ("onnx", ["illustration", "diagram"])
    assert models["pages.onnx"]["runtimes"] == {}


def test_no_module_of_the_demo_imports_one_that_imports_it_back():
    """Even lazily: a cycle means two modules that cannot be understood, or imported, apart."""
    import ast

    folder = ROOT / "api" / "demos" / "regions"
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found = imports.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    assert {"detector", "runtimes", "legacy", "job"} <= set(imports)

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for module in imports.get(todo.pop(), set()) - seen:
                seen.add(module)
                todo.append(module)
        return seen

    assert [module for module in sorted(imports) if module in reachable(module)] == []
