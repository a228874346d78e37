"""Lean inference for exported models (OpenVINO IR, ONNX): the compiled model and the few lines
around it, without ultralytics' per-call machinery.

Ultralytics' `predict` turns each page into a BGR array, letterboxes it, makes a torch tensor,
runs the backend, runs NMS in torch and builds `Results` objects: on two CPU cores that is a
third of the time the network itself takes. Here a page goes: RGB array → letterbox (the same
arithmetic and the same OpenCV resize as ultralytics' `LetterBox`, so the same input pixels) →
the compiled model (OpenVINO with the u8→float conversion built into the graph, or an ONNX
Runtime session) → a vectorised NMS in numpy with ultralytics' rules (best class per anchor,
score > conf, class-aware greedy suppression at IoU > iou, at most max_det) → boxes mapped back
as ultralytics' `scale_boxes` maps them. `tests/test_regions_fast.py` holds it to ultralytics'
own predict on the same export.

`LeanModel.stream` keeps up to `depth` pages in flight: the runtime computes one page (its own
threads, without the GIL) while Python letterboxes the next and runs NMS on the last.
"""
from __future__ import annotations

import ast
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import yaml
from PIL import Image

try:  # optional runtimes: a machine may lack either (the GPU kit's device has no OpenVINO)
    import openvino as ov
except ImportError:  # pragma: no cover - depends on the machine
    ov = None
try:
    import onnxruntime
except ImportError:  # pragma: no cover
    onnxruntime = None

from .checkpoints import onnx_metadata
from .common import Detection, Options

T = TypeVar("T")
PAD_VALUE = 114  # ultralytics' letterbox grey
MAX_WH = 7680  # ultralytics' class offset for class-aware NMS
MAX_NMS = 30000  # boxes kept for NMS, by confidence


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Frame:
    """Where a page sits in the network input: (height, width) of the page and of the input,
    as ultralytics' `scale_boxes` recomputes it."""

    page: tuple[int, int]
    input: tuple[int, int]

    def to_page(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in input pixels → page pixels, clipped to the page (`ops.scale_boxes`)."""
        (h0, w0), (h1, w1) = self.page, self.input
        gain = min(h1 / h0, w1 / w0)
        new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
        gain_y, gain_x = new_h / h0, new_w / w0
        pad_x, pad_y = round((w1 - new_w) / 2 - 0.1), round((h1 - new_h) / 2 - 0.1)
        out = boxes.copy()
        out[:, [0, 2]] = ((out[:, [0, 2]] - pad_x) / gain_x).clip(0, w0)
        out[:, [1, 3]] = ((out[:, [1, 3]] - pad_y) / gain_y).clip(0, h0)
        return out


def input_shape(imgsz: int | Sequence[int], stride: int) -> tuple[int, int]:
    """(height, width) the network is given at most: `check_imgsz` rounds each up to the stride."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (imgsz[0], imgsz[-1])
    return math.ceil(h / stride) * stride, math.ceil(w / stride) * stride


def letterbox(rgb: np.ndarray, shape: tuple[int, int], stride: int, auto: bool) -> tuple[np.ndarray, Frame]:
    """`rgb` (H, W, 3 uint8) resized into `shape` (height, width) keeping its aspect ratio and
    padded with grey, as ultralytics' `LetterBox` does; `auto`: padded only to the next multiple
    of `stride` (page-shaped input, for dynamic models)."""
    h0, w0 = rgb.shape[:2]
    r = min(shape[0] / h0, shape[1] / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = shape[1] - new_w, shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    image = rgb if (w0, h0) == (new_w, new_h) else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return image, Frame((h0, w0), image.shape[:2])


def nms(pred: np.ndarray, conf: float, iou: float, classes: Sequence[int] = (), max_det: int = 300
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xyxy boxes, scores, classes) of one image's raw output `pred` (4 + classes, anchors):
    ultralytics' `non_max_suppression` for a detect model (best class per anchor, score > conf,
    class filter, at most MAX_NMS by score, greedy class-aware suppression of IoU > iou, at most
    max_det), in float32 as it computes."""
    scores_all = pred[4:]
    best = scores_all.max(0)
    keep = best > conf
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    candidates = pred[:, keep]
    scores, cls = best[keep], scores_all[:, keep].argmax(0)
    if classes:
        wanted = np.isin(cls, np.asarray(classes))
        candidates, scores, cls = candidates[:, wanted], scores[wanted], cls[wanted]
    order = np.argsort(-scores, kind="stable")[:MAX_NMS]
    cx, cy, w, h = candidates[:4, order]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    scores, cls = scores[order], cls[order]
    shifted = boxes + (cls.astype(np.float32) * np.float32(MAX_WH))[:, None]
    areas = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    alive = np.arange(len(scores))
    kept: list[int] = []
    while alive.size and len(kept) < max_det:
        i, rest = alive[0], alive[1:]
        kept.append(int(i))
        x1 = np.maximum(shifted[i, 0], shifted[rest, 0])
        y1 = np.maximum(shifted[i, 1], shifted[rest, 1])
        x2 = np.minimum(shifted[i, 2], shifted[rest, 2])
        y2 = np.minimum(shifted[i, 3], shifted[rest, 3])
        inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
        overlap = inter / (areas[i] + areas[rest] - inter)
        alive = rest[overlap <= iou]
    index = np.asarray(kept, dtype=np.int64)
    return boxes[index], scores[index], cls[index]


# -- runtimes: a compiled model that takes a (1, H, W, 3) uint8 page and answers its raw output ----
def to_tensor(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → (N, 3, H, W) float32 in 0-1, the values ultralytics' `preprocess`
    gives (the same float32 division). Not folded into the OpenVINO graph: there the CPU plugin's
    bf16 arithmetic would round the first layer differently from ultralytics' own OpenVINO run."""
    tensor = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
    tensor /= 255.0
    return tensor


class OpenVinoRuntime:
    """An OpenVINO IR (ultralytics' `*_openvino_model/`), compiled as ultralytics compiles it (the
    plugin's default precision, bf16 where the CPU has it), or an ONNX file read directly and
    computed in f32 (the outputs ONNX Runtime gives, at about half its CPU time). `hint`: the
    throughput hint runs one stream per core or so, each page on one, as many infer requests as
    streams (at least `depth`) asynchronously: a job's pages keep every core busy without the
    per-layer hand-offs between threads that the latency hint makes (and that a decoding thread
    beside the model stalls)."""

    name = "openvino"

    def __init__(self, path: Path, depth: int = 2, hint: str = "THROUGHPUT", precision: str | None = None):
        """`precision`: "f32" to compute in f32 (the default for an ONNX file); None: the plugin's."""
        if ov is None:
            raise RuntimeError("OpenVINO is not installed here; use another INFERENCE_RUNTIME")
        config = {"PERFORMANCE_HINT": hint}
        if precision or path.suffix == ".onnx":
            config["INFERENCE_PRECISION_HINT"] = precision or "f32"
        if path.suffix == ".onnx":
            source = path
            self.metadata = {k: _literal(v) for k, v in onnx_metadata(path).items()}
        else:
            source = next(path.glob("*.xml"))
            meta = path / "metadata.yaml"
            self.metadata = yaml.safe_load(meta.read_text()) if meta.is_file() else {}
        core = ov.Core()
        model = core.read_model(source)
        self.static_shape = _static_hw(model.inputs[0].get_partial_shape())
        self.compiled = core.compile_model(model, "CPU", config)
        self.depth = max(1, depth, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [self.compiled.create_infer_request() for _ in range(self.depth)]
        self.free: deque = deque(self.requests)

    def start(self, batch: np.ndarray) -> Any:
        request = self.free.popleft()
        tensor = to_tensor(batch)  # shared with the request: held in the handle until it is done
        request.start_async({0: tensor}, share_inputs=True)
        return request, time.perf_counter(), tensor

    def finish(self, handle: Any) -> tuple[np.ndarray, float]:
        request, started, _ = handle
        request.wait()
        out = request.get_output_tensor(0).data[0].copy()
        self.free.append(request)
        return out, time.perf_counter() - started


class OnnxRuntime:
    """An ONNX file in an ONNX Runtime session on the CPU; runs in a thread (the session releases
    the GIL), so the next page is prepared meanwhile."""

    name = "onnx"

    def __init__(self, path: Path, depth: int = 1):
        if onnxruntime is None:
            raise RuntimeError("ONNX Runtime is not installed here; use another INFERENCE_RUNTIME")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_count()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k: _literal(v) for k, v in meta.items()}
        node = self.session.get_inputs()[0]
        self.input_name = node.name
        height, width = node.shape[2:]
        self.static_shape = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        self.depth = max(1, depth)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="onnx-infer")  # one run at a time, on every core

    def start(self, batch: np.ndarray) -> Any:
        return self.pool.submit(self._run, to_tensor(batch))

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        out = self.session.run(None, {self.input_name: tensor})[0][0]
        return out, time.perf_counter() - started

    def finish(self, handle: Future) -> tuple[np.ndarray, float]:
        return handle.result()


def _static_hw(shape: Any) -> tuple[int, int] | None:
    dims = list(shape)
    if len(dims) == 4 and dims[2].is_static and dims[3].is_static:
        return dims[2].get_length(), dims[3].get_length()
    return None


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


# -- the model ---------------------------------------------------------------------------------------
class Unsupported(ValueError):
    """An export this path does not read (another task, NMS inside the model, no metadata):
    ultralytics runs it instead."""


@dataclass
class Pending:
    item: Any
    frame: Frame
    handle: Any


class LeanModel:
    """An exported YOLO detector: `predict` for a few pages, `stream` for a job's pages."""

    def __init__(self, path: Path, runtime: str, depth: int = 2, hint: str = "THROUGHPUT",
                 precision: str | None = None):
        if runtime == "openvino":
            self.runtime: OpenVinoRuntime | OnnxRuntime = OpenVinoRuntime(artifact(path, runtime), depth, hint,
                                                                          precision)
        elif runtime == "onnx":
            self.runtime = OnnxRuntime(path, depth)
        else:
            raise Unsupported(f"no lean path for runtime {runtime!r}")
        meta = self.runtime.metadata
        if meta.get("task", "detect") != "detect" or str(meta.get("end2end", False)) == "True" or "stride" not in meta:
            raise Unsupported(f"{path.name}: not a plain ultralytics detect export "
                              f"(task {meta.get('task')!r}, end2end {meta.get('end2end')!r})")
        self.path = path
        self.depth = self.runtime.depth
        self.stride = int(meta["stride"])
        self.names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
        self.dynamic = self.runtime.static_shape is None
        self.seconds = 0.0  # time inside the runtime, summed over pages

    def shape_for(self, imgsz: int) -> tuple[int, int]:
        """The network input at most: the job's size for a dynamic export; a static one takes the
        size it was exported at, whatever the job asks (as ultralytics does)."""
        if self.runtime.static_shape is not None:
            return self.runtime.static_shape
        return input_shape(imgsz, self.stride)

    def predict(self, images: Sequence[Image.Image], options: Options) -> list[list[Detection]]:
        return [found for _, found, _ in self.stream(images, options, lambda image: image)]

    def stream(self, items: Iterable[T], options: Options,
               image_of: Callable[[T], Image.Image]) -> Iterator[tuple[T, list[Detection], float]]:
        """(item, detections in the pixels of `image_of(item)`, seconds in the runtime) for each
        item, in order, with up to `depth` pages in the runtime at once."""
        shape = self.shape_for(options.imgsz)
        in_flight: deque[Pending] = deque()
        for item in items:
            if len(in_flight) >= self.depth:
                yield self._finish(in_flight.popleft(), options)
            image = image_of(item)
            batch, frame = letterbox(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), shape,
                                     self.stride, auto=self.dynamic)
            in_flight.append(Pending(item, frame, self.runtime.start(batch[None])))
        while in_flight:
            yield self._finish(in_flight.popleft(), options)

    def _finish(self, pending: Pending, options: Options) -> tuple[Any, list[Detection], float]:
        out, seconds = self.runtime.finish(pending.handle)
        self.seconds += seconds
        boxes, scores, cls = nms(out, options.conf, options.iou, options.classes, options.max_det)
        boxes = pending.frame.to_page(boxes)
        found = [Detection(int(c), float(p), *b)
                 for b, p, c in zip(boxes.tolist(), scores.tolist(), cls.tolist(), strict=True)]
        return pending.item, found, seconds

    def raw(self, image: Image.Image, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
        """(the input as ultralytics' tensor holds it: (1, 3, H, W) float32 in 0-1, the raw output
        (4 + classes, anchors)) of one page, for parity checks."""
        batch, _ = letterbox(np.asarray(image.convert("RGB")), self.shape_for(imgsz), self.stride, auto=self.dynamic)
        out, _ = self.runtime.finish(self.runtime.start(batch[None]))
        return to_tensor(batch[None]), out


def artifact(path: Path, runtime: str) -> Path:
    """What the lean runtime opens: an .onnx file, or an OpenVINO IR's folder."""
    return path if runtime == "onnx" or path.suffix == ".onnx" or path.is_dir() else path.parent
