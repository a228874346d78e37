"""The sorter demo (SorterBot Cloud): locate items and containers on table photos, group similar
items, one group per container, and plan the arm's moves.

    POST /sorter/start  files=@1500.jpg files=@1600.jpg
         parameters={"arm_constants": {"arm_radius": 1000, "rotation_range_as_pw": 1000,
                     "rotation_range_as_deg": 90, "dist_min_as_pw": 1200, "dist_max_as_pw": 1900}}

A job: the locator (locator.py) finds items and containers in every photo; each item crop is
embedded (embed.py: a ResNet-18 backbone, or weights-free colour and shape descriptors); items seen
in several photos are merged, clustered, and each group is given a container (grouping.py); moves
are given in the arm's servo pulse widths when `arm_constants` are known (arm.py), else in image
pixels. Results: `sorter.json` (also the job's output), `<doc_uid>/<name>.jpg` per photo and
`contact_sheet.jpg` (pictures.py).

This module is imported by the API process too, so torch, cv2 and sklearn are imported only inside
`load_model` and `run` (and the modules they call).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from api.platform.clientjson import loads
from api.platform.demo import Demo, Param
from api.platform.errors import InputError

from .arm import parse_arm_constants

DEFAULT_MODEL = "locator.pt"
EMBEDDINGS = ("auto", "cnn", "descriptors")


@dataclass
class SorterModels:
    """What a worker keeps loaded: the locator and, when its weights are present, the CNN."""

    locator: Any
    cnn: Any
    device: str


class Sorter(Demo):
    name = "sorter"
    title = "Sorter: locate, group and plan the arm's moves"
    description = ("Finds items and containers on table photos, groups similar items (one group per "
                   "container) and lists the moves [[item, container], ...] for SorterBot's arm.")
    params = {
        "model": Param(str, "", help="locator checkpoint in DATA_FOLDER/models/sorter/ (default: SORTER_MODEL, "
                                     f"else {DEFAULT_MODEL}); see GET /sorter/models"),
        "score_threshold": Param(float, 0.5, min=0.0, max=1.0, help="lowest detection score kept"),
        "n_groups": Param(int, 0, min=0, max=32,
                          help="number of groups; 0: as many as containers, else chosen by silhouette"),
        "embedding": Param(str, "auto", choices=EMBEDDINGS,
                           help="cnn (ResNet-18 backbone), descriptors (colour + shape, no weights), or auto: "
                                "cnn when a backbone is present, else descriptors"),
        "dedup_distance": Param(float, 150.0, min=0.0,
                                help="objects in overlapping photos closer than this in both arm coordinates "
                                     "(pulse widths) are one object; 0 disables merging"),
        "arm_constants": Param(str, "", help="JSON object: arm_radius, rotation_range_as_pw, rotation_range_as_deg, "
                                             "dist_min_as_pw, dist_max_as_pw, optional base_angles {image: pw} "
                                             "and base_pw; a photo named by a number (1500.jpg) was taken at that "
                                             "base pulse width. Without it, moves are in image pixels"),
    }

    def validate(self, raw: Any) -> dict:
        """As the base class, but `arm_constants` may be a JSON object (or its text) and is checked
        here: an object is not one of the platform's parameter types."""
        if isinstance(raw, str) and raw.strip():
            raw = loads(raw, "parameters")
        arm = None
        if isinstance(raw, dict) and "arm_constants" in raw:
            raw = dict(raw)
            arm = raw.pop("arm_constants")
        params = super().validate(raw)
        try:
            params["arm_constants"] = parse_arm_constants(arm)
        except ValueError as exc:
            raise InputError("parameters.arm_constants", str(exc)) from None
        return params

    def default_model(self) -> str:
        return self.setting("MODEL", DEFAULT_MODEL)

    def model_id(self, params: dict) -> str:
        return params.get("model") or self.default_model()

    def load_model(self, model_id: str | None) -> SorterModels:
        """The locator checkpoint (a clear error naming the file and how to train one when it is
        missing) and the CNN backbone when its weights are present."""
        from api.platform.runner import pick_device  # noqa: PLC0415

        from .embed import CnnEmbedder  # noqa: PLC0415
        from .locator import Locator  # noqa: PLC0415

        device = pick_device(self.cfg.device) if self.cfg else "cpu"
        locator = Locator.load(self.models_folder / (model_id or self.default_model()), device)
        embedder = CnnEmbedder.from_folder(self.models_folder, device, runtime=self.cfg.inference_runtime,
                                           cache_root=self.models_folder.parent / ".cache" / self.name)
        return SorterModels(locator, embedder, device)

    def run(self, job: Any, model: SorterModels) -> dict:
        from .pipeline import run_job  # noqa: PLC0415

        return run_job(job, model, self.models_folder)

    def models(self) -> dict[str, dict]:
        """Every checkpoint in the models folder with its classes, size, date and source, read
        from the `<name>.json` written beside it (the API process never imports torch)."""
        from datetime import datetime, timezone  # noqa: PLC0415

        found: dict[str, dict] = {}
        folder = self.models_folder
        if not folder.is_dir():
            return found
        for path in sorted(folder.glob("*.pt")):
            stat = path.stat()
            info: dict[str, Any] = {
                "updated": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds"),
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
