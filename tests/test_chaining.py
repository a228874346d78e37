"""Demos chained for real: a regions job finds the figures of pages, then a vectorization job
started with nothing but `regions_job` turns every crop into an SVG. Two real workers, one per
queue, as a GPU host and a CPU host would run them."""
from __future__ import annotations

import io
import json

from PIL import Image

from api.platform.config import load_config
from tests.support.platform import json_of, use_regions, wait_for
from tests.support.synthetic_pages import YOLO_IMGSZ, make_page


def finished(client, app: str, tracking_id: str) -> dict:
    status = wait_for(lambda: (s := json_of(client.get(f"/{app}/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE") and s, 180, message=f"the {app} job")
    assert status["state"] == "SUCCESS", status
    return status


def test_the_crops_of_a_regions_job_are_vectorized(env, procs, trained_yolo):
    from api import create_app

    use_regions(env, procs, trained_yolo, INSTALLED_APPS="regions,vectorization", INFERENCE_RUNTIME="torch")
    client = create_app(load_config(env)).test_client()
    procs.worker(queue="regions", timeout=120)
    procs.worker(queue="vectorization", timeout=120)
    pages = []
    for seed in (9300, 9301):
        buffer = io.BytesIO()
        make_page(seed).image.save(buffer, "PNG")
        pages.append((io.BytesIO(buffer.getvalue()), f"page{seed}.png"))
    response = client.post("/regions/start", content_type="multipart/form-data", data={
        "files": pages, "parameters": json.dumps({"imgsz": YOLO_IMGSZ, "conf": 0.1, "crop_padding": 4})})
    regions_id = json_of(response)["tracking_id"]
    found = finished(client, "regions", regions_id)["output"]["annotations"]
    crops = {doc: [c["crop_id"] for page in pages for c in page["crops"]] for doc, pages in found.items()}
    assert sum(map(len, crops.values())) >= 2

    response = client.post("/vectorization/start", json={"parameters": {"regions_job": regions_id}})
    assert response.status_code == 202, response.data
    vectorization_id = json_of(response)["tracking_id"]
    output = finished(client, "vectorization", vectorization_id)["output"]
    for doc, crop_ids in crops.items():
        images = output["documents"][doc]
        assert sorted(item["image"] for item in images) == sorted(crop_ids)  # one SVG per crop, same names
        for item in images:
            svg = client.get(f"/vectorization/{vectorization_id}/result/{doc}/{item['image']}.svg")
            assert svg.status_code == 200 and b"<svg" in svg.data[:200]
            crop = Image.open(io.BytesIO(client.get(
                f"/regions/{regions_id}/result/{doc}/crops/{item['image']}.jpg").data))
            assert f'viewBox="0 0 {crop.width} {crop.height}"' in svg.get_data(as_text=True)
    assert sum(sum(item["counts"].values()) for items in output["documents"].values() for item in items) > 0
