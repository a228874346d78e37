"""The worker side of regions: loading a model (`load_model`) and running a job (`run`), called by
the `Regions` demo in workers only (torch, ultralytics).

A page's way through a job, each step overlapping the others:
  - the platform downloads and decodes the next pages on its threads; a JPEG much larger than
    the model's input is decoded at a DCT scale (`reduced_decoding`: long side >= the larger of
    the model's input and the preview size; the model's input alone for a job without previews),
    at most `decode_threads` at once;
  - the model (`Detector.stream`) sees that reduced page: exports run pipelined through
    `lean.LeanModel`, PyTorch in batches; boxes are mapped back to full-resolution pixels exactly
    (`LoadedImage.to_full`);
  - a thread writes the page's files (`PageWriter`), decoding the full-resolution page only when
    it has boxes to crop, up to WRITER_BACKLOG pages behind the model (`timings.writer_wait`: how
    long the model waited for it).
"""
from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor

from api.sdk import Demo, JobContext, LoadedImage, reduced_decoding

from .common import Detection, Options
from .detector import Detector
from .models import missing_model_message
from .outputs import PREVIEW_MAX_SIDE
from .pages import PageWriter

WRITER_BACKLOG = 4  # pages inferred but not written yet (each holds its page as decoded)


class ModelMissing(RuntimeError):
    """The job's model file is not in the models folder (any more); the message says what to do."""


def load_model(demo: Demo, model_id: str | None) -> Detector:
    name = (model_id or "").rsplit("@", 1)[0]
    path = demo.models_folder / name
    if not path.is_file():
        raise ModelMissing(missing_model_message(name, demo.models_folder))
    return Detector(path, demo.device, demo.setting("batch_size"), runtime=demo.cfg.inference_runtime,
                    cache_root=demo.exports_folder)


def decode_threads(demo: Demo) -> int | None:
    """Pages decoded at once: REGIONS_DECODE_THREADS, else no limit but the feed's threads. One
    decoding thread was meant to leave a CPU worker's model its cores, but measured on 2 cores
    (bench/regions.py) it made jobs of large photographs 10% slower (decoding became the
    bottleneck) and generated pages no faster."""
    configured: int = demo.setting("decode_threads")
    return configured or None


def run(demo: Demo, job: JobContext, model: Detector) -> dict:
    p = job.params
    options = Options(conf=p["conf"], iou=p["iou"], imgsz=p["imgsz"], classes=tuple(p["classes"]),
                      max_det=p["max_det"])
    writer = PageWriter(job, model, crops=p["crops"], padding=p["crop_padding"], previews=p.get("previews", True))
    per_image: list[float] = []
    model.prepare(options.imgsz)
    job.timings["runtime"] = model.runtime
    job.log(f"model {model.name} ({model.format}) with {model.runtime} on {model.device}, "
            f"batch {model.batch_size}")
    # Pages are written on a thread while the next ones are inferred; progress advances once a
    # page's files are whole, in page order.
    pending: deque[tuple[Future, float]] = deque()

    def finish_oldest() -> None:
        future, inference_share = pending.popleft()
        waited = time.perf_counter()
        written = future.result()
        job.timing("writer_wait", time.perf_counter() - waited)  # the model idle, waiting for outputs
        job.timing("outputs", written)
        per_image.append(inference_share + written)
        job.advance()

    started = time.perf_counter()
    threads = decode_threads(demo)
    # pages decoded at least this large: the model's input, and the previews' size when there are
    # previews (drawn from the page as decoded)
    min_side = max(options.imgsz, PREVIEW_MAX_SIDE) if writer.previews else options.imgsz
    with ThreadPoolExecutor(1, thread_name_prefix="regions-writer") as pool, reduced_decoding(min_side, threads):
        for item, found, inference in model.stream(job.images(), options, lambda item: item.image):
            job.timing("inference", inference)
            job.observe_inference(model.runtime, inference, 1)
            # A few pages may wait to be written (a page with many crops, or a large PNG to
            # preview, takes several pages' inference time) before the model waits for them.
            while len(pending) > max(model.batch_size, WRITER_BACKLOG):
                finish_oldest()
            pending.append((pool.submit(writer.write_page, item, full_resolution(item, found)), inference))
        while pending:
            finish_oldest()
    job.timing("pages", time.perf_counter() - started)
    start = time.perf_counter()
    files = writer.finish()
    job.timing("outputs", time.perf_counter() - start)
    result = summary(job, model, writer.class_counts, per_image)
    job.write_json("summary.json", result)
    return {"model": model.name, "classes": model.classes, "annotations": writer.annotations,
            "files": files, "summary": result, "summary_url": job.url("summary.json")}


def full_resolution(item: LoadedImage, found: list[Detection]) -> list[Detection]:
    """Detections on the page as decoded → on the full-resolution page (the same when it was not
    decoded reduced)."""
    if item.scale == 1 and item.offset == (0, 0):
        return found
    return [Detection(d.cls, d.confidence, *item.to_full(d.x1, d.y1, d.x2, d.y2)) for d in found]


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
