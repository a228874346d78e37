"""The loaded model of a regions worker: one `Detector`, built once per process and model file,
warmed once, then fed batches of page images.

Ultralytics checkpoints (.pt of every family it loads) and exported ONNX models go through
`ultralytics.YOLO`; legacy YOLOv5 checkpoints through `legacy.LegacyYolov5`. Either way the
output is `Detection`s in the pixels of the original image.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from .checkpoints import inspect_checkpoint


def keep_torch_threads() -> None:
    """Ultralytics sets PyTorch to cpu_count - 1 threads whenever it picks a device (1 on a 2-core
    machine, half the CPU); give PyTorch every core this process may use again."""
    import torch  # noqa: PLC0415

    wanted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def quiet_ultralytics(config_dir: Path) -> None:
    """Ultralytics must never install packages or phone home from a worker, and keeps its settings
    in a writable folder of ours. Set before its first import."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))


@dataclass(frozen=True)
class Detection:
    cls: int
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Options:
    conf: float = 0.25
    iou: float = 0.45
    imgsz: int = 640
    classes: tuple[int, ...] = ()
    max_det: int = 300


def same_shape(images: Sequence[Image.Image], imgsz: int) -> tuple[list[Image.Image], list[tuple[float, float]]]:
    """A batch of pages of one shape, and the factors that map boxes back to each original.

    Ultralytics pads a batch of mixed shapes to imgsz x imgsz squares; pages of one shape get a
    page-shaped input instead (far fewer pixels). So a batch of several shapes is resized to the
    pages' mean aspect ratio at the model's input size; callers group pages of close aspect
    ratios (see `by_aspect`), so the distortion stays small. One page, or one shape: untouched."""
    if len({im.size for im in images}) <= 1:
        return list(images), [(1.0, 1.0)] * len(images)
    ratio = sum(im.height / im.width for im in images) / len(images)
    width, height = (imgsz, max(1, round(imgsz * ratio))) if ratio <= 1 else (max(1, round(imgsz / ratio)), imgsz)
    return ([im.resize((width, height), Image.BILINEAR) for im in images],
            [(im.width / width, im.height / height) for im in images])


def by_aspect(items: list, size: int, aspect) -> list[list]:
    """`items` in batches of `size`, each of items with close aspect ratios (`aspect(item)`)."""
    ordered = sorted(items, key=aspect)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def predict(model, images: Sequence[Image.Image], options: Options, device: str,
            half: bool) -> list[list[Detection]]:
    """What a job gets from an ultralytics model of any runtime: each runtime's own
    pre-processing (page-shaped inputs for PyTorch and dynamic exports, squares for static ones),
    NMS, and boxes in the pixels of each original image. The runtime chooser judges exports on
    this very function, so parity means parity of what users get."""
    inputs, scales = same_shape(images, options.imgsz)
    results = model.predict(
        inputs, conf=options.conf, iou=options.iou, imgsz=options.imgsz,
        classes=list(options.classes) or None, max_det=options.max_det, device=device,
        verbose=False, batch=len(images), **({"half": True} if half else {}))
    keep_torch_threads()
    found = []
    for result, (sx, sy) in zip(results, scales):
        boxes = result.boxes
        xyxy, conf, cls = boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()
        found.append([Detection(int(c), float(p), b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)
                      for b, p, c in zip(xyxy, conf, cls)])
    return found


class Detector:
    def __init__(self, path: Path, device: str, batch_size: int = 0, runtime: str = "torch",
                 cache_root: Path | None = None, imgsz: int = 640):
        self.path = path
        self.name = path.name
        self.device = device
        info = inspect_checkpoint(path)
        self.format = info.format
        quiet_ultralytics(path.parent / ".ultralytics")
        self.chooser = None
        self._by_size: dict[int, tuple[str, object, bool]] = {}
        if info.format == "yolov5":
            from .legacy import LegacyYolov5  # noqa: PLC0415

            self.model = LegacyYolov5(path, device)
            self.classes = self.model.names
            self.runtime, self.half = "torch", device.startswith("cuda")
        else:
            from ultralytics import YOLO  # noqa: PLC0415 - workers only

            if info.format == "ultralytics" and runtime != "torch":
                from .runtimes import RuntimeChooser  # noqa: PLC0415

                self.chooser = RuntimeChooser(path, cache_root or path.parent / ".cache", device, runtime)
            self.model = self.torch_model = YOLO(str(path), task="detect")
            self.classes = [str(self.model.names[k]) for k in sorted(self.model.names)] if self.model.names else []
            self.runtime = "onnx" if info.format == "onnx" else "torch"
            self.half = device.startswith("cuda") and self.format != "onnx"
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
            from ultralytics import YOLO  # noqa: PLC0415

            choice = self.chooser.choose(imgsz)
            model = self.torch_model if choice.runtime == "torch" else YOLO(str(choice.path), task="detect")
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
        return predict(self.model, images, options, self.device, self.half)

    def label(self, cls: int) -> str:
        return self.classes[cls] if 0 <= cls < len(self.classes) else str(cls)
