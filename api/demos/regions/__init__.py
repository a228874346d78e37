"""Regions: find illustrations, diagrams and other objects in page images with a YOLO model.

The model is loaded and warmed once per worker process (the platform caches it by file and
modification time); pages go through in batches while the platform downloads and decodes the
next ones. Each page gives discover-api compatible annotations, YOLO labels, crops, a preview,
and for IIIF canvases annotations a viewer can show.

This module is what the API imports: it declares and validates, with the standard library only;
`job.py` loads models and runs jobs, in workers.
"""
from __future__ import annotations

import re
from typing import Any

from api.sdk import Demo, InputError, JobContext, Param, Setting

from .checkpoints import SUFFIXES
from .common import DEFAULTS, quiet_ultralytics
from .models import describe, missing_model_message, model_files

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class Regions(Demo):
    name = "regions"
    description = ("Finds illustrations, diagrams or any objects a YOLO model was trained on; returns boxes "
                   "(absolute and relative), confidences, crops, YOLO labels, previews and IIIF annotations.")
    params = {
        "model": Param(str, "", help="model file in DATA_FOLDER/models/regions (GET /regions/models); "
                                     "default REGIONS_MODEL, else the newest"),
        "conf": Param(float, DEFAULTS.conf, min=0.0, max=1.0, help="minimum confidence of a box"),
        "iou": Param(float, DEFAULTS.iou, min=0.0, max=1.0,
                     help="IoU above which overlapping boxes are merged (NMS)"),
        "imgsz": Param(int, DEFAULTS.imgsz, min=32, max=4096, help="inference size in pixels (longest side)"),
        "classes": Param(list, [], items=int, help="class ids to keep; empty: all"),
        "max_det": Param(int, DEFAULTS.max_det, min=1, max=3000, help="at most this many boxes per image"),
        "crops": Param(bool, True, help="write a JPEG of each box"),
        "crop_padding": Param(int, 0, min=0, max=1000, help="pixels added around each crop"),
    }
    settings = {
        "model": Setting(str, "", help="model file in DATA_FOLDER/models/regions used when a job names none; "
                                       "empty: the newest file there"),
        "batch_size": Setting(int, 0, min=0, max=1024, help="pages per forward pass; 0: by device "
                                                            "(16 on CUDA with half precision, 1 on CPU)"),
    }

    # -- API side: declared, validated, listed -------------------------------------------------
    def default_model(self) -> str:
        configured: str = self.setting("model")
        if configured:
            return configured
        files = model_files(self.models_folder)
        return files[0].name if files else ""

    def validate(self, raw: Any) -> dict:
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

    def model_id(self, params: dict) -> str:
        """File name and modification time: a replaced file is loaded again, not served stale."""
        path = self.models_folder / params["model"]
        return f"{params['model']}@{path.stat().st_mtime_ns if path.is_file() else 0}"

    # -- worker side: job.py -------------------------------------------------------------------
    def load_model(self, model_id: str | None) -> Any:
        # ultralytics reads its settings when first imported, which importing job.py does
        quiet_ultralytics(self.models_folder / ".ultralytics")
        from . import job  # noqa: PLC0415 - worker side

        return job.load_model(self, model_id)

    def run(self, job: JobContext, model: Any) -> dict:
        from . import job as work  # noqa: PLC0415 - worker side

        return work.run(self, job, model)


demo = Regions()
