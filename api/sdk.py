"""The one import for demo authors: everything a demo may use of the platform.

A demo's `__init__.py` declares (name, parameters, settings, which model a job needs) and imports
only this module and the standard library, so the API process stays free of torch and friends;
its `job.py` does the work and is imported by `load_model`/`run`, which run in workers only.
`tests/test_architecture.py` checks that no demo imports any other part of the platform.

    from api.sdk import Demo, JobContext, Param

    class Echo(Demo):
        name = "echo"
        params = {"threshold": Param(float, 0.5, min=0, max=1, help="...")}

        def run(self, job: JobContext, model) -> dict:
            for item in job.images():           # downloaded and decoded ahead, in order
                job.write_json(f"{item.source.doc_uid}/{item.source.name}.json", {"size": item.image.size})
                job.advance()
            return {"done": job.total}          # becomes the job's `output`

    demo = Echo()
"""
from __future__ import annotations

from api.platform.catalog import HubFile, ModelEntry, UrlFile, WheelMember
from api.platform.context import JobCancelled, JobContext
from api.platform.demo import Demo, Param, Setting
from api.platform.errors import InputError
from api.platform.exports import check_runtime_setting, export_folder, file_lock
from api.platform.inputs import Document, ImageSource, LoadedImage
from api.platform.inputs.feed import reduced_decoding
from api.platform.inputs.names import IMAGE_SUFFIXES, SAFE_NAME, is_image_name
from api.platform.jobs import FinishedJob

__all__ = ["IMAGE_SUFFIXES", "SAFE_NAME", "Demo", "Document", "FinishedJob", "HubFile", "ImageSource", "InputError",
           "JobCancelled", "JobContext", "LoadedImage", "ModelEntry", "Param", "Setting", "UrlFile", "WheelMember",
           "check_runtime_setting", "export_folder", "file_lock", "is_image_name", "reduced_decoding"]
