"""Regions benchmark, one run, the same images and the same weights for every line:

(a) our job end to end: POST /regions/start with the pages uploaded, a real dramatiq worker whose
    model is already loaded (a worker lives across jobs), until SUCCESS with every output written;
(b) pure model time: ultralytics' own predict over the already decoded images, with the runtime
    and batch size the worker used (INFERENCE_RUNTIME=auto picks the fastest export that passes
    parity, e.g. OpenVINO on CPU);
(c) the reference style (discover-api): load the model for the task, then for each image read it
    from disk and run one forward, with a warm-up forward before each.

Prints seconds and the ratios (a)/(b) (goal ≤ 1.15) and (c)/(a) (goal ≥ 1.5 on CPU, ≥ 3 on GPU).

    .venv/bin/python -m bench.regions [--images 64] [--imgsz 640] [--model PATH] [--device cpu]

Without --model, a detector is trained for a minute on synthetic pages (as the tests do): speed
does not depend on how good the weights are, only on the network and the number of boxes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from api.demos.regions.common import quiet_ultralytics
from api.demos.regions.inference import keep_torch_threads
from api.platform.config import load_config
from api.platform.embedded import EmbeddedRedis
from tests.support import ROOT
from tests.support.synthetic_pages import make_page, write_yolo_dataset


def train(folder: Path) -> Path:
    from ultralytics import YOLO

    data = write_yolo_dataset(folder / "dataset", train=96, val=4)
    YOLO("yolov8n.yaml").train(data=str(data), epochs=40, imgsz=160, batch=16, workers=0, plots=False, val=False,
                               amp=False, device="cpu", project=str(folder / "runs"), name="pages", exist_ok=True,
                               verbose=False, mosaic=0.0, seed=0)
    return folder / "runs" / "pages" / "weights" / "last.pt"


def pages(folder: Path, count: int) -> list[Path]:
    """Mixed-size pages around 1000-1600 px, saved as JPEG like scans."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        page = make_page(20_000 + i).image
        page = page.resize((page.width * 2, page.height * 2))
        path = folder / f"page{i:03d}.jpg"
        page.save(path, quality=90)
        paths.append(path)
    return paths


def our_job(env: dict, paths: list[Path], params: dict) -> tuple[float, float, dict]:
    """(warm job seconds, first job seconds incl. model load, summary of the warm job)."""
    from api import create_app

    client = create_app(load_config(env)).test_client()
    worker = subprocess.Popen([sys.executable, "-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", "regions"],
                              cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def run(files: list[Path]) -> tuple[float, dict]:
            start = time.perf_counter()
            response = client.post("/regions/start", content_type="multipart/form-data", data={
                "files": [(io.BytesIO(p.read_bytes()), p.name) for p in files], "parameters": json.dumps(params)})
            assert response.status_code == 202, response.data
            tracking_id = response.get_json()["tracking_id"]
            while True:
                status = client.get(f"/regions/{tracking_id}/status").get_json()
                if status["state"] in ("SUCCESS", "FAILURE"):
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            assert status["state"] == "SUCCESS", status
            return elapsed, status["output"]["summary"]

        first, _ = run(paths[:1])
        warm, summary = run(paths)
        return warm, first, summary
    finally:
        worker.terminate()
        worker.wait(30)


def pure_model(model_path: Path, paths: list[Path], params: dict, device: str, batch: int, runtime: str) -> float:
    from PIL import Image
    from ultralytics import YOLO

    from api.demos.regions.runtimes import RuntimeChooser

    if runtime != "torch":  # the export the worker chose (cached beside the models, not made again)
        model_path = RuntimeChooser(model_path, model_path.parent.parent / ".cache" / "regions", device,
                                    "auto").choose(params["imgsz"]).path
    model = YOLO(str(model_path), task="detect")
    images = [Image.open(p).convert("RGB") for p in paths]
    half = {"half": True} if device.startswith("cuda") and runtime == "torch" else {}
    model.predict(images[:1], imgsz=params["imgsz"], conf=params["conf"], device=device, verbose=False)  # set-up
    keep_torch_threads()
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        model.predict(images[i:i + batch], imgsz=params["imgsz"], conf=params["conf"], device=device, verbose=False,
                      batch=batch, **half)
    return time.perf_counter() - start


def reference_style(model_path: Path, paths: list[Path], params: dict, device: str) -> float:
    import numpy as np
    import torch
    from PIL import Image
    from ultralytics import YOLO

    start = time.perf_counter()
    model = YOLO(str(model_path))  # loaded for the task
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]
        with torch.no_grad():
            model.predict(np.zeros_like(image), imgsz=params["imgsz"], device=device, verbose=False)  # warm-up
            model.predict(image, imgsz=params["imgsz"], conf=params["conf"], device=device, verbose=False)
    return time.perf_counter() - start


def workspace(tmp: Path, args) -> tuple[Path, Path, list[Path]]:
    """(DATA_FOLDER, the model installed in it as regions/bench.pt, the pages) for one run."""
    quiet_ultralytics(tmp / "ultralytics")
    model = args.model or train(tmp / "train")
    data = tmp / "data"
    (data / "models" / "regions").mkdir(parents=True)
    installed = data / "models" / "regions" / "bench.pt"
    shutil.copy(model, installed)
    return data, installed, pages(tmp / "pages", args.images)


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every regions benchmark takes: pages, input size, weights, device."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--model", type=Path, help="weights (default: trained here on synthetic pages)")
    parser.add_argument("--device", default="cpu")
    return parser


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--batch", type=int, default=0, help="REGIONS_BATCH_SIZE (0: by device)")
    parser.add_argument("--runtime", default="auto", help="INFERENCE_RUNTIME for the worker")
    parser.add_argument("--no-crops", action="store_true", help="jobs without crop files (crops=false)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, _, paths = workspace(tmp, args)
        params = {"model": "bench.pt", "imgsz": args.imgsz, "conf": 0.25, "crops": not args.no_crops}
        with EmbeddedRedis(tmp / "redis", appendonly=False, port=0) as redis_server:
            env = {"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data), "REDIS_URL": redis_server.url,
                   "INSTALLED_APPS": "regions", "DEVICE": args.device, "REGIONS_BATCH_SIZE": str(args.batch),
                   "INFERENCE_RUNTIME": args.runtime,
                   "PROGRESS_INTERVAL_S": "1"}
            warm, first, summary = our_job(env, paths, params)
        batch = summary["batch_size"]
        model_s = pure_model(data / "models" / "regions" / "bench.pt", paths, params, args.device, batch,
                             summary["runtime"])
        reference_s = reference_style(data / "models" / "regions" / "bench.pt", paths, params, args.device)
    n = len(paths)
    print(f"{n} pages (~{2 * 500}x{2 * 700} px JPEG), imgsz {args.imgsz}, device {args.device}, "
          f"runtime {summary['runtime']}, batch {batch}, "
          f"{summary['detections']} boxes")
    print(f"(a) our job end to end (warm worker)   {warm:7.2f} s  {warm / n * 1000:7.1f} ms/page")
    print(f"    first job of a fresh worker (1 page, model load + warm-up) {first:.2f} s")
    print(f"(b) pure model time (same runtime)     {model_s:7.2f} s  {model_s / n * 1000:7.1f} ms/page")
    print(f"(c) reference style                    {reference_s:7.2f} s  {reference_s / n * 1000:7.1f} ms/page")
    print(f"(a)/(b) = {warm / model_s:.2f}  (goal <= 1.15)")
    print(f"(c)/(a) = {reference_s / warm:.2f}  (goal >= 1.5 on CPU, >= 3 on GPU)")
    print(f"job timings: {summary['timings']}")


if __name__ == "__main__":
    main()
