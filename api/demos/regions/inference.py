"""What a job gets from an ultralytics model, whatever runtime runs it: the detector runs jobs
through `predict`, and the runtime chooser judges exports on that very function, so parity means
parity of what users get. Worker side (torch)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import torch
from PIL import Image

from .common import Detection, Options

T = TypeVar("T")


def keep_torch_threads() -> None:
    """Ultralytics sets PyTorch to cpu_count - 1 threads whenever it picks a device (1 on a 2-core
    machine, half the CPU); give PyTorch every core this process may use again."""
    wanted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


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


def by_aspect(items: list, size: int, aspect: Callable[[Any], float]) -> list[list]:
    """`items` in batches of `size`, each of items with close aspect ratios (`aspect(item)`)."""
    ordered = sorted(items, key=aspect)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def page_batches(items: Iterable[T], size: int, aspect: Callable[[T], float]) -> Iterator[list[T]]:
    """Batches of pages; with batches of several pages (GPU), a window of 4 batches is regrouped
    by aspect ratio (`aspect(item)`: height / width) so each batch pads little (see same_shape)."""
    if size <= 1:
        yield from chunks(items, 1)
        return
    for window in chunks(items, 4 * size):
        yield from by_aspect(window, size, aspect)


def predict(model, images: Sequence[Image.Image], options: Options, device: str,
            half: bool) -> list[list[Detection]]:
    """Each runtime's own pre-processing (page-shaped inputs for PyTorch and dynamic exports,
    squares for static ones), NMS, and boxes in the pixels of each original image."""
    inputs, scales = same_shape(images, options.imgsz)
    results = model.predict(
        inputs, conf=options.conf, iou=options.iou, imgsz=options.imgsz,
        classes=list(options.classes) or None, max_det=options.max_det, device=device,
        verbose=False, batch=len(images), **({"half": True} if half else {}))
    keep_torch_threads()
    found = []
    for result, (sx, sy) in zip(results, scales, strict=True):
        boxes = result.boxes
        xyxy, conf, cls = boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()
        found.append([Detection(int(c), float(p), b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)
                      for b, p, c in zip(xyxy, conf, cls, strict=True)])
    return found
