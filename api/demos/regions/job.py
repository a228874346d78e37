"""The worker side of regions: loading a model (`load_model`) and running a job (`run`), called by
the `Regions` demo in workers only (torch, ultralytics).

Pages go through the model in batches while a thread writes the previous pages' files (JPEG
encoding releases the GIL) and the platform downloads and decodes the next ones.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

from api.sdk import Demo, JobContext, LoadedImage

from .common import Options
from .detector import Detector
from .inference import by_aspect
from .models import missing_model_message
from .pages import PageWriter


class ModelMissing(RuntimeError):
    """The job's model file is not in the models folder (any more); the message says what to do."""


def load_model(demo: Demo, model_id: str | None) -> Detector:
    name = (model_id or "").rsplit("@", 1)[0]
    path = demo.models_folder / name
    if not path.is_file():
        raise ModelMissing(missing_model_message(name, demo.models_folder, demo.catalog))
    return Detector(path, demo.device, demo.setting("batch_size"), runtime=demo.cfg.inference_runtime,
                    cache_root=demo.exports_folder)


def run(demo: Demo, job: JobContext, model: Detector) -> dict:
    p = job.params
    options = Options(conf=p["conf"], iou=p["iou"], imgsz=p["imgsz"], classes=tuple(p["classes"]),
                      max_det=p["max_det"])
    writer = PageWriter(job, model, crops=p["crops"], padding=p["crop_padding"])
    per_image: list[float] = []
    model.prepare(options.imgsz)
    job.timings["runtime"] = model.runtime
    job.log(f"model {model.name} ({model.format}) with {model.runtime} on {model.device}, "
            f"batch {model.batch_size}")
    # Pages are written on a thread while the next batch is inferred; progress advances once a
    # page's files are whole, in page order.
    pending: deque[tuple[Future, float]] = deque()

    def finish_oldest() -> None:
        future, inference_share = pending.popleft()
        written = future.result()
        job.timing("outputs", written)
        per_image.append(inference_share + written)
        job.advance()

    with ThreadPoolExecutor(1, thread_name_prefix="regions-writer") as pool:
        for batch in page_batches(job.images(), model.batch_size):
            start = time.perf_counter()
            found = model.detect([item.image for item in batch], options)
            inference = time.perf_counter() - start
            job.timing("inference", inference)
            job.observe_inference(model.runtime, inference, len(batch))
            while len(pending) > model.batch_size:  # at most one batch written behind
                finish_oldest()
            for item, detections in zip(batch, found, strict=True):
                pending.append((pool.submit(writer.write_page, item, detections), inference / len(batch)))
        while pending:
            finish_oldest()
    start = time.perf_counter()
    files = writer.finish()
    job.timing("outputs", time.perf_counter() - start)
    result = summary(job, model, writer.class_counts, per_image)
    job.write_json("summary.json", result)
    return {"model": model.name, "classes": model.classes, "annotations": writer.annotations,
            "files": files, "summary": result, "summary_url": job.url("summary.json")}


def chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def page_batches(images: Iterable[LoadedImage], size: int) -> Iterator[list[LoadedImage]]:
    """Batches of pages; with batches of several pages (GPU), a window of 4 batches is regrouped
    by aspect ratio so each batch pads little (see inference.same_shape)."""
    if size <= 1:
        yield from chunks(images, 1)
        return
    for window in chunks(images, 4 * size):
        yield from by_aspect(window, size, lambda item: item.image.height / item.image.width)


def summary(job: JobContext, model: Detector, class_counts: Counter, per_image: list[float]) -> dict:
    return {
        "model": model.name, "format": model.format, "device": model.device, "batch_size": model.batch_size,
        "runtime": model.runtime, "runtime_choice": model.runtime_report,
        "images": len(per_image), "images_failed": job.failed_images,
        "detections": sum(class_counts.values()),
        "detections_per_class": {model.label(c): n for c, n in sorted(class_counts.items())},
        "seconds_per_image": {"mean": round(statistics.fmean(per_image), 4) if per_image else None,
                              "median": round(statistics.median(per_image), 4) if per_image else None},
        "model_warmup_s": round(model.warm_s, 4),
        "timings": dict(job.timings),
    }
