"""The sorter demo (SorterBot Cloud): locate items and containers on table photos, group similar
items, one group per container, and plan the arm's moves.

    POST /sorter/start  files=@1500.jpg files=@1600.jpg
         parameters={"arm_constants": {"arm_radius": 1000, "rotation_range_as_pw": 1000,
                     "rotation_range_as_deg": 90, "dist_min_as_pw": 1200, "dist_max_as_pw": 1900}}

A job: the locator finds items and containers in every photo — a trained checkpoint (locator.py)
when one is installed, else the weights-free classical locator (classical.py: OpenCV table model and
watershed), so a photo of objects on a plain table sorts on a fresh install; each item crop is
embedded (embed.py: a ResNet-18 backbone, or weights-free colour and shape descriptors); items seen
in several photos are merged, clustered, and each group is given a container (grouping.py); moves
are given in the arm's servo pulse widths when `arm_constants` are known (arm.py), else in image
pixels. Results: `sorter.json` (also the job's output), `<doc_uid>/<name>.jpg` per photo and
`contact_sheet.jpg` (pictures.py).

The API process imports this module, so it imports only `api.sdk`, the standard library and
arm.py (pure Python): torch, cv2 and sklearn come with job.py, which `load_model`/`run` import in
the worker.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from api.sdk import Demo, InputError, Param, Setting

from .arm import parse_arm_constants

if TYPE_CHECKING:  # pragma: no cover
    from api.sdk import JobContext

    from .job import SorterModels

EMBEDDINGS = ("auto", "cnn", "descriptors")
AUTO, CLASSICAL = "auto", "classical"  # locator choices besides a checkpoint's file name
CHECKPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.pt$")


class Sorter(Demo):
    name = "sorter"
    description = ("Finds items and containers on table photos, groups similar items (one group per "
                   "container) and lists the moves [[item, container], ...] for SorterBot's arm.")
    params = {
        "locator": Param(str, AUTO, help="auto: the locator checkpoint (`model`) when it is installed, else the "
                                         "weights-free classical locator (plain tables); classical: always that one; "
                                         "or a checkpoint file name in DATA_FOLDER/models/sorter/"),
        "model": Param(str, "", help="locator checkpoint in DATA_FOLDER/models/sorter/ that `locator=auto` uses "
                                     "(default: the SORTER_MODEL setting); see GET /sorter/models"),
        "score_threshold": Param(float, 0.5, min=0.0, max=1.0, help="lowest detection score kept"),
        "n_groups": Param(int, 0, min=0, max=32,
                          help="number of groups; 0: as many as containers, else chosen by silhouette"),
        "embedding": Param(str, "auto", choices=EMBEDDINGS,
                           help="cnn (ResNet-18 backbone), descriptors (colour + shape, no weights), or auto: "
                                "cnn when a backbone is present, else descriptors"),
        "dedup_distance": Param(float, 150.0, min=0.0,
                                help="objects in overlapping photos closer than this in both arm coordinates "
                                     "(pulse widths) are one object; 0 disables merging"),
        # absent, {} or "" (an empty form field): no constants; null is a 400, as for every parameter
        "arm_constants": Param(dict, None, parse=parse_arm_constants,
                               help="arm_radius, rotation_range_as_pw, rotation_range_as_deg, dist_min_as_pw, "
                                    "dist_max_as_pw, optional base_angles {image: pw} and base_pw; a photo named "
                                    "by a number (1500.jpg) was taken at that base pulse width. Without it, moves "
                                    "are in image pixels"),
    }
    settings = {
        "model": Setting(str, "locator.pt",
                         help="locator checkpoint in DATA_FOLDER/models/sorter/ used when a job names none (train "
                              "one with `python -m api.demos.sorter.train`). A backbone.pt there, if present, "
                              "enables CNN embeddings."),
    }

    def default_model(self) -> str:
        return self.setting("model")

    def validate(self, raw: Any) -> dict:
        """As declared, and a named checkpoint must be installed: `locator=<file>` or an explicit
        `model` (auto falls back to the classical locator only when the *default* one is missing)."""
        params = super().validate(raw)
        for field in ("locator", "model"):
            name = params[field]
            if field == "locator" and name in (AUTO, CLASSICAL) or field == "model" and not name:
                continue
            if not CHECKPOINT_NAME.match(name):
                raise InputError(f"parameters.{field}", "must be auto, classical or a checkpoint file name (.pt)"
                                 if field == "locator" else "must be a checkpoint file name (.pt)")
            if not (self.models_folder / name).is_file():
                raise InputError(f"parameters.{field}", f"no locator checkpoint {name!r} in {self.models_folder}; "
                                 "train one with `python -m api.demos.sorter.train`, see GET /sorter/models, "
                                 "or use locator=classical (no weights)")
        return params

    def model_id(self, params: dict) -> str:
        """The locator a job gets: a checkpoint's file name, or "classical". Decided where the job
        runs, so a checkpoint installed later is used from the next job on."""
        choice = params.get("locator", AUTO)
        if choice != AUTO:
            return choice
        name = params.get("model") or self.default_model()
        return name if (self.models_folder / name).is_file() else CLASSICAL

    def load_model(self, model_id: str | None) -> SorterModels:
        """The locator checkpoint (a clear error naming the file and how to train one when it is
        missing) and the CNN backbone when its weights are present."""
        from .job import load_model  # noqa: PLC0415 - worker side: job.py imports torch

        return load_model(self, model_id or self.default_model())

    def run(self, job: JobContext, model: SorterModels) -> dict:
        from .job import run  # noqa: PLC0415 - worker side: job.py imports torch

        return run(self, job, model)

    def models(self) -> dict[str, dict]:
        """The classical locator (built in), and every checkpoint in the models folder with its
        classes, size, date and source, read from the `<name>.json` written beside it (the API
        process never imports torch)."""
        folder = self.models_folder
        default_installed = (folder / self.default_model()).is_file()
        found: dict[str, dict] = {CLASSICAL: {
            "updated": None, "classes": ["item", "container"], "kind": "locator", "arch": CLASSICAL,
            "source": "built in: no weights (OpenCV table model, distance-transform watershed, size and shape)",
            "default": not default_installed}}
        if not folder.is_dir():
            return found
        for path in sorted(folder.glob("*.pt")):
            stat = path.stat()
            info: dict[str, Any] = {
                "updated": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
                "size": stat.st_size, "classes": [], "source": "", "default": path.name == self.default_model()}
            try:
                header = json.loads(path.with_suffix(".json").read_text())
                info.update(classes=[c for c in header.get("classes", []) if c != "background"],
                            source=header.get("source", ""), kind=header.get("kind", "locator"),
                            arch=header.get("arch", ""), trained=header.get("trained", {}))
            except (OSError, ValueError, AttributeError):
                info["source"] = f"unknown (no readable {path.with_suffix('.json').name} beside it)"
            found[path.name] = info
        return found


demo = Sorter()
