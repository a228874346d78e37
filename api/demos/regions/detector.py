"""The loaded model of a regions worker: one `Detector`, built once per process and model file,
warmed once, then fed a job's pages (`stream`).

Ultralytics checkpoints (.pt of every family it loads) run in PyTorch through `ultralytics.YOLO`,
or as the export `runtimes.RuntimeChooser` picks; exports (OpenVINO, ONNX) and ONNX model files
run through `lean.LeanModel` (the compiled model, our letterbox and NMS, pages pipelined), and
through ultralytics only when the lean path cannot read them. Legacy YOLOv5 checkpoints go through
`legacy.LegacyYolov5`. Either way the output is `Detection`s in the pixels of the image given.
Import it after `common.quiet_ultralytics`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from ultralytics import YOLO

from .checkpoints import inspect_checkpoint
from .common import (
    DEFAULTS,
    Detection,
    Options,
)
from .inference import page_batches, predict
from .lean import LeanModel
from .legacy import LegacyYolov5
from .runtimes import RuntimeChooser, lean_or_none, precision_of, runtime_model

T = TypeVar("T")


class Detector:
    def __init__(self, path: Path, device: str, batch_size: int = 0, runtime: str = "torch",
                 cache_root: Path | None = None, imgsz: int = DEFAULTS.imgsz):
        """`runtime` other than "torch" (INFERENCE_RUNTIME) lets a checkpoint run as an export,
        kept under `cache_root` (the demo's exports folder)."""
        self.path = path
        self.name = path.name
        self.device = device
        info = inspect_checkpoint(path)
        self.format = info.format
        self.chooser: RuntimeChooser | None = None
        self._by_size: dict[int, tuple[str, Any, bool]] = {}
        if info.format == "yolov5":
            self.model = LegacyYolov5(path, device)
            self.classes = self.model.names
            self.runtime, self.half = "torch", device.startswith("cuda")
        else:
            if info.format == "ultralytics" and runtime != "torch":
                if cache_root is None:
                    raise ValueError(f"runtime {runtime!r} needs a cache_root to keep its exports in")
                self.chooser = RuntimeChooser(path, cache_root, device, runtime)
            elif info.format == "onnx" and runtime not in ("torch", "onnx") and cache_root is not None:
                self.chooser = RuntimeChooser(path, cache_root, device, runtime)  # OpenVINO may run the file
            self.model = self.torch_model = YOLO(str(path), task="detect")
            self.classes = [str(self.model.names[k]) for k in sorted(self.model.names)] if self.model.names else []
            self.runtime = "onnx" if info.format == "onnx" else "torch"
            self.half = device.startswith("cuda") and self.format != "onnx"
            if info.format == "onnx" and not device.startswith("cuda"):
                self.model = lean_or_none(path, "onnx") or self.model
        self.runtime_report: dict = {}
        # ONNX exports have a fixed batch of one unless exported dynamic; on CPU one image at a time
        # is fastest (mixed page sizes would be padded to squares).
        self.torch_batch_size = batch_size or (16 if device.startswith("cuda") and self.format != "onnx" else 1)
        self.batch_size = self.torch_batch_size
        self.default_imgsz = imgsz
        self._select(imgsz)
        self.warm_s = self._warm_up()

    def prepare(self, imgsz: int) -> None:
        """Pick the runtime for a job's input size before its batches are formed."""
        self._select(imgsz)

    def _select(self, imgsz: int) -> None:
        """Use the runtime chosen for `imgsz` (exported and measured once, then cached on disk)."""
        if self.chooser is None:
            return
        if imgsz not in self._by_size:
            choice = self.chooser.choose(imgsz)
            if choice.runtime == "torch" or (choice.runtime == "onnx" and isinstance(self.model, LeanModel)
                                             and self.model.path == choice.path):
                model = self.torch_model if choice.runtime == "torch" else self.model
            else:
                model = runtime_model(choice.path, choice.runtime, precision_of(choice))
            self._by_size[imgsz] = (choice.runtime, model, choice.half)
            self.runtime_report = choice.report
        self.runtime, self.model, self.half = self._by_size[imgsz]
        # exports take one page at a time (static or page-shaped inputs)
        self.batch_size = self.torch_batch_size if self.runtime == "torch" else 1

    def _warm_up(self) -> float:
        """One forward pass now, so the first page of the first job pays no set-up cost."""
        start = time.perf_counter()
        self.detect([Image.new("RGB", (64, 64), "white")], Options(imgsz=self.default_imgsz))
        return time.perf_counter() - start

    def detect(self, images: Sequence[Image.Image], options: Options) -> list[list[Detection]]:
        """Detections for each image, in order; images go through in one forward when they fit
        one batch (callers pass at most `batch_size`)."""
        if self.format == "yolov5":
            return self.model.detect(images, options)
        self._select(options.imgsz)
        if isinstance(self.model, LeanModel):
            return self.model.predict(images, options)
        return predict(self.model, images, options, self.device, self.half)

    @property
    def lean(self) -> bool:
        """Whether pages go through `lean.LeanModel` (pipelined, one page per request)."""
        return isinstance(self.model, LeanModel)

    def stream(self, items: Iterable[T], options: Options,
               image_of: Callable[[T], Image.Image]) -> Iterator[tuple[T, list[Detection], float]]:
        """(item, detections in the pixels of `image_of(item)`, seconds of inference per page) for
        a job's items, in order for exports (pipelined: the next page is prepared while one is
        computed), by batches for PyTorch (pages regrouped by aspect ratio on GPU)."""
        self._select(options.imgsz)
        if isinstance(self.model, LeanModel):
            yield from self.model.stream(items, options, image_of)
            return
        for batch in page_batches(items, self.batch_size, lambda item: _aspect(image_of(item))):
            start = time.perf_counter()
            found = self.detect([image_of(item) for item in batch], options)
            seconds = (time.perf_counter() - start) / len(batch)
            yield from ((item, detections, seconds) for item, detections in zip(batch, found, strict=True))

    def label(self, cls: int) -> str:
        return self.classes[cls] if 0 <= cls < len(self.classes) else str(cls)


def _aspect(image: Image.Image) -> float:
    return image.height / image.width
