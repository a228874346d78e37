"""A test-only demo, so platform tests run real jobs without torch; also the complete example of
a demo written with the SDK alone (README's "Writing a demo" shows it).

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

from api.sdk import SAFE_NAME, Demo, Document, InputError, JobContext, Param, Setting


class MeanColour:
    def __init__(self, model_id: str):
        self.model_id = model_id

    def __call__(self, image) -> dict:
        return {"width": image.width, "height": image.height,
                "mean": [round(v, 2) for v in ImageStat.Stat(image).mean]}


class Dummy(Demo):
    name = "dummy"
    description = "Measures each image; for the platform's tests."
    params = {
        "model": Param(str, "", help="model id (any string); default DUMMY_MODEL"),
        "delay": Param(float, 0.0, min=0, max=60, help="seconds to wait per image"),
        "fail": Param(bool, False, help="raise an error in the model"),
        "disk_full": Param(bool, False, help="raise 'no space left on device' (an infrastructure failure)"),
        "labels": Param(list, [], items=str, help="echoed back"),
        "folder": Param(str, "", help="also read the images of DATA_FOLDER/<folder> (extra_documents)"),
        "box": Param(dict, None, nullable=True, parse=lambda box: _box(box),
                     help="a crop {left, top, right, bottom} measured instead of the whole image"),
    }
    settings = {"model": Setting(str, "v1", help="model id used when a job names none")}

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
        return params["model"] or self.setting("model")

    def load_model(self, model_id: str | None) -> MeanColour:
        log = self.cfg.data_folder / "model_loads.log"
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {model_id}\n")
        return MeanColour(model_id or "")

    def run(self, job: JobContext, model: MeanColour) -> dict:
        if job.params["fail"]:
            raise ValueError("the model refused this job (fail=true)")
        if job.params["disk_full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        measured = {}
        for item in job.images():
            time.sleep(job.params["delay"])
            box = job.params["box"]
            result = model(item.image.crop(box) if box else item.image)
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


def _box(box: dict) -> tuple[int, int, int, int]:
    """{left, top, right, bottom} in pixels as Pillow's crop box; ValueError (a 400) otherwise."""
    try:
        left, top, right, bottom = (int(box[k]) for k in ("left", "top", "right", "bottom"))
    except (KeyError, TypeError, ValueError):
        raise ValueError("needs integer left, top, right and bottom") from None
    if not (0 <= left < right and 0 <= top < bottom):
        raise ValueError("must have 0 <= left < right and 0 <= top < bottom")
    return left, top, right, bottom


demo = Dummy()
