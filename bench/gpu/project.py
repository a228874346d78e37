"""Every name the kit takes from the project, in one place: api/ is being reorganised, and a name
that moves is then fixed here alone. The jobs themselves go through the HTTP API (`python -m api
serve`), which does not move. Imports sit inside the functions because `quiet_ultralytics` must run
before ultralytics is first imported, and the worker modules import it."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace


def quiet_ultralytics(config_dir: Path) -> None:
    from api.demos.regions.common import quiet_ultralytics as quiet

    quiet(config_dir)


def regions() -> SimpleNamespace:
    """The regions worker's inference path (what a job runs) and the runtime chooser's parity check."""
    from api.demos.regions.common import Options
    from api.demos.regions.inference import by_aspect, keep_torch_threads, predict, same_shape
    from api.demos.regions.runtimes import (
        PARITY_CONF,
        TOLERANCE,
        available,
        box_iou,
        candidates,
        parity,
        probe_pages,
        same_detections,
    )

    return SimpleNamespace(Options=Options, by_aspect=by_aspect, keep_torch_threads=keep_torch_threads,
                           predict=predict, same_shape=same_shape, PARITY_CONF=PARITY_CONF, TOLERANCE=TOLERANCE,
                           available=available, box_iou=box_iou, candidates=candidates, parity=parity,
                           probe_pages=probe_pages, same_detections=same_detections)


def sorter() -> SimpleNamespace:
    """The sorter's CUDA parts: the locator (Faster R-CNN) and the CNN embedder."""
    from api.demos.sorter.embed import CnnEmbedder, resnet18_trunk
    from api.demos.sorter.locator import Locator, build
    from api.demos.sorter.synthetic import item_crops, make_scene

    return SimpleNamespace(CnnEmbedder=CnnEmbedder, resnet18_trunk=resnet18_trunk, Locator=Locator, build=build,
                           item_crops=item_crops, make_scene=make_scene)


def bench_pages(folder: Path, count: int) -> list[Path]:
    """bench/runtimes.py's pages: mixed sizes around 1000-1600 px, JPEG like scans."""
    from bench.regions import pages

    return pages(folder, count)


def reference_style(model_path: Path, paths: list[Path], params: dict, device: str) -> float:
    """discover-api's way, as bench/regions.py times it: the model loaded for the task, then one
    page per forward (with a warm-up forward before each)."""
    from bench.regions import reference_style as reference

    return reference(model_path, paths, params, device)


def train_detector(folder: Path) -> Path:
    """bench/regions.py's detector, trained on CPU for about a minute (needs polars: not on the device)."""
    from bench.regions import train

    return train(folder)
