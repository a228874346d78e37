"""Regions benchmark: one table per image set, every line measured in the same run on the same
images with the same weights.

    reference style      discover-api's way: the model loaded for the task, then per image: read
                         it from disk (full decode), a warm-up forward, one forward (PyTorch)
    pure model           the decoded images (full resolution, decoding not counted) through one
                         runtime, one page per call: ultralytics' predict with PyTorch, OpenVINO,
                         ONNX Runtime (what `auto` chose among), and our lean path
                         (`lean.LeanModel`: letterbox, compiled model, NMS; pipelined) on the
                         exports; and the job's runtime on the same files, its decoding counted:
                         ultralytics' predict given the paths (it decodes them with OpenCV), our
                         lean path given pages Pillow decodes (full resolution). The job is
                         compared with both lines of the runtime it uses: on the same files (what
                         a user of the pure model waits for, and how the issue measured it) and
                         on decoded images (stricter: the job decodes, that line does not)
    our job              POST /regions/start with the files uploaded, a real dramatiq worker whose
                         model is loaded (a worker lives across jobs), until SUCCESS with every
                         output written and the zip built: as defaulted (crops and previews),
                         without crops, without crops or previews, and with 1 decoding thread

Image sets (`--sets`): `synthetic` (64 generated pages, ~1000×1400 JPEG), `real` (64 real
photographs and scans, 400 to 5640 px: `tools/fetch_real_photos.py` caches them). Goals: our
job >= 3× the reference style, and <= 1.15× the pure model time of the runtime it uses.

    .venv/bin/python -m bench.regions [--sets real,synthetic] [--images 64] [--imgsz 640] [--model PATH] [--repeat 2]

Without --model, a YOLOv8n is trained for a minute on synthetic pages (as the tests do): speed
does not depend on how good the weights are, only on the network and the number of boxes.
Each timing is the best of --repeat runs (the machine may be shared).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def real_images(count: int) -> list[Path]:
    from tools.fetch_real_photos import fetch

    return fetch()[:count]


def best(repeat: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(max(1, repeat)))


class Worker:
    """A regions worker (a real dramatiq process) and the API in this process, for jobs."""

    def __init__(self, env: dict):
        from api import create_app

        self.client = create_app(load_config(env)).test_client()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", "regions"], cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def job(self, files: list[tuple[str, bytes]], params: dict) -> tuple[float, dict]:
        """(seconds from the upload to SUCCESS, the job's output); `last_cpu`: the CPU seconds the
        worker's processes spent meanwhile (steadier than seconds on a shared machine)."""
        cpu = process_tree_cpu(self.process.pid)
        start = time.perf_counter()
        response = self.client.post("/regions/start", content_type="multipart/form-data", data={
            "files": [(io.BytesIO(data), name) for name, data in files], "parameters": json.dumps(params)})
        assert response.status_code == 202, response.data
        tracking_id = response.get_json()["tracking_id"]
        while True:
            status = self.client.get(f"/regions/{tracking_id}/status").get_json()
            if status["state"] in ("SUCCESS", "FAILURE"):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        self.last_cpu = process_tree_cpu(self.process.pid) - cpu
        assert status["state"] == "SUCCESS", status
        return elapsed, status["output"]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total


def our_job(env: dict, paths: list[Path], params: dict) -> tuple[float, float, dict]:
    """(warm job seconds, first job seconds incl. model load, summary of the warm job)."""
    worker = Worker(env)
    try:
        files = [(p.name, p.read_bytes()) for p in paths]
        first, _ = worker.job(files[:1], params)
        warm, output = worker.job(files, params)
        return warm, first, output["summary"]
    finally:
        worker.close()


def decoded(paths: list[Path]) -> list:
    from PIL import Image, ImageOps

    images = []
    for path in paths:
        with Image.open(path) as opened:
            images.append(ImageOps.exif_transpose(opened).convert("RGB"))
    return images


def pure_ultralytics(model_path: Path, images: list, params: dict, device: str) -> float:
    """Ultralytics' predict, one page per call, on decoded images or on paths (str: ultralytics
    decodes each itself, with OpenCV)."""
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    model.predict(images[0], imgsz=params["imgsz"], conf=params["conf"], device=device, verbose=False)  # set-up
    keep_torch_threads()
    start = time.perf_counter()
    for image in images:
        model.predict(image, imgsz=params["imgsz"], conf=params["conf"], device=device, verbose=False)
    return time.perf_counter() - start


def pure_lean(artifact: Path, runtime: str, images: list, params: dict, precision: str | None = None) -> float:
    """Our lean path (the worker's, pipelined) on decoded images, or on paths (each decoded by
    Pillow at full resolution when the model takes it, as `decoded` does)."""
    from api.demos.regions.common import Options
    from api.demos.regions.lean import LeanModel

    model = LeanModel(artifact, runtime, precision=precision)
    options = Options(conf=params["conf"], imgsz=params["imgsz"])
    image_of = (lambda path: decoded([path])[0]) if isinstance(images[0], Path) else (lambda image: image)
    model.predict([image_of(images[0])], options)
    start = time.perf_counter()
    for _ in model.stream(images, options, image_of):
        pass
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
    keep_torch_threads()
    return time.perf_counter() - start


def workspace(tmp: Path, args) -> tuple[Path, Path, list[Path]]:
    """(DATA_FOLDER, the model installed in it as regions/bench.pt, the synthetic pages) for one run."""
    quiet_ultralytics(tmp / "ultralytics")
    model = args.model or train(tmp / "train")
    data = tmp / "data"
    (data / "models" / "regions").mkdir(parents=True)
    installed = data / "models" / "regions" / ("bench" + Path(model).suffix)
    shutil.copy(model, installed)
    return data, installed, pages(tmp / "pages", args.count)


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every regions benchmark takes: pages, input size, weights, device."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--images", dest="count", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--model", type=Path, help="weights (default: trained here on synthetic pages)")
    parser.add_argument("--device", default="cpu")
    return parser


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def table(name: str, paths: list[Path], args, data: Path, model_path: Path, redis_url: str) -> None:
    from PIL import Image

    from api.demos.regions.runtimes import RuntimeChooser, available

    params = {"model": model_path.name, "imgsz": args.imgsz, "conf": 0.25}
    env = {"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data), "REDIS_URL": redis_url,
           "INSTALLED_APPS": "regions", "DEVICE": args.device, "INFERENCE_RUNTIME": args.runtime,
           "PROGRESS_INTERVAL_S": "1"}
    files = [(p.name if p.name not in {q.name for q in paths[:i]} else f"{i}-{p.name}", p.read_bytes())
             for i, p in enumerate(paths)]
    jobs: list[tuple[str, float]] = []
    cpu: dict[str, float] = {}  # the least worker CPU seconds of each job line's runs
    load_before = load_average()
    outputs: dict = {}
    for threads in ("0", "1"):  # 0: the default (as many decoding threads as download threads)
        worker = Worker({**env, "REGIONS_DECODE_THREADS": threads})
        try:
            worker.job(files[:1], params)  # the model loads (and, the first time, is exported and chosen)
            variants = [("as defaulted (crops, previews)", {})] if threads == "1" else [
                ("as defaulted (crops, previews)", {}), ("without crops", {"crops": False}),
                ("without crops or previews", {"crops": False, "previews": False})]
            for label, extra in variants:
                label_threads = f"{label}, {'1 decoding thread' if threads == '1' else 'default decoding threads'}"

                def one(extra: dict = extra, label: str = label, worker: Worker = worker, key: str = label_threads
                        ) -> float:
                    seconds, outputs[label] = worker.job(files, {**params, **extra})
                    cpu[key] = min(cpu.get(key, math.inf), worker.last_cpu)
                    return seconds
                jobs.append((label_threads, best(args.repeat, one)))
        finally:
            worker.close()
    summary = outputs["as defaulted (crops, previews)"]["summary"]
    runtime = summary["runtime"]
    images = decoded(paths)
    pure: list[tuple[str, float]] = []
    is_pt = model_path.suffix == ".pt"
    if is_pt:
        pure.append(("PyTorch (ultralytics predict)", best(args.repeat, lambda: pure_ultralytics(
            model_path, images, params, args.device))))
    chooser = RuntimeChooser(model_path, data / "models" / ".cache" / "regions", args.device, "auto")
    for candidate in ("openvino", "onnx"):
        if not available(candidate):
            continue
        artifact = chooser._export(candidate, args.imgsz, half=False) if is_pt else model_path
        if not is_pt and candidate != "onnx":
            continue
        pure.append((f"{candidate} (ultralytics predict)", best(args.repeat, lambda a=artifact: pure_ultralytics(
            a, images, params, args.device))))
        precision = summary["runtime_choice"].get(candidate, {}).get("precision") if candidate == "openvino" else None
        if precision:  # the job's (f32: the CPU's bf16 failed parity), and the plugin's default beside it
            pure.append((f"{candidate} (our lean path, default precision)", best(
                args.repeat, lambda a=artifact, c=candidate: pure_lean(a, c, images, params))))
        pure.append((f"{candidate} (our lean path)", best(args.repeat, lambda a=artifact, c=candidate, p=precision:
                                                          pure_lean(a, c, images, params, p))))
        if candidate == runtime:  # the job's runtime on the same files, decoding counted
            pure.append((f"{candidate} (ultralytics predict) on the files", best(
                args.repeat, lambda a=artifact: pure_ultralytics(a, [str(p) for p in paths], params, args.device))))
            pure.append((f"{candidate} (our lean path) on the files", best(
                args.repeat, lambda a=artifact, c=candidate, p=precision: pure_lean(a, c, paths, params, p))))
    reference = best(args.repeat, lambda: reference_style(model_path, paths, params, args.device))
    load_after = load_average()
    precision_used = summary["runtime_choice"].get(runtime, {}).get("precision", "the runtime's default")
    n = len(paths)
    sizes = sorted(max(Image.open(p).size) for p in paths)
    print(f"\n### {name}: {n} images, long side {sizes[0]}-{sizes[-1]} px (median {sizes[n // 2]}), "
          f"imgsz {args.imgsz}, device {args.device}, {os.cpu_count()} cores; the job ran {runtime} "
          f"({summary['detections']} boxes; precision {precision_used}); load average before {load_before}, "
          f"after {load_after}\n")
    print("| line | seconds | ms/image | reference style / line |")
    print("|---|---|---|---|")
    print(f"| reference style (model loaded for the task, PyTorch, one image per forward) | {reference:.2f} | "
          f"{reference / n * 1000:.1f} | 1.00× |")
    for label, seconds in pure:
        print(f"| pure model: {label} | {seconds:.2f} | {seconds / n * 1000:.1f} | {reference / seconds:.2f}× |")
    for label, seconds in jobs:
        print(f"| our job: {label} | {seconds:.2f} | {seconds / n * 1000:.1f} | {reference / seconds:.2f}× |")
    default = jobs[0][1]
    by_label = dict(pure)
    print()
    for label in (f"{runtime} (ultralytics predict) on the files", f"{runtime} (our lean path) on the files",
                  f"{runtime} (our lean path)", f"{runtime} (ultralytics predict)") if runtime != "torch" else (
            "PyTorch (ultralytics predict)",):
        if label in by_label:
            decoding = "its decoding counted" if label.endswith("files") else "decoding not counted: stricter"
            print(f"job as defaulted / pure model {label} ({decoding}): {default / by_label[label]:.2f} "
                  f"(goal <= 1.15)")
    print(f"reference style / job as defaulted: {reference / default:.2f}× (goal >= 3)")
    print("worker CPU seconds per job (least of the runs): "
          + "; ".join(f"{label}: {seconds:.2f}" for label, seconds in cpu.items()))
    print(f"job timings: {summary['timings']}")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sets", default="real,synthetic", help="image sets: real, synthetic")
    parser.add_argument("--runtime", default="auto", help="INFERENCE_RUNTIME for the worker")
    parser.add_argument("--repeat", type=int, default=2, help="each timing is the best of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, model_path, synthetic = workspace(tmp, args)
        with EmbeddedRedis(tmp / "redis", appendonly=False, port=0) as redis_server:
            for name in args.sets.split(","):
                paths = real_images(args.count) if name == "real" else synthetic
                title = "real photographs and scans" if name == "real" else "generated pages"
                table(title, paths, args, data, model_path, redis_server.url)


if __name__ == "__main__":
    main()
