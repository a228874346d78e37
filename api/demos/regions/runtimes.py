"""Which runtime runs a model in this worker: PyTorch, or an export of the same weights to
OpenVINO, ONNX Runtime or TensorRT, chosen once per model, device and input size, and cached.

`INFERENCE_RUNTIME=auto` (the default) considers, on CPU, OpenVINO, ONNX Runtime and PyTorch; on
CUDA, TensorRT (FP16, when `tensorrt` is importable) and PyTorch (FP16). Each export is made once,
under a file lock (two workers never export at once), into
DATA_FOLDER/models/.cache/<model sha256>/<runtime>-<imgsz>/, then checked for parity against
PyTorch on the same input (raw outputs: class scores within 0.02 — 0.05 in FP16 — and boxes
within 1.5 px — 3 px in FP16); an export that fails parity is never chosen. Among the ones that
pass, the fastest on a page-shaped image wins: the measurement, not a rule, decides. The choice
and its figures are kept in `choice-<device>-<imgsz>.json` beside the exports.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from api.platform.exports import check_runtime_setting, export_folder, file_lock

RUNTIMES = ("torch", "onnx", "openvino", "tensorrt")
EXPORT_FORMAT = {"onnx": "onnx", "openvino": "openvino", "tensorrt": "engine"}
MODULE_OF = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "torch"}

log = logging.getLogger(__name__)


@dataclass
class Choice:
    runtime: str  # the runtime that runs the model
    path: Path  # what ultralytics loads: the .pt, or the export
    half: bool = False
    report: dict = field(default_factory=dict)  # every candidate: parity, ms per page, or error


def available(runtime: str) -> bool:
    return importlib.util.find_spec(MODULE_OF[runtime]) is not None


def candidates(setting: str, device: str) -> list[str]:
    if setting != "auto":
        return [setting]
    if device.startswith("cuda"):
        return [r for r in ("tensorrt", "torch") if available(r)]
    return [r for r in ("openvino", "onnx", "torch") if available(r)]


def cache_folder(cache_root: Path, model_path: Path) -> Path:
    """Where the exports of this model file live (see api.platform.exports)."""
    return export_folder(cache_root, model_path)


def recorded_choices(cache_root: Path, model_path: Path) -> dict[str, str]:
    """{"<device>-<setting>-<imgsz>": runtime} for the choices workers made for this model."""
    folder = cache_folder(cache_root, model_path)
    found = {}
    for record in sorted(folder.glob("choice-*.json")):
        try:
            found[record.stem.removeprefix("choice-")] = json.loads(record.read_text())["runtime"]
        except (ValueError, KeyError, OSError):
            continue
    return found


def probe_image(width: int = 1000, height: int = 1400) -> np.ndarray:
    """A deterministic page-like picture (BGR): paper, dark strokes and coloured blocks, so the
    network's outputs are not all near zero when two runtimes are compared."""
    rng = np.random.default_rng(0)
    image = np.full((height, width, 3), (200, 220, 235), np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, height - 10), rng.integers(0, width - 80)
        image[y:y + 6, x:x + rng.integers(20, 80)] = (40, 50, 60)
    for _ in range(4):
        y, x = rng.integers(0, height - 300), rng.integers(0, width - 300)
        h, w = rng.integers(100, 300), rng.integers(100, 300)
        image[y:y + h, x:x + w] = rng.integers(0, 255, (h, w, 3), dtype=np.uint8) // 2 + 64
    return image


class RuntimeChooser:
    def __init__(self, model_path: Path, cache_root: Path, device: str, setting: str = "auto"):
        check_runtime_setting(setting)
        self.model_path = model_path
        self.device = device
        self.setting = setting
        self.kind = "cuda" if device.startswith("cuda") else "cpu"
        self.root = cache_folder(cache_root, model_path)

    def choose(self, imgsz: int) -> Choice:
        """The runtime for this model at `imgsz`, exporting and measuring at the first call only."""
        half = self.kind == "cuda"
        wanted = candidates(self.setting, self.device)
        if wanted == ["torch"] or not wanted:
            return Choice("torch", self.model_path, half, {"torch": {"chosen": "only candidate"}})
        record = self.root / f"choice-{self.kind}-{self.setting}-{imgsz}.json"
        with file_lock(self.root / ".lock"):
            if record.is_file():
                saved = json.loads(record.read_text())
                path = Path(saved["path"])
                if path.exists():
                    return Choice(saved["runtime"], path, saved["half"], saved["report"])
            choice = self._measure(wanted, imgsz, half)
            record.write_text(json.dumps({"runtime": choice.runtime, "path": str(choice.path), "half": choice.half,
                                          "report": choice.report}, indent=1))
        return choice

    def _measure(self, wanted: list[str], imgsz: int, half: bool) -> Choice:
        from ultralytics import YOLO  # noqa: PLC0415

        probe = probe_image()
        reference = self._raw_outputs(self.model_path, imgsz, half)
        report: dict[str, dict] = {}
        timed: list[tuple[float, str, Path]] = []
        for runtime in dict.fromkeys([*wanted, "torch"]):
            try:
                path = self.model_path if runtime == "torch" else self._export(runtime, imgsz, half)
                if runtime != "torch":
                    ok, worst = parity(reference, self._raw_outputs(path, imgsz, half), half)
                    report[runtime] = {"parity": ok, **worst}
                    if not ok:
                        continue
                model = YOLO(str(path), task="detect")
                ms = _time_predict(model, probe, imgsz, self.device, half and runtime == "torch")
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
        return Choice(runtime, path, half and runtime in ("torch", "tensorrt"), report)

    def _export(self, runtime: str, imgsz: int, half: bool) -> Path:
        """The export for `runtime` at `imgsz` (made now if missing), in its own cache folder."""
        folder = self.root / f"{runtime}-{imgsz}"
        done = folder / "export.json"
        if done.is_file():
            return folder / json.loads(done.read_text())["artifact"]
        from ultralytics import YOLO  # noqa: PLC0415

        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        source = folder / "model.pt"
        shutil.copy(self.model_path, source)
        started = time.perf_counter()
        options = {"format": EXPORT_FORMAT[runtime], "imgsz": imgsz, "device": self.device}
        if runtime == "onnx":
            options.update(dynamic=False, simplify=False)
        elif runtime == "openvino":
            options.update(dynamic=True)  # page-shaped inputs, not padded squares
        elif runtime == "tensorrt":
            options.update(half=half, dynamic=False)
        exported = Path(YOLO(str(source), task="detect").export(**options))
        source.unlink()
        done.write_text(json.dumps({"artifact": exported.name, "seconds": round(time.perf_counter() - started, 2)}))
        return folder / exported.name

    def _raw_outputs(self, path: Path, imgsz: int, half: bool) -> np.ndarray:
        """The network's raw output (boxes and class scores before NMS) for the probe, letterboxed
        to a square: the same tensor goes into every runtime."""
        import torch  # noqa: PLC0415
        from ultralytics.nn.autobackend import AutoBackend  # noqa: PLC0415

        probe = probe_image()[:, :, ::-1]  # RGB
        scale = imgsz / max(probe.shape[:2])
        rows = np.linspace(0, probe.shape[0] - 1, int(probe.shape[0] * scale)).astype(int)
        cols = np.linspace(0, probe.shape[1] - 1, int(probe.shape[1] * scale)).astype(int)
        square = np.full((imgsz, imgsz, 3), 114, np.uint8)
        square[:len(rows), :len(cols)] = probe[rows][:, cols]
        tensor = torch.from_numpy(square.transpose(2, 0, 1).copy()).float().unsqueeze(0) / 255
        backend = AutoBackend(str(path), device=torch.device(self.device), fp16=half, verbose=False)
        tensor = tensor.to(backend.device).half() if backend.fp16 else tensor.to(backend.device)
        with torch.inference_mode():
            out = backend(tensor)
        out = out[0] if isinstance(out, (list, tuple)) else out
        return (out.float().cpu().numpy() if hasattr(out, "cpu") else np.asarray(out, dtype=np.float32))


def parity(reference: np.ndarray, other: np.ndarray, half: bool = False) -> tuple[bool, dict]:
    """Same raw detections? Outputs are (1, 4 + classes, anchors): boxes (cx, cy, w, h in input
    pixels) compared where the reference scores above 0.25, class scores everywhere."""
    if reference.shape != other.shape:
        return False, {"reason": f"output shape {other.shape} != {reference.shape}"}
    score_tol, box_tol = (0.05, 3.0) if half else (0.02, 1.5)
    scores_ref, scores = reference[0, 4:], other[0, 4:]
    score_diff = float(np.abs(scores_ref - scores).max()) if scores.size else 0.0
    confident = scores_ref.max(0) > 0.25
    box_diff = float(np.abs(reference[0, :4, confident] - other[0, :4, confident]).max()) if confident.any() else 0.0
    ok = score_diff <= score_tol and box_diff <= box_tol
    return ok, {"max_score_diff": round(score_diff, 5), "max_box_diff_px": round(box_diff, 3)}


def _time_predict(model, image: np.ndarray, imgsz: int, device: str, half: bool, runs: int = 3) -> float:
    """Milliseconds per page through ultralytics' predict (pre-processing and NMS included)."""
    from .detector import keep_torch_threads  # noqa: PLC0415

    extra = {"half": True} if half else {}
    for _ in range(2):
        model.predict(image, imgsz=imgsz, device=device, verbose=False, **extra)
        keep_torch_threads()
    start = time.perf_counter()
    for _ in range(runs):
        model.predict(image, imgsz=imgsz, device=device, verbose=False, **extra)
    return (time.perf_counter() - start) / runs * 1000
