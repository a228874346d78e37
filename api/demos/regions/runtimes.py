"""Which runtime runs a model in this worker: PyTorch, or an export of the same weights to
OpenVINO, ONNX Runtime or TensorRT, chosen once per model, device kind and input size, and kept.

`INFERENCE_RUNTIME=auto` (the default) considers those of its candidates that are installed: on
CPU, OpenVINO, ONNX Runtime and PyTorch; on CUDA, TensorRT (FP16) and PyTorch (FP16). A runtime
named instead (`onnx`, `openvino`, `tensorrt`) is the only candidate, still checked against
PyTorch; `torch` exports nothing. Exports live in the demo's exports folder, under the model file's
content key (see `api.sdk.export_folder`): DATA_FOLDER/models/.cache/regions/<first 16 hex of its
sha256>/<runtime>-<imgsz>/. One worker at a time measures and exports a given model (a file lock
around the whole choice). ONNX and OpenVINO are exported with dynamic input shapes, so they get
the same page-shaped input as PyTorch; TensorRT's engine is static (square inputs).

An export is kept only if it passes parity with PyTorch on several page-shaped probes of different
aspect ratios, each going through the path a job's pages take with that runtime (OpenVINO and
ONNX: `lean.LeanModel`, our letterbox and NMS around the compiled model; TensorRT: ultralytics):
  - raw outputs (boxes and class scores before NMS) on the tensor the export itself receives, so
    the weights are faithful: scores within 0.02 (0.05 on CUDA), boxes within 1.5 px (3 px);
  - detections as a job gets them: every detection of either runtime clearly
    above the floor has a counterpart of the same class in the other, with IoU >= 0.9 (0.85) and
    confidence within the score tolerance; so an export fed other inputs than PyTorch (a padded
    square instead of the page's shape) is kept only if its boxes are the same anyway.
An export that fails parity is never chosen. Among the candidates that pass (PyTorch among them
under `auto`), the fastest on a page-shaped image wins: the measurement, not a rule, decides; with
none, PyTorch runs. Each is timed through that same path. The choice and its figures are kept in
`models.CHOICE_RECORD` beside the exports; a choice made by an older check or whose export is
gone, or an export made with other options, is made again.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from ultralytics import YOLO

from api.sdk import check_runtime_setting, export_folder, file_lock

from .common import Detection, Options
from .inference import keep_torch_threads, predict
from .lean import LeanModel, Unsupported
from .models import CHOICE_RECORD

EXPORT_FORMAT = {"onnx": "onnx", "openvino": "openvino", "tensorrt": "engine"}
MODULE_OF = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "torch"}
HALF_RUNTIMES = ("torch", "tensorrt")  # the runtimes that compute in FP16 on CUDA
PROBE_SHAPES = ((1000, 1400), (1400, 1000), (640, 1600))  # (width, height): portrait, landscape, narrow
PARITY_CONF = 0.05  # detections are compared from this confidence up (a job's `conf` is usually higher)
PARITY_CHECK = 4  # how parity is judged; a choice recorded by another check is measured again

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    score: float  # class scores before NMS, and detections' confidences
    box_px: float  # raw box coordinates, in input pixels
    iou: float  # a detection's box against its counterpart's


WORST = {"detections": int.__add__, "unmatched": int.__add__, "min_iou": min, "max_conf_diff": max,
         "max_score_diff": max, "max_box_diff_px": max}  # how each parity figure adds up over the probes
TOLERANCE = {False: Tolerance(score=0.02, box_px=1.5, iou=0.9), True: Tolerance(score=0.05, box_px=3.0, iou=0.85)}


@dataclass
class Choice:
    runtime: str  # the runtime that runs the model
    path: Path  # what ultralytics loads: the .pt, or the export
    half: bool = False
    report: dict = field(default_factory=dict)  # every candidate: parity, ms per page, or error


def available(runtime: str) -> bool:
    return importlib.util.find_spec(MODULE_OF[runtime]) is not None


def lean_or_none(path: Path, runtime: str, precision: str | None = None) -> LeanModel | None:
    """The lean path for an export or ONNX file on this runtime; None where it does not apply
    (TensorRT, PyTorch, or an export it cannot read: ultralytics runs those)."""
    if runtime not in ("openvino", "onnx"):
        return None
    try:
        return LeanModel(path, runtime, precision=precision)
    except Unsupported as exc:
        log.info("%s runs through ultralytics: %s", path.name, exc)
        return None


def runtime_model(path: Path, runtime: str, precision: str | None = None) -> Any:
    """What a job runs for `runtime`: the lean path where it applies, else ultralytics."""
    return lean_or_none(path, runtime, precision) or YOLO(str(path), task="detect")


def precision_of(choice: Choice) -> str | None:
    """The precision the chosen runtime was checked in (OpenVINO in f32 where the CPU's bf16 failed)."""
    return choice.report.get(choice.runtime, {}).get("precision")


def detect(model: Any, image: Image.Image, options: Options, device: str, half: bool) -> list[Detection]:
    """One page through `model` as a job sends it (lean path or ultralytics' predict)."""
    if isinstance(model, LeanModel):
        return model.predict([image], options)[0]
    return predict(model, [image], options, device, half)[0]


def candidates(setting: str, device: str) -> list[str]:
    if setting != "auto":
        return [setting]
    if device.startswith("cuda"):
        return [r for r in ("tensorrt", "torch") if available(r)]
    return [r for r in ("openvino", "onnx", "torch") if available(r)]


def probe_page(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic page-like picture (RGB): paper, lines of text strokes, a framed colourful
    picture and a line drawing, so a layout model finds something on it and two runtimes'
    detections, not only their near-zero outputs, are compared."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (width, height), (235, 225, 205))
    draw = ImageDraw.Draw(page)
    picture = (width // 10, height // 12, width * 6 // 10, height * 4 // 12)
    drawing = (width * 3 // 10, height * 6 // 12, width * 9 // 10, height * 9 // 12)
    art = Image.new("RGB", (picture[2] - picture[0], picture[3] - picture[1]), (120, 140, 90))
    for _ in range(40):
        x, y, r = rng.integers(0, art.width), rng.integers(0, art.height), rng.integers(8, 60)
        ImageDraw.Draw(art).ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    page.paste(art, picture[:2])
    draw.rectangle(picture, outline=(20, 15, 10), width=4)
    draw.rectangle(drawing, fill=(250, 248, 240))
    for _ in range(6):
        x, y = rng.integers(drawing[0] + 40, drawing[2] - 40), rng.integers(drawing[1] + 40, drawing[3] - 40)
        r = rng.integers(15, 40)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(10, 10, 10), width=3)
        draw.line((x, y, rng.integers(drawing[0], drawing[2]), rng.integers(drawing[1], drawing[3])),
                  fill=(10, 10, 10), width=3)
    for y in range(height // 30, height - height // 30, 22):
        for x in range(width // 20, width - width // 20 - 60, 70):
            stroke = (x, y, x + int(rng.integers(20, 60)), y + 7)
            if not any(_inside(stroke, box) for box in (picture, drawing)):
                draw.rectangle(stroke, fill=(60, 50, 40))
    return page


def _inside(a: tuple, b: tuple, margin: int = 10) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def probe_pages() -> list[Image.Image]:
    """The pages parity is judged on: several aspect ratios, because a static export pads each
    one differently from PyTorch's page-shaped input."""
    return [probe_page(width, height, seed) for seed, (width, height) in enumerate(PROBE_SHAPES)]


class RuntimeChooser:
    def __init__(self, model_path: Path, cache_root: Path, device: str, setting: str = "auto"):
        check_runtime_setting(setting)
        self.model_path = model_path
        self.device = device
        self.setting = setting
        self.kind = "cuda" if device.startswith("cuda") else "cpu"
        self.root = export_folder(cache_root, model_path)

    def choose(self, imgsz: int) -> Choice:
        """The runtime for this model at `imgsz`, exporting and measuring at the first call only."""
        half = self.kind == "cuda"
        wanted = candidates(self.setting, self.device)
        onnx_file = self.model_path.suffix == ".onnx"
        if onnx_file:  # the file runs as it is: no export, no PyTorch
            wanted = [r for r in wanted if r in ("openvino", "onnx")] if self.kind == "cpu" else []
            if wanted in ([], ["onnx"]):
                return Choice("onnx", self.model_path, False, {"onnx": {"chosen": "the file's own runtime"}})
        if wanted == ["torch"] or not wanted:
            return Choice("torch", self.model_path, half, {"torch": {"chosen": "only candidate"}})
        record = self.root / CHOICE_RECORD.format(kind=self.kind, setting=self.setting, imgsz=imgsz)
        with file_lock(self.root / ".lock"):
            if record.is_file():
                saved = json.loads(record.read_text())
                path = Path(saved["path"])
                if saved.get("check") == PARITY_CHECK and path.exists():
                    return Choice(saved["runtime"], path, saved["half"], saved["report"])
            choice = self._measure_onnx_file(wanted, imgsz) if onnx_file else self._measure(wanted, imgsz, half)
            record.write_text(json.dumps({"runtime": choice.runtime, "path": str(choice.path), "half": choice.half,
                                          "check": PARITY_CHECK, "report": choice.report}, indent=1))
        return choice

    def _measure_onnx_file(self, wanted: list[str], imgsz: int) -> Choice:
        """An ONNX model file: ONNX Runtime (its own runtime, the reference) or OpenVINO reading
        the same file (f32), kept if its outputs and detections are ONNX Runtime's; the faster."""
        probes = probe_pages()
        options = Options(conf=PARITY_CONF, imgsz=imgsz)
        reference = LeanModel(self.model_path, "onnx")
        tolerance = TOLERANCE[False]
        report: dict[str, dict] = {}
        timed: list[tuple[float, str]] = []
        for runtime in dict.fromkeys([*wanted, "onnx"]):
            try:
                model = reference if runtime == "onnx" else LeanModel(self.model_path, runtime)
                if model is not reference:
                    worst: dict = {"probes": len(probes), "detections": 0, "unmatched": 0}
                    ok = True
                    for probe in probes:
                        (_, theirs), (_, ours) = reference.raw(probe, imgsz), model.raw(probe, imgsz)
                        raw_ok, raw = parity(theirs[None], ours[None], tolerance)
                        found_ok, figures = same_detections(reference.predict([probe], options)[0],
                                                            model.predict([probe], options)[0], tolerance, options.conf)
                        ok = ok and raw_ok and found_ok
                        for key, value in {**raw, **figures}.items():
                            worst[key] = WORST[key](worst[key], value) if key in worst and key in WORST else value
                    report[runtime] = {"parity": ok, **worst}
                    if not ok:
                        continue
                ms = _time_predict(model, probes[0], imgsz, self.device, False)
                report.setdefault(runtime, {})["ms_per_page"] = round(ms, 2)
                if runtime in wanted:
                    timed.append((ms, runtime))
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file is skipped
                log.warning("runtime %s unusable for %s: %s", runtime, self.model_path.name, exc)
                report[runtime] = {"error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}
        ms, runtime = min(timed) if timed else (0.0, "onnx")
        report.setdefault(runtime, {})["chosen"] = "fastest that passed parity" if timed else "the file's own runtime"
        return Choice(runtime, self.model_path, False, report)

    def _measure(self, wanted: list[str], imgsz: int, half: bool) -> Choice:
        probes = probe_pages()
        options = Options(conf=PARITY_CONF, imgsz=imgsz)
        reference = YOLO(str(self.model_path), task="detect")
        expected = [predict(reference, [probe], options, self.device, half)[0] for probe in probes]
        report: dict[str, dict] = {}
        timed: list[tuple[float, str, Path]] = []
        for runtime in dict.fromkeys([*wanted, "torch"]):
            runs_half = half and runtime in HALF_RUNTIMES
            try:
                path, model = self.model_path, reference
                if runtime != "torch":
                    path = self._export(runtime, imgsz, half)
                    model = runtime_model(path, runtime)
                    ok, worst = self._parity(reference, model, probes, expected, options, runs_half)
                    report[runtime] = {"parity": ok, **worst}
                    if not ok and runtime == "openvino" and self.kind == "cpu":
                        # the CPU's bf16 (OpenVINO's default where the CPU has it) may move a
                        # near-tie in NMS; the same export in f32 is still faster than the others
                        model = runtime_model(path, runtime, "f32")
                        ok, worst = self._parity(reference, model, probes, expected, options, runs_half)
                        report[runtime] = {"parity": ok, **worst, "precision": "f32",
                                           "default_precision": report[runtime]}
                    if not ok:
                        continue
                ms = _time_predict(model, probes[0], imgsz, self.device, runs_half)
                report.setdefault(runtime, {})["ms_per_page"] = round(ms, 2)
                if runtime in wanted:
                    timed.append((ms, runtime, path))
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot export or run is skipped
                log.warning("runtime %s unusable for %s: %s", runtime, self.model_path.name, exc)
                report[runtime] = {"error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}
        if not timed:
            return Choice("torch", self.model_path, half, report)
        ms, runtime, path = min(timed)
        report[runtime]["chosen"] = "fastest that passed parity"
        return Choice(runtime, path, half and runtime in HALF_RUNTIMES, report)

    def _parity(self, reference, model, probes: Sequence[Image.Image], expected: Sequence[list[Detection]],
                options: Options, runs_half: bool) -> tuple[bool, dict]:
        """Does `model` give what PyTorch gives on every probe page? Raw outputs on the tensor
        `model` itself receives (faithful weights), and detections through each runtime's own
        pre-processing (what a job gets). Worst figures over all probes."""
        tolerance = TOLERANCE[self.kind == "cuda"]
        worst: dict = {"probes": len(probes), "detections": 0, "unmatched": 0}
        ok = True
        for probe, wanted in zip(probes, expected, strict=True):
            found = detect(model, probe, options, self.device, runs_half)
            raw_ok, raw = parity(*_outputs_on_the_same_input(reference, model, probe, options.imgsz), tolerance)
            found_ok, figures = same_detections(wanted, found, tolerance, options.conf)
            ok = ok and raw_ok and found_ok
            for key, value in {**raw, **figures}.items():
                worst[key] = WORST[key](worst[key], value) if key in worst and key in WORST else value
        return ok, worst

    def _export(self, runtime: str, imgsz: int, half: bool) -> Path:
        """The export for `runtime` at `imgsz` (made now if missing, or made with other options),
        in its own cache folder."""
        folder = self.root / f"{runtime}-{imgsz}"
        done = folder / "export.json"
        options = export_options(runtime, imgsz, half, self.device)
        if done.is_file():
            made = json.loads(done.read_text())
            if made.get("options") == options:
                return folder / made["artifact"]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        source = folder / "model.pt"
        shutil.copy(self.model_path, source)
        started = time.perf_counter()
        exported = Path(YOLO(str(source), task="detect").export(**options))
        source.unlink()
        done.write_text(json.dumps({"artifact": exported.name, "options": options,
                                    "seconds": round(time.perf_counter() - started, 2)}))
        return folder / exported.name


def export_options(runtime: str, imgsz: int, half: bool, device: str) -> dict:
    """What ultralytics' export gets. ONNX and OpenVINO take dynamic shapes: page-shaped inputs,
    the same PyTorch gets, not padded squares (fewer pixels, and the same boxes)."""
    options = {"format": EXPORT_FORMAT[runtime], "imgsz": imgsz, "device": device}
    if runtime == "onnx":
        options.update(dynamic=True, simplify=False)
    elif runtime == "openvino":
        options.update(dynamic=True)
    elif runtime == "tensorrt":
        options.update(half=half, dynamic=False)
    return options


def _outputs_on_the_same_input(reference, model, probe: Image.Image, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs (before NMS) of PyTorch and of `model` for the tensor `model`'s own
    pre-processing makes of `probe` (both models have predicted once, so their predictors exist)."""
    torch_side = reference.predictor
    if isinstance(model, LeanModel):
        given, out = model.raw(probe, imgsz)
        tensor, theirs = torch.from_numpy(given), out[None]
    else:
        bgr = np.ascontiguousarray(np.asarray(probe)[:, :, ::-1])
        tensor = model.predictor.preprocess([bgr])
        theirs = _as_array(model.predictor.inference(tensor))
    same = tensor.to(torch_side.device, torch.float16 if torch_side.model.fp16 else torch.float32)
    with torch.inference_mode():
        return _as_array(torch_side.inference(same)), theirs


def _as_array(out) -> np.ndarray:
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.float().cpu().numpy() if hasattr(out, "cpu") else np.asarray(out, dtype=np.float32)


def parity(reference: np.ndarray, other: np.ndarray, tolerance: Tolerance) -> tuple[bool, dict]:
    """Same raw detections? Outputs are (1, 4 + classes, anchors): boxes (cx, cy, w, h in input
    pixels) compared where the reference scores above 0.25, class scores everywhere."""
    if reference.shape != other.shape:
        return False, {"reason": f"output shape {other.shape} != {reference.shape}"}
    scores_ref, scores = reference[0, 4:], other[0, 4:]
    score_diff = float(np.abs(scores_ref - scores).max()) if scores.size else 0.0
    confident = scores_ref.max(0) > 0.25
    box_diff = float(np.abs(reference[0, :4, confident] - other[0, :4, confident]).max()) if confident.any() else 0.0
    ok = score_diff <= tolerance.score and box_diff <= tolerance.box_px
    return ok, {"max_score_diff": round(score_diff, 5), "max_box_diff_px": round(box_diff, 3)}


def same_detections(expected: Sequence[Detection], found: Sequence[Detection], tolerance: Tolerance,
                    conf: float) -> tuple[bool, dict]:
    """Same detections, both ways? Each detection above `conf` + the score tolerance (one that
    close to the floor may fall either side of it in the other runtime) needs a counterpart of the
    same class with IoU >= tolerance.iou and a confidence within tolerance.score."""
    unmatched, compared, worst_iou, worst_conf = 0, 0, 1.0, 0.0
    for ours, theirs in ((expected, found), (found, expected)):
        for det in ours:
            if det.confidence < conf + tolerance.score:
                continue
            compared += 1
            best = max((o for o in theirs if o.cls == det.cls), key=lambda o: box_iou(det, o), default=None)
            overlap = box_iou(det, best) if best else 0.0
            gap = abs(best.confidence - det.confidence) if best else 1.0
            worst_iou, worst_conf = min(worst_iou, overlap), max(worst_conf, gap)
            unmatched += overlap < tolerance.iou or gap > tolerance.score
    return unmatched == 0, {"detections": compared, "unmatched": unmatched, "min_iou": round(worst_iou, 4),
                            "max_conf_diff": round(worst_conf, 5)}


def box_iou(a: Detection, b: Detection) -> float:
    inter = (max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1)) * max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1)))
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def _time_predict(model, image: Image.Image, imgsz: int, device: str, half: bool, runs: int = 3) -> float:
    """Milliseconds per page through the path a job takes (pre-processing and NMS included; the
    lean path's pages in flight together, as a job's are)."""
    options = Options(imgsz=imgsz)
    for _ in range(2):
        detect(model, image, options, device, half)
        keep_torch_threads()
    start = time.perf_counter()
    if isinstance(model, LeanModel):
        model.predict([image] * (runs + 1), options)
        return (time.perf_counter() - start) / (runs + 1) * 1000
    for _ in range(runs):
        detect(model, image, options, device, half)
    return (time.perf_counter() - start) / runs * 1000
