"""A test-only demo, so platform tests run real jobs without torch.

Its "model" measures each image (size, mean colour); `delay` slows it down so a test can cancel
or kill a job mid-way; each model load is appended to `DATA_FOLDER/model_loads.log` so a test can
check that a worker loads a model once, not once per job.
"""
from __future__ import annotations

import errno
import os
import time

from flask import Blueprint, jsonify
from PIL import ImageStat

from api.platform.demo import Demo, Param
from api.platform.errors import InputError
from api.platform.inputs import Document
from api.platform.inputs.names import SAFE_NAME


class MeanColour:
    def __init__(self, model_id: str):
        self.model_id = model_id

    def __call__(self, image) -> dict:
        return {"width": image.width, "height": image.height,
                "mean": [round(v, 2) for v in ImageStat.Stat(image).mean]}


class Dummy(Demo):
    name = "dummy"
    title = "Mean colour (test demo)"
    description = "Measures each image; for the platform's tests."
    params = {
        "model": Param(str, "v1", help="model id (any string)"),
        "delay": Param(float, 0.0, min=0, max=60, help="seconds to wait per image"),
        "fail": Param(bool, False, help="raise an error in the model"),
        "disk_full": Param(bool, False, help="raise 'no space left on device' (an infrastructure failure)"),
        "labels": Param(list, [], items=str, help="echoed back"),
        "folder": Param(str, "", help="also read the images of DATA_FOLDER/<folder> (extra_documents)"),
    }

    def extra_documents(self, params: dict) -> list[Document]:
        """DATA_FOLDER/<folder>, a folder name only: a path ("/etc", "../x") could reach, and by the
        answer reveal, any directory of the host, so it gets the same answer as a missing folder."""
        if not params["folder"]:
            return []
        folder = self.cfg.data_folder / params["folder"]
        if not SAFE_NAME.match(params["folder"]) or not folder.is_dir():
            raise InputError("parameters.folder", "no such folder in DATA_FOLDER")
        return [Document(type="dir", uid="folder", path=str(folder))]

    def model_id(self, params: dict) -> str:
        return params["model"]

    def load_model(self, model_id: str | None) -> MeanColour:
        log = os.path.join(os.environ["DATA_FOLDER"], "model_loads.log")
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {model_id}\n")
        return MeanColour(model_id or "")

    def run(self, job, model: MeanColour) -> dict:
        if job.params["fail"]:
            raise ValueError("the model refused this job (fail=true)")
        if job.params["disk_full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        measured = {}
        for item in job.images():
            time.sleep(job.params["delay"])
            result = model(item.image)
            src = item.source
            job.write_json(f"{src.doc_uid}/{src.name}.json", result)
            measured.setdefault(src.doc_uid, []).append({"image": src.name, **result})
            job.advance()
        return {"model": model.model_id, "labels": job.params["labels"], "images": measured}

    def models(self) -> dict[str, dict]:
        return {"v1": {"updated": "2026-11-01", "classes": [], "source": "built in"}}

    def blueprint(self) -> Blueprint:
        """A demo's own route, mounted under /dummy/ beside the platform's."""
        extra = Blueprint("dummy_extra", __name__)

        @extra.get("/channels")
        def channels():
            return jsonify(channels=["red", "green", "blue"])

        return extra


demo = Dummy()
