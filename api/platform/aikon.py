"""aikon-api compatibility: the calls of aikon-demo (aikon-api's front) answered by this API, beside
discover-demo's, which stay exactly as they are.

aikon-api named the regions demo `region_extraction` and answered some calls in other shapes; this
module adds what its clients need and changes nothing a discover-era client sees:

- `/region_extraction/*` is `/regions/*` (every regions rule, added again under that prefix), except:
  `start` reads aikon's body (parameters at the top level when `parameters` is absent, a model
  named by its file stem, `postprocess`, document uids that are not file names) and answers 200;
  `status` gives `log` as the object aikon-demo reads (`infos`, `progress`, `errors`); `models`
  answers `{stem: {name, model, desc}}`.
- `POST /region_extraction/<doc_id>/delete[?model_name=]` (and `/regions/...`, as aikon calls it):
  forget a document's dataset record, or its annotations made with one model.
- `GET /<app>/<tracking_id>/documents/<doc_uid>`: one document's results, the `result_url` of
  `output.results_url` in SUCCESS callbacks (events.with_results_url); for similarity,
  `documents/dataset` is every score in aikon-api's shape (`{parameters, index, pairs}`), the
  `doc_pair: "dataset"` entry aikon-demo fetches (its per-pair entries are the demo's own files).
- `POST /similarity/start` with aikon's body (a top-level `crops`, or aikon's parameters `algorithm`,
  `feat_net`, `cosine_n_filter`, `segswap_*`, `use_transpositions`): its parameters translated and
  its crops found as the crops of the finished regions job that made them (`regions_job`); any other
  body is the demo's own start, unchanged.
- `GET /datasets/dataset/<uid>`: a job's dataset as aikon-api listed it, each document's `download`
  being a zip laid out as aikon-demo unpacks it (`images/` and `images.json`).

Document uids: aikon-demo names a document after its URL (`127001PORT^manifestjson`), which is not
a safe file name here. Such a uid is minted into one (`127001PORT..5emanifestjson`: each other
character as `..` and its UTF-8 bytes in hex, so nothing else collides with it), the job runs under
it, and the uid the client sent comes back wherever aikon-demo matches documents by uid: the served
annotations' `doc_uid` and the dataset's documents. A minted uid is what marks a document as an
aikon client's, so `/datasets/<uid>` (the `dataset_url` of every SUCCESS) gives those documents
their client uid and the aikon zip too; other documents are answered as before.
"""
from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, send_file

from . import datasets, lifecycle, routes
from .demo import Demo
from .errors import InputError, NotFound
from .events import DATASET_PAIR, DOCUMENT_RESULT_PATH
from .inputs import DOCUMENT_TYPES
from .inputs.names import MAX_NAME, SAFE_NAME
from .jobs import CANCELLED, FAILURE, PENDING, STARTED, SUCCESS, Job, read_finished
from .services import services
from .storage import JOB_FILE, TEMP_PREFIX, is_tracking_id, job_folder, safe_join

REGIONS = "regions"
ALIAS = "region_extraction"  # aikon-api's name for the regions demo
SIMILARITY = "similarity"
LOG_INFOS = 10  # aikon-api kept the last ten info lines in its log
AIKON_STATUS = {PENDING: "PENDING", STARTED: "PROGRESS", SUCCESS: "SUCCESS", FAILURE: "ERROR",
                CANCELLED: "CANCELLED"}
# Fields of aikon-api's /start that are not parameters (`crops` and `tracking_url` it ignored for regions).
AIKON_FIELDS = frozenset({"experiment_id", "notify_url", "documents", "parameters", "crops", "tracking_url"})
# aikon-api's similarity parameters (similarity/routes.py), which mark a /similarity/start body as aikon's.
AIKON_SIMILARITY = frozenset({"algorithm", "feat_net", "cosine_n_filter", "cosine_preprocessing", "segswap_prefilter",
                              "segswap_n", "use_transpositions", "skip_pairs", "client_id"})
ALGORITHMS = ("cosine", "segswap")  # both: candidates, then geometric verification of local features here
LOCAL = "local"  # feat_net naming no backbone: local features only (the `local` of /similarity/models)
BOX_TOLERANCE = 1e-3  # relative units: a crop sent back is the regions job's own box

# -- document uids --------------------------------------------------------------------------------------
_KEPT = re.compile(r"[A-Za-z0-9_-]")
_ESCAPE = re.compile(r"\.\.([0-9a-f]{2})")
MINTED = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.\.[0-9a-f]{2})*$")


def mint_uid(uid: str) -> str:
    """`uid` if it is a safe name already, else one made of it that is (reversible: `client_uid`).
    Raises ValueError when none fits MAX_NAME or the uid does not start with a letter or digit."""
    if SAFE_NAME.match(uid):
        return uid
    if not uid or not uid[0].isascii() or not uid[0].isalnum():
        raise ValueError("must start with a letter or a digit")
    minted = "".join(c if _KEPT.fullmatch(c) else "".join(f"..{b:02x}" for b in c.encode()) for c in uid)
    if len(minted) > MAX_NAME:
        raise ValueError(f"too long once made a file name ({len(minted)} characters, at most {MAX_NAME})")
    return minted


def client_uid(uid: str) -> str:
    """The uid an aikon client sent for the minted `uid`; any other uid unchanged."""
    if ".." not in uid or not MINTED.match(uid):
        return uid
    raw = bytearray()
    last = 0
    for match in _ESCAPE.finditer(uid):
        raw += uid[last:match.start()].encode() + bytes([int(match.group(1), 16)])
        last = match.end()
    raw += uid[last:].encode()
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return uid


def is_minted(uid: str) -> bool:
    return client_uid(uid) != uid


# -- /region_extraction/start ---------------------------------------------------------------------------
def start_fields(demo: Demo, body: dict) -> dict:
    """aikon-api's /start body as this API's: parameters from the top level when `parameters` is
    absent (as aikon-api's receive_task read them), a model named by its stem given its file,
    `postprocess` checked and dropped, uids that are not file names minted."""
    params = _parameters(body)
    if isinstance(params, dict):
        params = dict(params)
        _check_postprocess(params.pop("postprocess", None))
        if isinstance(params.get("model"), str):
            params["model"] = model_file(demo, params["model"])
    fields = {key: body[key] for key in ("experiment_id", "notify_url") if key in body}
    fields["parameters"] = params
    if "documents" in body:
        fields["documents"] = mint_documents(body["documents"])
    return fields


def _parameters(body: dict) -> Any:
    """The parameters of an aikon body: `parameters` (an object, or JSON text as a form sends it), else
    the top-level fields that are not aikon's others, as aikon-api's receive_task read them."""
    if "parameters" not in body:
        return {key: value for key, value in body.items() if key not in AIKON_FIELDS}
    return _form_json(body["parameters"], "parameters", {})


def _form_json(value: Any, field: str, empty: Any) -> Any:
    """A field as JSON: a form sends it as JSON text (`empty` when blank), a JSON body as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else empty
    except ValueError:
        raise InputError(field, "not valid JSON") from None


def _check_postprocess(postprocess: Any) -> None:
    """aikon-demo always sends {"squarify", "h_margin", "v_margin"}: its defaults change no box and
    are accepted; other values are refused rather than ignored (regions does not reshape boxes)."""
    if not postprocess:
        return
    if isinstance(postprocess, dict) and not postprocess.get("squarify") and not any(
            postprocess.get(key) for key in ("h_margin", "v_margin")):
        return
    raise InputError("parameters.postprocess", "squarify and margins are not supported here: send "
                     "squarify false and margins 0 (crop_padding adds pixels around each crop)")


def model_file(demo: Demo, name: str) -> str:
    """The installed file aikon's model name means: its stem (`illustrations` for `illustrations.pt`),
    or the file itself. A name no file matches is returned as is, for the demo to refuse."""
    return model_stems(demo).get(name, name)


def model_stems(demo: Demo) -> dict[str, str]:
    """{stem: file} of the installed models; of two files with one stem, the first the demo lists."""
    stems: dict[str, str] = {}
    for file in demo.models():
        stems.setdefault(Path(file).stem, file)
    return stems


def mint_documents(documents: Any) -> Any:
    """The documents with uids made file names (what is not a list of objects is left for the
    platform to refuse with its own message)."""
    if isinstance(documents, str):
        try:
            documents = json.loads(documents)
        except ValueError:
            return documents
    if not isinstance(documents, list):
        return documents
    minted = []
    for index, document in enumerate(documents):
        if isinstance(document, dict) and isinstance(document.get("uid"), str):
            try:
                document = {**document, "uid": mint_uid(document["uid"])}
            except ValueError as exc:
                raise InputError(f"documents[{index}].uid", str(exc)) from None
        minted.append(document)
    return minted


# -- /similarity/start with aikon's body ------------------------------------------------------------------
def is_aikon_similarity(body: dict) -> bool:
    """Whether a /similarity/start body is aikon's: a `crops` field, or one of aikon-api's similarity
    parameters. This API's own similarity clients send neither (the demo refuses both as unknown)."""
    if "crops" in body:
        return True
    try:
        params = _parameters(body)
    except InputError:
        return False
    return isinstance(params, dict) and not AIKON_SIMILARITY.isdisjoint(params)


def similarity_start_fields(demo: Demo, body: dict) -> dict:
    """aikon-api's similarity /start as this API's. `algorithm` (cosine or segswap: either way this
    demo retrieves candidates and verifies them geometrically); `feat_net`: an installed backbone (file
    or stem), or `local`; `cosine_n_filter` (or `segswap_n` for segswap) is `topk`; `transpositions`
    keep their names; the switches of aikon's form are dropped; `skip_pairs` is refused rather than
    ignored. A non-empty `crops` (aikon-demo sends the boxes of one of its regions tasks) are the crops
    of the regions job here that made them: they become the items (`regions_job`), and the documents
    are not compared as whole pages, as aikon-api compared only the crops."""
    params = _parameters(body)
    if isinstance(params, dict):
        params = dict(params)
        algorithm = params.pop("algorithm", None) or "cosine"
        if algorithm not in ALGORITHMS:
            raise InputError("parameters.algorithm", f"use {' or '.join(ALGORITHMS)}")
        feat_net = params.pop("feat_net", None)
        if feat_net == LOCAL:
            params.setdefault("feature", LOCAL)
        elif feat_net:
            model = model_file(demo, str(feat_net))
            if model not in demo.models():
                installed = ", ".join([LOCAL, *(m for m in demo.models() if m != LOCAL)])
                raise InputError("parameters.feat_net", f"no backbone {feat_net!r} here (none is downloaded); "
                                                        f"use one of {installed}")
            params["model"] = model
        topk = params.pop("cosine_n_filter", None)
        segswap_n = params.pop("segswap_n", None)
        if algorithm == "segswap" and segswap_n is not None:
            topk = segswap_n
        if topk is not None:
            params.setdefault("topk", topk)
        if params.pop("skip_pairs", None):
            raise InputError("parameters.skip_pairs", "not supported here: send the documents to compare")
        for switch in ("cosine_preprocessing", "segswap_prefilter", "use_transpositions", "client_id"):
            params.pop(switch, None)
    fields = {key: body[key] for key in ("experiment_id", "notify_url") if key in body}
    crops = _form_json(body.get("crops"), "crops", None)
    if crops:
        if not isinstance(params, dict):
            raise InputError("parameters", "must be an object")
        if params.get("regions_job"):
            raise InputError("crops", "send crops or parameters.regions_job, not both")
        params["regions_job"] = regions_job_of(crops)
    elif "documents" in body:
        fields["documents"] = mint_documents(body["documents"])
    fields["parameters"] = params
    return fields


def regions_job_of(crops: Any) -> str:
    """The succeeded regions job whose crops these are (aikon's `crops`: [{doc_uid, source, crops:
    [{crop_id, relative}]}]): the one that cut every crop sent, with the same box, and no other on
    those documents; the newest of several. InputError naming the field when none is."""
    if not isinstance(crops, list):
        raise InputError("crops", "must be a list of {doc_uid, source, crops}")
    wanted: dict[str, dict[str, tuple[float, ...]]] = {}
    for i, page in enumerate(crops):
        if not isinstance(page, dict) or not isinstance(page.get("doc_uid"), str):
            raise InputError(f"crops[{i}].doc_uid", "must be the uid of a document")
        if not isinstance(page.get("crops", []), list):
            raise InputError(f"crops[{i}].crops", "must be a list of {crop_id, relative}")
        try:
            doc = mint_uid(page["doc_uid"])
        except ValueError as exc:
            raise InputError(f"crops[{i}].doc_uid", str(exc)) from None
        for j, crop in enumerate(page.get("crops", [])):
            box = _box(crop.get("relative")) if isinstance(crop, dict) else None
            if box is None or not isinstance(crop.get("crop_id"), str) or not SAFE_NAME.match(crop["crop_id"]):
                raise InputError(f"crops[{i}].crops[{j}]", "must be {crop_id, relative: {x1, y1, x2, y2}}")
            wanted.setdefault(doc, {})[crop["crop_id"]] = box
    if not wanted:
        raise InputError("crops", "no crop in it")
    cfg = services().cfg
    root = cfg.results_folder / REGIONS
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if is_tracking_id(folder.name) and all((folder / doc / "annotations.json").is_file() for doc in wanted) \
                and _same_crops(folder, wanted):
            job = read_finished(cfg, REGIONS, folder.name)
            if job is not None and job.state == SUCCESS:
                found.append(((folder / JOB_FILE).stat().st_mtime, folder.name))
    if not found:
        raise InputError("crops", "these are not the crops of a finished regions job here: run the regions "
                                  "task (region_extraction) on these documents first, or send "
                                  "parameters.regions_job")
    return max(found)[1]


def _box(relative: Any) -> tuple[float, ...] | None:
    """(x1, y1, x2, y2) of aikon's relative box (x1..y2, or x, y, width, height); None if it is neither."""
    if not isinstance(relative, dict):
        return None
    try:
        if "x1" in relative:
            return tuple(float(relative[k]) for k in ("x1", "y1", "x2", "y2"))
        x, y = float(relative["x"]), float(relative["y"])
        return x, y, x + float(relative["width"]), y + float(relative["height"])
    except (KeyError, TypeError, ValueError):
        return None


def _same_crops(folder: Path, wanted: dict[str, dict[str, tuple[float, ...]]]) -> bool:
    """Whether the regions job in `folder` cut exactly the `wanted` crops of each of those documents,
    with the same boxes (the same page cut by another model or run has other boxes, often the same ids)."""
    for doc, boxes in wanted.items():
        try:
            pages = json.loads((folder / doc / "annotations.json").read_text())
        except (OSError, ValueError):
            return False
        made = {str(c.get("crop_id")): _box(c.get("relative"))
                for page in pages if isinstance(page, dict) for c in page.get("crops", []) if isinstance(c, dict)}
        if set(made) != set(boxes) or not all((folder / doc / "crops" / f"{cid}.jpg").is_file() for cid in boxes):
            return False
        for cid, box in boxes.items():
            theirs = made[cid]
            if theirs is None or any(abs(a - b) > BOX_TOLERANCE for a, b in zip(box, theirs, strict=True)):
                return False
    return True


def aikon_scores(folder: Path) -> dict:
    """A similarity job's pairs.json as aikon-api's `<dataset>-scores.json`: `index.images` (id: the
    image name, or the crop id for a regions job's crop; doc_uid: the uid the client sent), `pairs` as
    [index a, index b, score, transposition of a, of b] (a mirrored match: b's flip), `parameters`."""
    data = json.loads((folder / "pairs.json").read_text())
    params = data.get("parameters") or {}
    transpositions = list(params.get("transpositions") or ["none"])
    flip = next((k for k, t in enumerate(transpositions) if t in ("hflip", "vflip")), 0)
    items = data.get("items") or []
    position = {item["id"]: k for k, item in enumerate(items)}
    images = [{"id": item["image"], "src": item["image"], "path": item["id"], "doc_uid": client_uid(item["doc_uid"]),
               "metadata": {"crop": ",".join(f"{v:0.3f}" for v in item["crop"]["bbox"])}
               if isinstance((item.get("crop") or {}).get("bbox"), list) else None} for item in items]
    pairs = [[position[p["a"]], position[p["b"]], round(float(p["score"]), 3), 0,
              flip if (p.get("transform") or {}).get("mirror") else 0]
             for p in data.get("pairs") or [] if p.get("a") in position and p.get("b") in position]
    sources = {uid: {"uid": uid} for uid in dict.fromkeys(image["doc_uid"] for image in images)}
    summary = data.get("summary") or {}
    return {"parameters": {"algorithm": "local features", "topk": params.get("topk"),
                           "feat_net": summary.get("backbone") or LOCAL, "raw_transpositions": transpositions},
            "index": {"sources": sources, "images": images, "transpositions": transpositions}, "pairs": pairs}


# -- /region_extraction/<id>/status -----------------------------------------------------------------------
def aikon_log(job: Job, errors: list[dict], lines: list[str]) -> dict:
    """The job's log as aikon-api's status gave it: `status`, `infos` (the last lines), `progress`
    ([{context, current, total}] while it runs) and `errors` (strings), which aikon-demo's progress
    view and tracker read."""
    log: dict[str, Any] = {"status": AIKON_STATUS.get(job.state, job.state), "id": job.tracking_id}
    if lines:
        log["infos"] = lines[-LOG_INFOS:]
    if job.state == STARTED and job.total:
        log["progress"] = [{"context": "Processing images", "current": job.done, "total": job.total}]
    messages = [_error_text(error) for error in errors]
    if job.state == FAILURE and job.error:
        messages.append(job.error)
    if messages:
        log["errors"] = messages
    return log


def _error_text(error: dict) -> str:
    where = "/".join(str(error[key]) for key in ("doc_uid", "image") if error.get(key))
    message = str(error.get("message", error))
    return f"{where}: {message}" if where else message


# -- /region_extraction/models --------------------------------------------------------------------------
def aikon_models(demo: Demo) -> dict[str, dict]:
    """{stem: {name, model, desc}} as aikon-api listed its models (`model` is what /start takes),
    plus the file and its date."""
    found = demo.models()
    answer = {}
    for stem, file in model_stems(demo).items():
        info = found[file]
        entry = demo.catalog_entry(file)
        classes = info.get("classes") or []
        desc = (entry.description if entry is not None else "") or (
            f"classes: {', '.join(map(str, classes))}" if classes else "No description available")
        answer[stem] = {"name": entry.name if entry is not None else stem, "model": stem, "desc": desc,
                        "file": file, "date": info.get("updated")}
    return answer


# -- datasets ---------------------------------------------------------------------------------------------
def client_dataset(body: dict, every_document: bool) -> dict:
    """A dataset answer with the client uids of minted documents and, for those (or for every
    document), the aikon zip as `download`."""
    documents = []
    for document in body.get("documents", []):
        if every_document or is_minted(document["uid"]):
            document = {**document, "uid": client_uid(document["uid"]), "download": f"{document['url']}/images.zip"}
        documents.append(document)
    return {**body, "documents": documents}


def images_zip(doc_type: str, key: str) -> Response:
    """The document's images as aikon-api zipped a document: `images/<name><ext>`, and `images.json`
    listing {id, src, path, metadata} (id: the name annotations give as `source`). Written to an
    unnamed temporary file (never left behind), stored (images are compressed already) and seekable,
    so every entry's sizes are in its header for a client that unzips as it downloads."""
    cfg = services().cfg
    document = datasets.document(cfg, doc_type, key, "")
    handle = tempfile.TemporaryFile(prefix=TEMP_PREFIX, dir=cfg.datasets_folder)
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        listed = []
        for image in document["images"]:
            path = datasets.image_file(cfg, doc_type, key, image["name"])
            name = f"images/{image['name']}{datasets.suffix(path)}"
            archive.write(path, name)
            listed.append({"id": image["name"], "src": image.get("source_url") or image["name"], "path": name,
                           "metadata": {"canvas": image["canvas"]} if image.get("canvas") else None})
        archive.writestr("images.json", json.dumps(listed))
    handle.seek(0)
    return send_file(handle, mimetype="application/zip", as_attachment=True,
                     download_name=f"{client_uid(document['uid'])}.zip")


def delete_document(doc_id: str, model_name: str) -> dict:
    """aikon's `<doc_id>/delete`: without a model, forget the document's dataset records (and their
    zips): the images stay in the cache until the sweeper takes them. With `model_name` (a file or
    its stem), delete the document's results in the ended regions jobs run with that model. Results
    are deleted, never moved; a document this API never recorded is a 404."""
    cfg = services().cfg
    try:
        uid = mint_uid(doc_id)
    except ValueError:
        raise NotFound(f"no document {doc_id!r}") from None
    records = [path for doc_type in DOCUMENT_TYPES
               for path in sorted((cfg.datasets_folder / "documents" / doc_type).glob(f"{uid}*.json"))
               if path.stem == uid or (path.stem.startswith(uid + "-") and is_tracking_id(path.stem[len(uid) + 1:]))]
    if not records:
        raise NotFound(f"no document {doc_id!r}")
    if not model_name:
        for record in records:
            (cfg.datasets_folder / "zips" / record.parent.name / f"{record.stem}.zip").unlink(missing_ok=True)
            record.unlink(missing_ok=True)
        return {"cleared_document": 1}
    wanted = Path(model_name).stem
    cleared = 0
    root = cfg.results_folder / REGIONS
    for folder in sorted(root.glob(f"*/{uid}")) if root.is_dir() else []:
        job = read_finished(cfg, REGIONS, folder.parent.name)
        if job is None or Path(str(job.params.get("model", ""))).stem != wanted:
            continue
        trash = folder.with_name(f"{TEMP_PREFIX}deleted-{folder.name}")  # gone at once, then deleted
        folder.rename(trash)
        shutil.rmtree(trash)
        cleared += 1
    return {"cleared_annotations": cleared}


def document_results(app: str, tracking_id: str, doc_uid: str) -> Any:
    """One document's results of an ended job, as `results_url` promised them: for regions its pages'
    annotations, with `doc_uid` the uid the client sent; for similarity, `dataset`: every score in
    aikon-api's shape."""
    job = routes.get_job(app, tracking_id)
    if job.state != SUCCESS or not SAFE_NAME.match(doc_uid):
        raise NotFound(f"no results for document {doc_uid!r} in job {tracking_id}")
    folder = job_folder(services().cfg, app, tracking_id)
    if doc_uid == DATASET_PAIR and (folder / "pairs.json").is_file():
        return aikon_scores(folder)
    path = safe_join(folder, f"{doc_uid}/annotations.json")
    if not path.is_file():
        raise NotFound(f"no results for document {doc_uid!r} in job {tracking_id}")
    pages = json.loads(path.read_text())
    for page in pages if isinstance(pages, list) else []:
        if isinstance(page, dict) and isinstance(page.get("doc_uid"), str):
            page["doc_uid"] = client_uid(page["doc_uid"])
    return pages


# -- wiring -----------------------------------------------------------------------------------------------
def blueprint(demos: dict[str, Demo]) -> Blueprint:
    bp = Blueprint("aikon", __name__)
    for name in demos:
        path = "/" + DOCUMENT_RESULT_PATH.format(app=name, tracking_id="<tracking_id>", doc_uid="<doc_uid>")
        bp.add_url_rule(path, f"{name}_document_results", functools.partial(_document_results_view, name),
                        methods=["GET"])

    @bp.get("/datasets/dataset/<uid>")
    def dataset(uid: str):
        return jsonify(client_dataset(datasets.dataset(services().cfg, uid, _base_url()), every_document=True))

    @bp.get("/datasets/document/<doc_type>/<uid>/images.zip")
    def dataset_images_zip(doc_type: str, uid: str):
        return images_zip(doc_type, uid)

    if REGIONS not in demos:
        return bp
    demo = demos[REGIONS]

    @bp.post(f"/{ALIAS}/start")
    def start():
        body, uploads = routes.read_request()
        return aikon_start(demo, start_fields(demo, body), uploads)

    @bp.get(f"/{ALIAS}/<tracking_id>/status")
    def status(tracking_id: str):
        job = routes.get_job(REGIONS, tracking_id)
        body = routes.status_body(job)
        body["log"] = aikon_log(job, body["errors"], body["log"])
        return jsonify(body)

    @bp.get(f"/{ALIAS}/models")
    def models():
        return jsonify(aikon_models(demo))

    for prefix in (ALIAS, REGIONS):
        bp.add_url_rule(f"/{prefix}/<doc_id>/delete", f"{prefix}_delete", _delete_view, methods=["POST"])
    return bp


def _base_url() -> str:
    """The API's URL as the client sees it (PUBLIC_URL, else this request's), as routes.py builds it."""
    return (services().cfg.public_url or request.host_url).rstrip("/")


def _document_results_view(app: str, tracking_id: str, doc_uid: str):
    return jsonify(document_results(app, tracking_id, doc_uid))


def _delete_view(doc_id: str):
    return jsonify(delete_document(doc_id, request.args.get("model_name", "").strip()))


def aikon_start(demo: Demo, fields: dict, uploads: list) -> Response:
    """A job started from a body already translated to this API's fields, answered as aikon-api
    answered: 200 (its clients check for 200), not 202."""
    job, replayed = lifecycle.start_job(services(), lifecycle.StartRequest(
        demo, fields, uploads, request.host_url, request.headers.get("Idempotency-Key", "").strip()))
    response = routes.start_response(job, replayed)
    response.status_code = 200
    return response


def install(app: Flask, demos: dict[str, Demo]) -> None:
    """Add the aikon routes; `/region_extraction/*` for every other regions rule; and the client
    uids of minted documents at `/datasets/<uid>`. Called once the demos' blueprints are registered."""
    app.register_blueprint(blueprint(demos))
    if REGIONS in demos:
        taken = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods or ()}
        for rule in list(app.url_map.iter_rules()):
            if not rule.endpoint.startswith(f"{REGIONS}.") or not rule.rule.startswith(f"/{REGIONS}/"):
                continue
            path = f"/{ALIAS}/" + rule.rule.removeprefix(f"/{REGIONS}/")
            methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
            if any((path, method) in taken for method in methods):  # start, status, models: aikon's own
                continue
            app.add_url_rule(path, f"aikon.{ALIAS}.{rule.endpoint.removeprefix(REGIONS + '.')}",
                             app.view_functions[rule.endpoint], methods=methods)

    def dataset(uid: str):
        """/datasets/<uid> as before, but for the documents of aikon clients (minted uids)."""
        return jsonify(client_dataset(datasets.dataset(services().cfg, uid, _base_url()), every_document=False))

    app.view_functions["platform.dataset"] = dataset

    if SIMILARITY in demos:
        endpoint = f"{SIMILARITY}.start"
        native = app.view_functions[endpoint]
        demo = demos[SIMILARITY]

        @functools.wraps(native)
        def similarity_start():
            """aikon's body translated and answered 200, as aikon-api answered; any other as before."""
            if request.mimetype != "application/json":
                return native()
            body, uploads = routes.read_request()
            if not is_aikon_similarity(body):
                return native()
            return aikon_start(demo, similarity_start_fields(demo, body), uploads)

        app.view_functions[endpoint] = similarity_start
