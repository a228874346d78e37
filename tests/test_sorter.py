"""The sorter demo, offline and with real inference.

The locator is trained here, once per run, on generated table scenes (CPU, 320 px, a couple of
hundred iterations) and must find most items on scenes it never saw; the grouping must reach
ARI ≥ 0.9 against the known kinds with the weights-free descriptors and with a ResNet-18
backbone (trained briefly here, since no ImageNet weights can be had offline); the arm conversion
is checked against values worked out by hand; and a whole job runs through the API and a real
worker. Everything is seeded.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import zipfile
from urllib.parse import urlsplit

import numpy as np
import pytest

from api.platform.errors import InputError
from tests.support import ROOT
from tests.support.platform import json_of, wait_for

torch = pytest.importorskip("torch")

from api.demos.sorter import Sorter, arm, grouping  # noqa: E402
from api.demos.sorter.embed import (  # noqa: E402
    BACKBONE_FILE,
    CnnEmbedder,
    DescriptorEmbedder,
    resnet18_trunk,
    save_backbone,
    train_backbone,
)
from api.demos.sorter.locator import Locator, LocatorMissing  # noqa: E402
from api.demos.sorter.synthetic import CONTAINER, ITEM, item_crops, make_scene, make_scenes  # noqa: E402
from api.demos.sorter.train import save_trained, train_locator  # noqa: E402

SIZE = 320
ARM = {"arm_radius": 1000, "rotation_range_as_pw": 1000, "rotation_range_as_deg": 90,
       "dist_min_as_pw": 1200, "dist_max_as_pw": 1900}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A locator and a backbone trained on generated scenes, saved as the demo expects them.
    Two threads, as on CI's 2 cores; SORTER_TEST_THREADS=1 where other work shares the cores
    (two threads then spin against each other and cost several times the CPU)."""
    torch.set_num_threads(int(os.environ.get("SORTER_TEST_THREADS", "2")))
    folder = tmp_path_factory.mktemp("sorter-models")
    scenes = make_scenes(60, seed=1)
    samples = [(s.image, s.boxes.astype(np.float32), s.labels.astype(np.int64)) for s in scenes]
    model = train_locator(samples, iterations=200, batch_size=2, size=SIZE, lr=0.02, seed=0, log=lambda m: None)
    save_trained(model, folder / "locator.pt", "tests: 60 synthetic scenes, 200 iterations")
    crops, kinds = [], []
    for i in range(16):
        scene = make_scene(9000 + i, n_containers=3, n_items=8, kinds=[0, 1, 2, 3, 4, 5])
        crops += item_crops(scene)
        kinds += [int(k) for k in scene.item_kinds]
    trunk = train_backbone(crops, kinds, steps=60, batch=24, seed=0)
    save_backbone(trunk, folder / BACKBONE_FILE, "tests: 60 steps on generated crops of 6 kinds")
    return folder


def recall(locator: Locator, scenes, label: int, threshold: float = 0.5) -> float:
    from torchvision.ops import box_iou

    found = total = 0
    name = "item" if label == ITEM else "container"
    for scene, dets in zip(scenes, locator.detect([s.image for s in scenes], threshold), strict=True):
        truth = torch.tensor(scene.boxes[scene.labels == label], dtype=torch.float32)
        boxes = torch.tensor([d.box for d in dets if d.label == name], dtype=torch.float32).reshape(-1, 4)
        total += len(truth)
        if len(boxes) and len(truth):
            found += int((box_iou(truth, boxes).max(dim=1).values >= 0.5).sum())
    return found / total


def test_locator_trained_on_generated_scenes_finds_most_items_on_unseen_ones(models):
    locator = Locator.load(models / "locator.pt")
    unseen = make_scenes(15, seed=77)
    items, containers = recall(locator, unseen, ITEM), recall(locator, unseen, CONTAINER)
    print(f"\nlocator recall at IoU 0.5, score 0.5, 15 unseen scenes: items {items:.3f}, containers {containers:.3f}")
    assert items >= 0.85
    assert containers >= 0.6


def known_crops(seed: int, scenes: int = 10, kinds=(0, 1, 2, 3)):
    crops, labels = [], []
    for i in range(scenes):
        scene = make_scene(seed + i, n_containers=len(kinds), n_items=8, kinds=list(kinds))
        crops += item_crops(scene)
        labels += [int(k) for k in scene.item_kinds]
    return crops, labels


def test_descriptors_group_known_kinds(models):
    from sklearn.metrics import adjusted_rand_score

    crops, labels = known_crops(500)
    groups, info = grouping.cluster(DescriptorEmbedder().embed(crops), 4)
    ari = adjusted_rand_score(labels, groups)
    print(f"\ndescriptors ARI (4 kinds, {len(crops)} crops): {ari:.3f}")
    assert info["k"] == 4 and ari >= 0.9


def test_cnn_backbone_groups_known_kinds(models):
    from sklearn.metrics import adjusted_rand_score

    torch.manual_seed(0)
    crops, labels = known_crops(500)
    cnn = CnnEmbedder.from_folder(models)
    assert cnn is not None and "backbone.pt" in cnn.source
    ari = adjusted_rand_score(labels, grouping.cluster(cnn.embed(crops), 4)[0])
    untrained = adjusted_rand_score(labels, grouping.cluster(CnnEmbedder(resnet18_trunk()).embed(crops), 4)[0])
    print(f"\nCNN ARI (4 kinds, {len(crops)} crops): trained backbone {ari:.3f}, random weights {untrained:.3f}")
    assert ari >= 0.9


def test_no_backbone_means_no_cnn(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert CnnEmbedder.from_folder(tmp_path) is None


def test_arm_conversion_matches_hand_computed_values():
    c = arm.parse_arm_constants(ARM)
    # the photo's centre: straight ahead at arm_radius → base angle, and half-way on servo 1
    assert arm.to_polar(c, 1500, 640, 480, 320, 240) == pytest.approx((1500, 1200 + 700 * 240 / 480))
    # bottom-left corner: a = 320, b + R = 760 → gamma = atan(320/760) = 22.8337°, dist = 824.621
    # servo_0 = 1500 + 1000 · 22.8337 / 90 = 1753.707; servo_1 = 1200 + 700 · (824.621 - 760) / 480 = 1294.239
    assert arm.to_polar(c, 1500, 640, 480, 0, 480) == pytest.approx((1753.707, 1294.239), abs=1e-3)
    # right of centre turns the other way: a = 100, b = 180 → gamma = 4.8440°, dist = 1184.230
    assert arm.to_polar(c, 1500, 640, 480, 420, 60) == pytest.approx((1446.178, 1818.668), abs=1e-3)
    # top centre reaches dist_max_as_pw, bottom centre dist_min_as_pw
    assert arm.to_polar(c, 1500, 640, 480, 320, 0)[1] == pytest.approx(1900)
    assert arm.to_polar(c, 1500, 640, 480, 320, 480)[1] == pytest.approx(1200)


def sorterbot_object_to_polar(constants, base, w, h, x, y):
    """SorterBot Cloud's formula as it wrote it (atan and a / sin), for comparison."""
    half_w, half_h = w / 2, h / 2
    a, b = abs(half_w - x), half_h - y
    gamma_rad = math.atan(a / (b + constants["arm_radius"]))
    dist = a / math.sin(gamma_rad) if gamma_rad else b + constants["arm_radius"]
    delta = constants["rotation_range_as_pw"] * math.degrees(gamma_rad) / constants["rotation_range_as_deg"]
    s0 = base - delta if x > half_w else base + delta
    span = constants["dist_max_as_pw"] - constants["dist_min_as_pw"]
    return s0, span * (dist - (constants["arm_radius"] - half_h)) / h + constants["dist_min_as_pw"]


def test_arm_conversion_agrees_with_sorterbot_and_inverts():
    c = arm.parse_arm_constants(json.dumps(ARM))
    rng = np.random.default_rng(3)
    for x, y in rng.uniform([0, 0], [640, 480], (50, 2)):
        polar = arm.to_polar(c, 1600, 640, 480, x, y)
        assert polar == pytest.approx(sorterbot_object_to_polar(c, 1600, 640, 480, x, y))
        assert arm.from_polar(c, 1600, 640, 480, *polar) == pytest.approx((x, y))


def test_base_angle_from_name_map_or_default():
    c = arm.parse_arm_constants({**ARM, "base_angles": {"left": 1300}, "base_pw": 1500})
    assert arm.base_angle(c, "1700") == 1700 and arm.base_angle(c, "1700.jpg") == 1700
    assert arm.base_angle(c, "left") == 1300 and arm.base_angle(c, "photo") == 1500
    assert arm.base_angle(arm.parse_arm_constants(ARM), "photo") is None


def test_objects_seen_in_two_overlapping_photos_are_merged():
    """One table under the arm, photographed at base 1500 and 1650: the objects both photos see
    are found twice and must come out once, at their true place."""
    c = arm.parse_arm_constants(ARM)
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(1300, 1850, 300), rng.uniform(1250, 1850, 300)
    world = [(float(s0), float(s1)) for s0, s1 in zip(xs, ys, strict=True)]
    # keep objects more than 170 pw apart, so that distinct objects stay distinct at 150
    kept: list[tuple[float, float]] = []
    for p in world:
        if all(max(abs(p[0] - q[0]), abs(p[1] - q[1])) > 170 for q in kept):
            kept.append(p)
    found, seen_by = [], {}
    for photo, base in enumerate((1500, 1650)):
        for k, (s0, s1) in enumerate(kept):
            x, y = arm.from_polar(c, base, 640, 480, s0, s1)
            if 0 <= x < 640 and 0 <= y < 480:
                x, y = x + rng.normal(0, 3), y + rng.normal(0, 3)  # the locator's box is never exact
                found.append(grouping.Found(photo, "arm", arm.to_polar(c, base, 640, 480, x, y), 0.9))
                seen_by.setdefault(k, []).append(photo)
    twice = sum(1 for photos in seen_by.values() if len(photos) == 2)
    assert twice >= 3, "the photos must overlap for this test to mean something"
    merged = grouping.dedup(found, 150)
    assert len(merged) == len(seen_by)
    for m in merged:
        nearest = min(kept, key=lambda p: math.dist(p, m.position))
        assert math.dist(nearest, m.position) < 20


def test_grouping_assigns_each_group_its_nearest_container():
    groups = np.array([0, 0, 1, 1, 2])
    items = np.array([[0, 0], [1, 0], [10, 10], [11, 10], [20, 0]], float)
    containers = np.array([[20, 1], [0, 1], [10, 12]], float)
    assert grouping.assign(groups, items, containers) == {0: 1, 1: 2, 2: 0}
    # more groups than containers: the costliest group is left without one
    assert grouping.assign(groups, items, containers[:2]) == {0: 1, 2: 0}


def test_a_box_inside_a_better_one_of_its_class_is_dropped():
    from api.demos.sorter.locator import Detection
    from api.demos.sorter.pipeline import drop_nested

    whole = Detection((10, 10, 110, 90), "container", 0.95)
    part = Detection((12, 12, 50, 88), "container", 0.7)       # inside the whole bin
    item = Detection((20, 20, 40, 40), "item", 0.9)            # an item in a bin stays
    other = Detection((100, 10, 200, 90), "container", 0.8)    # overlaps a little: another bin
    assert drop_nested([part, item, whole, other]) == [whole, item, other]


def test_silhouette_picks_the_number_of_kinds_when_nothing_else_is_known():
    crops, labels = known_crops(600, scenes=8, kinds=(0, 1, 2))
    groups, info = grouping.cluster(DescriptorEmbedder().embed(crops), 0)
    assert info["chosen_by"] == "silhouette"
    print(f"\nsilhouette chose k={info['k']} for 3 kinds: {info['silhouette']}")
    assert info["k"] == 3


def test_parameters_are_validated():
    demo = Sorter()
    params = demo.validate({"arm_constants": ARM, "n_groups": "3"})
    assert params["arm_constants"]["arm_radius"] == 1000.0 and params["n_groups"] == 3
    assert demo.validate(json.dumps({"arm_constants": json.dumps(ARM)}))["arm_constants"]["dist_max_as_pw"] == 1900
    assert demo.validate({})["arm_constants"] is None and demo.validate({})["embedding"] == "auto"
    # "no constants": left out, an empty object, or an empty form field
    assert demo.validate({"arm_constants": {}})["arm_constants"] is None
    assert demo.validate({"arm_constants": " "})["arm_constants"] is None
    for bad, says in (({"arm_constants": {"arm_radius": 1}}, "missing"),
                      ({"arm_constants": "{not json"}, "not valid JSON"),
                      ({"arm_constants": [["arm_radius", 1000]]}, "must be an object"),
                      ({"arm_constants": None}, "not null"),
                      ({"arm_constants": {**ARM, "arm_radius": "far"}}, "arm_radius must be a number"),
                      ({"arm_constants": {**ARM, "speed": 3}}, "unknown constant")):
        with pytest.raises(InputError) as err:
            demo.validate(bad)
        assert err.value.field == "parameters.arm_constants" and says in err.value.message
    with pytest.raises(InputError):
        demo.validate({"embedding": "clip"})


def test_the_api_side_of_the_demo_never_imports_torch(env, data_folder):
    """What the API process does with the demo (declare, validate, list models) loads no library
    of the worker side."""
    import subprocess
    import sys

    folder = data_folder / "models" / "sorter"
    folder.mkdir(parents=True)
    (folder / "locator.pt").write_bytes(b"")
    (folder / "locator.json").write_text(json.dumps({"classes": ["background", "item", "container"]}))

    code = ("import json, os, sys; import api.demos.sorter as s; from api.platform.config import load_config; "
            "s.demo.configure(load_config(json.loads(os.environ['SORTER_ENV']))); "
            f"s.demo.validate({{'arm_constants': {json.dumps(ARM)!r}}}); "
            "assert s.demo.models()['locator.pt']['classes'] == ['item', 'container']; "
            "s.demo.model_id(s.demo.validate({})); "
            "heavy = {'torch', 'torchvision', 'cv2', 'sklearn', 'scipy', 'numpy', 'openvino'} & set(sys.modules); "
            "assert not heavy, sorted(heavy)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SORTER_ENV": json.dumps({**env, "INSTALLED_APPS": "sorter"})})
    assert result.returncode == 0, result.stderr


def test_openapi_declares_arm_constants_an_object_that_the_front_sends_as_one(env):
    """The parameter is an object in the OpenAPI document, so the front's form gives it a JSON
    field and sends an object; the API refuses a null there, naming the field."""
    from api import create_app
    from api.platform.config import load_config
    from front.forms import demo_form

    client = create_app(load_config({**env, "INSTALLED_APPS": "sorter"})).test_client()
    spec = json_of(client.get("/openapi.json"))
    form = demo_form(spec, "sorter")
    [field] = [p for p in form.params if p.name == "arm_constants"]
    assert field.kind == "object" and "arm_radius" in field.help
    sent = form.parse({"param-arm_constants": json.dumps(ARM)})
    assert sent == {"arm_constants": ARM}
    assert form.parse({"param-arm_constants": ""}) == {}
    document = {"type": "img", "src": "http://127.0.0.1:9/a.png"}
    response = client.post("/sorter/start", json={"documents": [document], "parameters": {"arm_constants": None}})
    assert response.status_code == 400
    assert json_of(response)["error"]["field"] == "parameters.arm_constants"


def test_the_default_locator_is_the_sorter_model_setting(env, data_folder):
    from api.platform.config import load_config

    assert Sorter.settings["model"].default == "locator.pt"
    demo = Sorter()
    demo.configure(load_config({**env, "INSTALLED_APPS": "sorter", "SORTER_MODEL": "mine.pt"}))
    folder = data_folder / "models" / "sorter"
    folder.mkdir(parents=True)
    for name in ("mine.pt", "locator.pt", "other.pt"):
        (folder / name).write_bytes(b"")
    assert demo.model_id(demo.validate({})) == "mine.pt"
    assert demo.model_id(demo.validate({"model": "other.pt"})) == "other.pt"
    assert demo.model_id(demo.validate({"locator": "other.pt"})) == "other.pt"
    assert demo.model_id(demo.validate({"locator": "classical"})) == "classical"
    listed = demo.models()
    assert listed["mine.pt"]["default"] is True and listed["locator.pt"]["default"] is False
    assert listed["classical"]["default"] is False
    plain = Sorter()
    plain.configure(load_config({**env, "INSTALLED_APPS": "sorter"}))
    assert plain.model_id(plain.validate({})) == "locator.pt"


def test_without_a_checkpoint_auto_takes_the_classical_locator_and_a_named_one_must_exist(env, data_folder):
    """A fresh install has no locator checkpoint: `locator=auto` sorts with the weights-free one;
    naming a checkpoint that is not there is a 400 naming the field, before any job."""
    from api.platform.config import load_config

    demo = Sorter()
    demo.configure(load_config({**env, "INSTALLED_APPS": "sorter"}))
    assert demo.model_id(demo.validate({})) == "classical"
    assert demo.models()["classical"]["default"] is True
    for field, value, says in (("locator", "gone.pt", "no locator checkpoint 'gone.pt'"),
                               ("model", "gone.pt", "no locator checkpoint 'gone.pt'"),
                               ("locator", "../x.pt", "must be auto, classical or a checkpoint file name")):
        with pytest.raises(InputError) as err:
            demo.validate({field: value})
        assert err.value.field == f"parameters.{field}" and says in err.value.message


def test_missing_locator_says_what_to_put_where(tmp_path):
    with pytest.raises(LocatorMissing) as err:
        Locator.load(tmp_path / "locator.pt")
    message = str(err.value)
    assert str(tmp_path) in message and "python -m api.demos.sorter.train" in message and "\n" not in message
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LocatorMissing, match="cannot be read"):
        Locator.load(tmp_path / "junk.pt")


def test_train_cli_reads_coco_and_writes_a_checkpoint(tmp_path):
    from api.demos.sorter.synthetic import to_coco
    from api.demos.sorter.train import main

    scenes = make_scenes(3, seed=4)
    names = []
    for i, scene in enumerate(scenes):
        names.append(f"photo{i}.jpg")
        scene.image.save(tmp_path / names[-1])
    (tmp_path / "labels.json").write_text(json.dumps(to_coco(scenes, names)))
    out = tmp_path / "models" / "mine.pt"
    assert main([str(tmp_path / "labels.json"), str(tmp_path), "--out", str(out), "--epochs", "1", "--batch", "2",
                 "--size", "192", "--threads", "2"]) == 0
    locator = Locator.load(out)
    assert locator.header["trained"]["photos"] == 3 and locator.classes == ["background", "item", "container"]


def png(image) -> io.BytesIO:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    buf.seek(0)
    return buf


def test_whole_job_through_the_api_and_a_worker(models, env, procs, data_folder):
    from sklearn.metrics import adjusted_rand_score
    from torchvision.ops import box_iou

    from api import create_app
    from api.platform.config import load_config

    env["INSTALLED_APPS"] = procs.env["INSTALLED_APPS"] = "sorter"
    target = data_folder / "models" / "sorter"
    target.mkdir(parents=True)
    for name in ("locator.pt", "locator.json", BACKBONE_FILE, "backbone.json"):
        shutil.copy(models / name, target / name)
    client = create_app(load_config(env)).test_client()
    listed = json.dumps(json_of(client.get("/sorter/models?details=1")))
    assert "locator.pt" in listed and "container" in listed and "backbone.pt" in listed
    procs.worker(queue="sorter", timeout=180)

    scenes = [make_scene(4242 + i, 480, 360, n_containers=3, n_items=9, kinds=[0, 1, 2]) for i in range(2)]
    response = client.post("/sorter/start", content_type="multipart/form-data", data={
        "files": [(png(s.image), f"table{i}.png") for i, s in enumerate(scenes)] + [(io.BytesIO(b"junk"), "bad.png")],
        "parameters": json.dumps({"n_groups": 3})})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_for(lambda: (s := json_of(client.get(f"/sorter/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE") and s, 170, message="sorter job to end")
    assert status["state"] == "SUCCESS", status
    assert status["error_count"] == 1  # the corrupt upload, not the job
    out = status["output"]
    assert out["embedding"] == "cnn" and out["coordinates"] == "image" and out["grouping"]["k"] == 3
    assert {"locate_s", "embed_s", "group_s"} <= set(status["timings"])
    # the items it found, matched to the truth, are grouped by kind
    truth, predicted = [], []
    for i, scene in enumerate(scenes):
        dets = [d for d in out["detections"] if d["image_index"] == i and d["class"] == "item"]
        assert len(dets) >= 7
        iou = box_iou(torch.tensor(scene.item_boxes, dtype=torch.float32),
                      torch.tensor([d["box"] for d in dets], dtype=torch.float32))
        for t, (best, j) in enumerate(zip(*iou.max(dim=1), strict=True)):
            if best >= 0.5:
                truth.append(int(scene.item_kinds[t]))
                predicted.append(dets[int(j)]["group"])
        assert all(0 <= d["box_relative"][0] < d["box_relative"][2] <= 1 for d in dets)
    ari = adjusted_rand_score(truth, predicted)
    print(f"\nwhole job: {len(out['detections'])} detections, ARI of found items {ari:.3f}")
    assert ari >= 0.8
    # every item with a container has a move, in image pixels, to a container of its own photo
    assert out["commands"] and len(out["commands"]) == len(out["pairings"])
    containers = {c["number"]: c for c in out["containers"]}
    for pairing, command in zip(out["pairings"], out["commands"], strict=True):
        assert command == [pairing["item_position"], pairing["container_position"]]
        assert containers[pairing["container"]]["frame"] == pairing["frame"]
    names = set(zipfile.ZipFile(io.BytesIO(client.get(f"/sorter/{tracking_id}/result").data)).namelist())
    assert {"sorter.json", "contact_sheet.jpg"} <= names
    assert sum(1 for n in names if n.endswith(("/table0.jpg", "/table1.jpg"))) == 2, names
    picture = client.get(urlsplit(out["images"][0]["picture"]).path)
    assert picture.status_code == 200 and picture.data[:2] == b"\xff\xd8"
    saved = json.loads(client.get(f"/sorter/{tracking_id}/result/sorter.json").data)
    assert saved["commands"] == out["commands"]

    # a checkpoint that is not installed is refused at the door, saying which file and how to train one
    response = client.post("/sorter/start", content_type="multipart/form-data", data={
        "files": [(png(scenes[0].image), "t.png")], "parameters": json.dumps({"model": "absent.pt"})})
    assert response.status_code == 400
    error = json_of(response)["error"]
    assert error["field"] == "parameters.model" and "absent.pt" in error["message"]
    assert "python -m api.demos.sorter.train" in error["message"]
