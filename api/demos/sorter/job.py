"""The sorter's worker side: loading its models and running a job. Imported by `load_model`/`run`
in the worker only, since it brings torch, cv2 and sklearn (through locator, embed, pipeline)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from api.sdk import JobContext

from .classical import NAME as CLASSICAL
from .classical import ClassicalLocator
from .embed import CnnEmbedder
from .locator import Locator
from .pipeline import choose_embedder, draw_pictures, sort_photos

if TYPE_CHECKING:  # pragma: no cover
    from . import Sorter


@dataclass
class SorterModels:
    """What a worker keeps loaded: the locator and, when its weights are present, the CNN."""

    locator: Locator | ClassicalLocator
    cnn: CnnEmbedder | None
    device: str


def load_model(demo: Sorter, model_id: str) -> SorterModels:
    """The locator `model_id`: "classical" (no weights), or a checkpoint of the demo's models folder
    (LocatorMissing, naming the file and how to train one, when it is not there); and the backbone
    beside it when present, through the fastest faithful runtime (INFERENCE_RUNTIME; conversions
    cached in the demo's exports folder)."""
    device = demo.device  # RuntimeError when the demo is not configured: so is demo.cfg below
    locator = ClassicalLocator() if model_id == CLASSICAL else Locator.load(demo.models_folder / model_id, device)
    embedder = CnnEmbedder.from_folder(demo.models_folder, device, runtime=demo.cfg.inference_runtime,
                                       cache_root=demo.exports_folder)
    return SorterModels(locator, embedder, device)


def run(demo: Sorter, job: JobContext, model: SorterModels) -> dict:
    """One job: photos from the job, pictures and `sorter.json` into its folder, the result as its output."""
    embedder, warnings = choose_embedder(job.params["embedding"], model.cnn)

    def photos() -> Iterator[tuple[str, str, Image.Image]]:
        # decoded ahead by the platform while the locator works on the previous photo
        for loaded in job.images():
            src = loaded.source
            yield f"{src.doc_uid}/{src.name}", src.name, loaded.image.convert("RGB")

    result, extras = sort_photos(photos(), model.locator, embedder, job.params, lambda i: job.advance())
    if model.locator.name == CLASSICAL and job.params["locator"] == "auto":
        warnings.append("no locator checkpoint installed: the weights-free classical locator was used (made for "
                        "objects on a plain table; train one for cluttered scenes: python -m api.demos.sorter.train)")
    result["warnings"] = warnings + result["warnings"]
    result["model"] = model.locator.name
    started = time.perf_counter()
    annotated, sheet = draw_pictures(result, extras)
    result["images"] = []
    for key, picture in annotated.items():
        with job.open(f"{key}.jpg") as handle:
            picture.save(handle, "JPEG", quality=88)
        photo = next(p for p in extras["photos"] if p.key == key)
        result["images"].append({"image": key, "width": photo.width, "height": photo.height,
                                 "picture": job.url(f"{key}.jpg")})
    with job.open("contact_sheet.jpg") as handle:
        sheet.save(handle, "JPEG", quality=88)
    result["contact_sheet"] = job.url("contact_sheet.jpg")
    result["result"] = job.url("sorter.json")
    result["timings"]["pictures_s"] = round(time.perf_counter() - started, 4)
    for name, seconds in result["timings"].items():
        job.timing(name, seconds)
    job.write_json("sorter.json", result)
    return result
