"""Regions: find illustrations, diagrams and other objects in page images with a YOLO model.

The model is loaded and warmed once per worker process (the platform caches it by file and
modification time); pages go through in batches while the platform downloads and decodes the
next ones. Each page gives discover-api compatible annotations, YOLO labels, crops, a preview,
and for IIIF canvases annotations a viewer can show. Settings: REGIONS_MODEL (default model
file; empty: the newest in DATA_FOLDER/models/regions), REGIONS_BATCH_SIZE (0: by device).
"""
from __future__ import annotations

import re
import statistics
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from api.platform.demo import Demo, Param
from api.platform.errors import InputError

from .checkpoints import SUFFIXES
from .models import describe, missing_model_message, model_files

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class ModelMissing(RuntimeError):
    """The job's model file is not in the models folder (any more); the message says what to do."""


def chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class Regions(Demo):
    name = "regions"
    title = "Regions: illustrations and objects in page images"
    description = ("Finds illustrations, diagrams or any objects a YOLO model was trained on; returns boxes "
                   "(absolute and relative), confidences, crops, YOLO labels, previews and IIIF annotations.")
    params = {
        "model": Param(str, "", help="model file in DATA_FOLDER/models/regions (GET /regions/models); "
                                     "default REGIONS_MODEL, else the newest"),
        "conf": Param(float, 0.25, min=0.0, max=1.0, help="minimum confidence of a box"),
        "iou": Param(float, 0.45, min=0.0, max=1.0, help="IoU above which overlapping boxes are merged (NMS)"),
        "imgsz": Param(int, 640, min=32, max=4096, help="inference size in pixels (longest side)"),
        "classes": Param(list, [], items=int, help="class ids to keep; empty: all"),
        "max_det": Param(int, 300, min=1, max=3000, help="at most this many boxes per image"),
        "crops": Param(bool, True, help="write a JPEG of each box"),
        "crop_padding": Param(int, 0, min=0, max=1000, help="pixels added around each crop"),
    }

    # -- API side (no torch here) ------------------------------------------------------------
    def default_model(self) -> str:
        configured = self.setting("MODEL")
        if configured:
            return configured
        files = model_files(self.models_folder)
        return files[0].name if files else ""

    def validate(self, raw) -> dict:
        params = super().validate(raw)
        params["model"] = params["model"] or self.default_model()
        name = params["model"]
        if name and (not MODEL_NAME.match(name) or not name.endswith(SUFFIXES)):
            raise InputError("parameters.model", "must be a file name ending in .pt or .onnx")
        if not name or not (self.models_folder / name).is_file():
            raise InputError("parameters.model", missing_model_message(name, self.models_folder))
        if any(c < 0 for c in params["classes"]):
            raise InputError("parameters.classes", "class ids are 0 or more")
        return params

    def models(self) -> dict[str, dict]:
        return {path.name: describe(path, self.exports_folder) for path in model_files(self.models_folder)}

    @property
    def exports_folder(self) -> Path:
        """DATA_FOLDER/models/.cache/regions: exports of our models to other runtimes."""
        return self.models_folder.parent / ".cache" / self.name

    def model_id(self, params: dict) -> str:
        """File name and modification time: a replaced file is loaded again, not served stale."""
        path = self.models_folder / params["model"]
        return f"{params['model']}@{path.stat().st_mtime_ns if path.is_file() else 0}"

    # -- worker side ---------------------------------------------------------------------------
    def load_model(self, model_id: str | None):
        from api.platform.runner import pick_device  # noqa: PLC0415

        from .detector import Detector  # noqa: PLC0415 - torch and ultralytics in workers only

        name = (model_id or "").rsplit("@", 1)[0]
        path = self.models_folder / name
        if not path.is_file():
            raise ModelMissing(missing_model_message(name, self.models_folder))
        batch_size = int(self.setting("BATCH_SIZE", "0") or 0)
        return Detector(path, pick_device(self.cfg.device), batch_size, runtime=self.cfg.inference_runtime,
                        cache_root=self.exports_folder)

    def run(self, job, model) -> dict:
        from .detector import Options  # noqa: PLC0415
        from .pages import PageWriter  # noqa: PLC0415

        p = job.params
        options = Options(conf=p["conf"], iou=p["iou"], imgsz=p["imgsz"], classes=tuple(p["classes"]),
                          max_det=p["max_det"])
        writer = PageWriter(job, model, crops=p["crops"], padding=p["crop_padding"])
        per_image: list[float] = []
        model.prepare(options.imgsz)
        job.timings["runtime"] = model.runtime
        job.log(f"model {model.name} ({model.format}) with {model.runtime} on {model.device}, "
                f"batch {model.batch_size}")
        # Pages are written on a thread while the next batch is inferred (JPEG encoding releases
        # the GIL); progress advances once a page's files are whole, in page order.
        pending: deque[tuple[Future, float]] = deque()

        def finish_oldest() -> None:
            future, inference_share = pending.popleft()
            written = future.result()
            job.timing("outputs", written)
            per_image.append(inference_share + written)
            job.advance()

        with ThreadPoolExecutor(1, thread_name_prefix="regions-writer") as pool:
            for batch in self.page_batches(job.images(), model.batch_size):
                start = time.perf_counter()
                found = model.detect([item.image for item in batch], options)
                inference = time.perf_counter() - start
                job.timing("inference", inference)
                job.observe_inference(model.runtime, inference, len(batch))
                while len(pending) > model.batch_size:  # at most one batch written behind
                    finish_oldest()
                for item, detections in zip(batch, found):
                    pending.append((pool.submit(writer.write_page, item, detections), inference / len(batch)))
            while pending:
                finish_oldest()
        start = time.perf_counter()
        files = writer.finish()
        job.timing("outputs", time.perf_counter() - start)
        summary = self.summary(job, model, writer.class_counts, per_image)
        job.write_json("summary.json", summary)
        return {"model": model.name, "classes": model.classes, "annotations": writer.annotations,
                "files": files, "summary": summary, "summary_url": job.url("summary.json")}

    @staticmethod
    def page_batches(images: Iterable, size: int) -> Iterator[list]:
        """Batches of pages; with batches of several pages (GPU), a window of 4 batches is regrouped
        by aspect ratio so each batch pads little (see detector.same_shape)."""
        from .detector import by_aspect  # noqa: PLC0415

        if size <= 1:
            yield from chunks(images, 1)
            return
        for window in chunks(images, 4 * size):
            yield from by_aspect(window, size, lambda item: item.image.height / item.image.width)

    @staticmethod
    def summary(job, model, class_counts: Counter, per_image: list[float]) -> dict:
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


demo = Regions()
