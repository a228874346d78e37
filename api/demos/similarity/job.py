"""One similarity job, worker side: the job's images (and a regions job's crops) described, compared
(engine.py), and the results written: pairs.json, pairs/<doc_a>-<doc_b>.json, contact_sheet.jpg."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .engine import Comparison, Describer, compare, pair_record
from .pictures import Row, contact_sheet

OUTPUT_PAIRS = 50  # pairs repeated in the job's output (all of them are in pairs.json)
OUTPUT_CLUSTERS = 100


def crops_of(regions_folder: Path | None) -> dict[tuple[str, str], dict]:
    """{(doc uid, crop id): {"crop_id", "page", "bbox"}} from a regions job's annotations.json files."""
    found: dict[tuple[str, str], dict] = {}
    if regions_folder is None:
        return found
    for path in sorted(regions_folder.glob("*/annotations.json")):
        try:
            pages = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for page in pages if isinstance(pages, list) else []:
            for crop in page.get("crops", []) if isinstance(page, dict) else []:
                if isinstance(crop, dict) and crop.get("crop_id"):
                    found[(path.parent.name, str(crop["crop_id"]))] = {
                        "crop_id": str(crop["crop_id"]), "page": page.get("source"), "bbox": crop.get("bbox")}
    return found


def run_job(job: Any, backbone: Any, regions_folder: Path | None) -> dict:
    params = job.params
    if params.get("feature") == "cnn" and backbone is None:
        raise ValueError("feature=cnn needs a backbone checkpoint in DATA_FOLDER/models/similarity/")
    backbone = backbone if params.get("feature") != "local" else None
    describer = Describer(params, backbone)
    crops = crops_of(regions_folder)
    for loaded in job.images():
        src = loaded.source
        describer.add(loaded.image, src.doc_uid, src.name, loaded.size, crops.get((src.doc_uid, src.name)))
        job.advance()
    result = compare(describer, check=job.check_cancelled, log=job.log)
    for name, seconds in result.timings.items():
        job.timing(name, seconds)
    return write_results(job, result, params, getattr(backbone, "source", None))


def write_results(job: Any, result: Comparison, params: dict, backbone: str | None = None) -> dict:
    items = result.items
    kind = params.get("transform", "affine")
    records = [pair_record(pair, items, kind) for pair in result.pairs]
    clusters = [[items[i].key for i in group] for group in result.clusters]
    index = [{"id": i.key, "doc_uid": i.doc_uid, "image": i.name, "width": i.width, "height": i.height,
              **({"crop": i.crop} if i.crop else {})} for i in items]
    summary = {"items": len(items), "documents": len({i.doc_uid for i in items}), "candidates": result.candidates,
               "pairs": len(records), "clusters": len(clusters), "retrieval": result.feature,
               "backbone": backbone,
               "local_features": params.get("local_features", "sift"), "timings": result.timings}
    job.write_json("pairs.json", {"parameters": params, "summary": summary, "items": index, "pairs": records,
                                  "clusters": clusters})

    per_document: dict[str, list[dict]] = {}
    for record in records:
        per_document.setdefault(f"{record['doc_a']}-{record['doc_b']}", []).append(record)
    files = {}
    for name, pairs in sorted(per_document.items()):
        job.write_json(f"pairs/{name}.json", {"doc_a": pairs[0]["doc_a"], "doc_b": pairs[0]["doc_b"], "pairs": pairs})
        files[name] = job.url(f"pairs/{name}.json")

    rows = []
    for pair in result.pairs[:params.get("contact_pairs", 12)]:
        a, b = items[pair.a], items[pair.b]
        v = pair.verified
        transform = pair_record(pair, items, kind)["transform"]
        title = (f"{a.key} <-> {b.key}   score {v.score:.2f}, {v.inliers} inliers, scale {transform['scale']:.2f}, "
                 f"{transform['rotation']:+.0f} deg{', mirrored' if v.mirror else ''}")
        rows.append(Row(a.thumb, b.thumb, v.points_a * a.thumb_scale, v.points_b * b.thumb_scale, title))
    with job.open("contact_sheet.jpg") as handle:
        contact_sheet(rows).save(handle, "JPEG", quality=88)

    return {"summary": summary, "pairs": records[:OUTPUT_PAIRS], "clusters": clusters[:OUTPUT_CLUSTERS],
            "pairs_url": job.url("pairs.json"), "per_document": files, "contact_sheet": job.url("contact_sheet.jpg")}
