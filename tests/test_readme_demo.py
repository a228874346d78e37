"""README's "Writing a demo" is pasted as a new user would, installed, and run as a real job."""
from __future__ import annotations

import io
import json
import re
import sys

import pytest
from PIL import Image

from api import ROOT, create_app
from api.platform.config import load_config
from tests.support.platform import json_of, wait_for

FILES = ("__init__.py", "job.py")


def readme_demo_files() -> dict[str, str]:
    """The section's Python blocks, by the file name their first line gives."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Writing a demo", 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        first = block.splitlines()[0]
        match = re.match(r"# api/demos/brightness/(\S+)", first)
        assert match, f"a block without its file name: {first!r}"
        files[match.group(1)] = block
    assert sorted(files) == sorted(FILES)
    return files


@pytest.fixture
def pasted_demo(tmp_path, monkeypatch):
    """The README's demo as the package `readme_demos.brightness` on the path of this process and of
    the workers (a dotted INSTALLED_APPS entry, as a demo kept outside api/demos/)."""
    package = tmp_path / "pkgs" / "readme_demos" / "brightness"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    for name, code in readme_demo_files().items():
        (package / name).write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    yield tmp_path / "pkgs"
    for module in [m for m in sys.modules if m.startswith("readme_demos")]:
        del sys.modules[module]


def grey_png(grey: int) -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (grey, grey, grey)).save(buf, "PNG")
    buf.seek(0)
    return buf


def test_the_readme_demo_runs_a_job_with_params_settings_and_a_crop(pasted_demo, env, procs):
    settings = {"INSTALLED_APPS": "readme_demos.brightness", "BRIGHTNESS_SCALE": "255"}
    env.update(settings)
    procs.env.update(settings, PYTHONPATH=f"{procs.env['PYTHONPATH']}:{pasted_demo}")
    client = create_app(load_config(env)).test_client()
    spec = json_of(client.get("/openapi.json"))
    assert "/brightness/start" in spec["paths"]

    bad = client.post("/brightness/start", json={"documents": [], "parameters": {"threshold": 2}})
    assert bad.status_code == 400 and json_of(bad)["error"]["field"] == "parameters.threshold"

    procs.worker(queue="brightness")
    response = client.post("/brightness/start", content_type="multipart/form-data", data={
        "files": [(grey_png(20), "dark.png"), (grey_png(230), "light.png")],
        "parameters": json.dumps({"threshold": 0.5, "box": {"left": 0, "top": 0, "right": 10, "bottom": 10}})})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_for(lambda: (s := json_of(client.get(f"/brightness/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE") and s, 60, message="the README demo's job to end")
    assert status["state"] == "SUCCESS", (status, procs.logs())
    assert [path.split("/")[-1] for path in status["output"]["dark"]] == ["dark"]
    measured = client.get(f"/brightness/{tracking_id}/result/{status['output']['dark'][0]}.json")
    assert json.loads(measured.data)["brightness"] == pytest.approx(20 / 255, abs=0.01)
