"""What both sides of regions share, with the standard library only: the API declares its
parameters' defaults from `DEFAULTS` and must not import the worker's modules (torch, ultralytics),
while those modules exchange `Detection`s and `Options` among themselves.

`quiet_ultralytics` is here too because it must run before ultralytics is first imported, that is,
before any worker module is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Detection:
    """A box in the pixels of the original image."""

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


DEFAULTS = Options()  # the job parameters' defaults, and the input size a model is warmed at


def quiet_ultralytics(config_dir: Path) -> None:
    """Ultralytics must never install packages or phone home from a worker, and keeps its settings
    in a writable folder of ours. It reads these when imported: call this first."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
