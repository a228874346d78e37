"""Runtimes benchmark, one run, the same pages and the same weights for every line:

    reference style   the model loaded for the task, then one page per forward (discover-api)
    torch eager       PyTorch, model loaded, one page per forward
    torch batched     PyTorch, batches of --batch pages
    onnx              ONNX Runtime (page-shaped inputs, as exported)
    openvino          OpenVINO (page-shaped inputs)
    tensorrt          TensorRT FP16 (only where `tensorrt` imports, i.e. on a GPU host)
    our job (auto)    POST /regions/start with the runtime chosen by INFERENCE_RUNTIME=auto,
                      end to end through the API and a warm worker

Prints seconds, ms per page and the speed-up over the reference style (goals: ≥ 3× on CPU and on
GPU), and the job's time over the fastest runtime's pure model time (goal ≤ 1.15).

    .venv/bin/python -m bench.runtimes [--images 64] [--imgsz 640] [--model PATH] [--device cpu]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from api.demos.regions.inference import keep_torch_threads
from api.platform.embedded import EmbeddedRedis
from bench.regions import bench_parser, our_job, workspace


def timed_predict(model, images, imgsz: int, device: str, batch: int, half: bool) -> float:
    extra = {"half": True} if half else {}
    model.predict(images[:1], imgsz=imgsz, device=device, verbose=False, **extra)  # set-up, not timed
    keep_torch_threads()  # ultralytics' device set-up leaves PyTorch with cpu_count - 1 threads
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        model.predict(images[i:i + batch], imgsz=imgsz, device=device, verbose=False, batch=batch, **extra)
    return time.perf_counter() - start


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--batch", type=int, default=0, help="batch of 'torch batched' (default 8 CPU, 16 GPU)")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    batch = args.batch or (16 if gpu else 8)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, model_path, paths = workspace(tmp, args)
        from PIL import Image
        from ultralytics import YOLO

        from api.demos.regions.runtimes import RuntimeChooser, available

        images = [Image.open(p).convert("RGB") for p in paths]
        rows: list[tuple[str, float]] = []

        start = time.perf_counter()
        reference = YOLO(str(model_path))  # loaded for the task, as ultralytics leaves it
        for path in paths:
            reference.predict(str(path), imgsz=args.imgsz, device=args.device, verbose=False)
        rows.append(("reference style", time.perf_counter() - start))
        keep_torch_threads()

        torch_model = YOLO(str(model_path))
        rows.append(("torch eager", timed_predict(torch_model, images, args.imgsz, args.device, 1, gpu)))
        batched = timed_predict(torch_model, images, args.imgsz, args.device, batch, gpu)
        rows.append((f"torch batched ({batch})", batched))
        chooser = RuntimeChooser(model_path, data / "models" / ".cache" / "regions", args.device, "auto")
        for runtime in ("onnx", "openvino", "tensorrt"):
            if not available(runtime):
                continue
            try:
                artifact = chooser._export(runtime, args.imgsz, half=gpu)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{runtime}: export failed: {exc}")
                continue
            exported = YOLO(str(artifact), task="detect")
            half = gpu and runtime == "tensorrt"
            rows.append((runtime, timed_predict(exported, images, args.imgsz, args.device, 1, half)))

        with EmbeddedRedis(tmp / "redis", appendonly=False, port=0) as redis_server:
            env = {"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data), "REDIS_URL": redis_server.url,
                   "INSTALLED_APPS": "regions", "DEVICE": args.device, "INFERENCE_RUNTIME": "auto",
                   "PROGRESS_INTERVAL_S": "1"}
            job_s, _, summary = our_job(env, paths, {"model": "bench.pt", "imgsz": args.imgsz, "conf": 0.25})
    n = len(paths)
    reference_s = rows[0][1]
    print(f"{n} pages (~1000x1400 px JPEG), imgsz {args.imgsz}, device {args.device}, "
          f"torch threads {__import__('torch').get_num_threads()}")
    print(f"{'runtime':22s} {'seconds':>8s} {'ms/page':>8s} {'speed-up':>9s}")
    for name, seconds in rows:
        print(f"{name:22s} {seconds:8.2f} {seconds / n * 1000:8.1f} {reference_s / seconds:8.2f}x")
    chosen = summary["runtime"]
    pure = dict(rows).get(chosen) or dict(rows)["torch eager"]
    print(f"{'our job (auto: ' + chosen + ')':22s} {job_s:8.2f} {job_s / n * 1000:8.1f} {reference_s / job_s:8.2f}x")
    print(f"job / pure model time of {chosen}: {job_s / pure:.2f} (goal <= 1.15)")
    print(f"auto's measurements: {summary['runtime_choice']}")


if __name__ == "__main__":
    main()
