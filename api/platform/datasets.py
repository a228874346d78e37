"""Datasets: the images a job read, kept findable so a client can fetch them again.

discover-demo cuts crops on its side from the images the API downloaded, so the API tells it
where they are: a job's dataset (uid = the job's tracking id) lists its documents, and each
document lists its images, served from the input cache or the job's uploads. The worker records
both when a job succeeds:

    DATA_FOLDER/datasets/<tracking_id>.json          {"uid", "app", "documents": [{type, uid, src, key}]}
    DATA_FOLDER/datasets/documents/<type>/<key>.json {"type", "uid", "src", "dataset", "images": [...]}
    DATA_FOLDER/datasets/zips/<type>/<key>.zip       built on first download

A document's `key` (its URL: /datasets/document/<type>/<key>) is its uid while that names the
same images for every job (a URL's downloads are shared through the cache), so a client's uids
keep working across jobs; a job whose document of that uid holds other images (two jobs each
uploading its own `scan.png`) gets `<uid>-<tracking_id>`, so one job never replaces another's.
Only files whose first bytes show an image are recorded (never an uploaded HTML or SVG).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

from .config import Config
from .errors import NotFound
from .inputs import DOCUMENT_TYPES, Document, Fetcher, ImageSource
from .inputs.names import MAX_NAME, SAFE_NAME
from .storage import TEMP_PREFIX, atomic_open, atomic_write, is_tracking_id

# First bytes of the image formats recorded, and the extension they are served with.
IMAGE_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
               (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"), (b"BM", ".bmp"),
               (b"\x00\x00\x00\x0cjP  \r\n\x87\n", ".jp2"), (b"\xffO\xffQ", ".jp2"))
NOT_AN_IMAGE = ".bin"


def _folder(cfg: Config) -> Path:
    return cfg.datasets_folder


def _document_file(cfg: Config, doc_type: str, key: str) -> Path:
    if doc_type not in DOCUMENT_TYPES or not SAFE_NAME.match(key):
        raise NotFound(f"no document {doc_type}/{key}")
    return _folder(cfg) / "documents" / doc_type / f"{key}.json"


def record(cfg: Config, tracking_id: str, app: str, documents: list[dict], sources: list[ImageSource],
           fetcher: Fetcher) -> None:
    """Remember the job's documents and where each of their images lies on disk."""
    client_documents = [Document.from_dict(d) for d in documents]
    client_documents = [d for d in client_documents if d.type in DOCUMENT_TYPES]  # not internal "dir"
    by_doc: dict[str, list[ImageSource]] = {}
    for source in sources:
        by_doc.setdefault(source.doc_uid, []).append(source)
    listed = []
    for doc in client_documents:
        record = {"type": doc.type, "uid": doc.uid, "src": doc.src, "dataset": tracking_id,
                  "images": _images(by_doc.get(doc.uid, []), fetcher)}
        listed.append({"type": doc.type, "uid": doc.uid, "src": doc.src, "key": _store(cfg, record)})
    atomic_write(_folder(cfg) / f"{tracking_id}.json", json.dumps({"uid": tracking_id, "app": app,
                                                                  "documents": listed}))


def _images(sources: list[ImageSource], fetcher: Fetcher) -> list[dict]:
    """The document's images that lie on disk and are images (not a file that failed, nor an
    upload whose bytes are HTML, SVG or anything a browser could run)."""
    images = []
    for source in sources:
        path = source.path or (fetcher.cache_path(source.url, "image") if source.url else None)
        if path is None or not Path(path).is_file() or suffix(Path(path)) == NOT_AN_IMAGE:
            continue
        images.append({"name": source.name, "index": source.index, "file": str(Path(path).resolve()),
                       "source_url": source.url, "canvas": source.canvas})
    return images


def _store(cfg: Config, record: dict) -> str:
    """Write the document's record under its uid when that is free or names the same images, else
    under `<uid>-<tracking_id>`; returns the key used. Taking the uid is atomic (a link that fails
    if another job took it first), so two jobs ending together never overwrite each other."""
    uid, tracking_id = record["uid"], record["dataset"]
    target = _document_file(cfg, record["type"], uid)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(record)
    if _take(target, data) or _same_images(target, record):
        return uid
    key = f"{uid[:MAX_NAME - len(tracking_id) - 1]}-{tracking_id}"
    atomic_write(_document_file(cfg, record["type"], key), data)
    return key


def _take(target: Path, data: str) -> bool:
    """Create `target` holding `data` unless it exists (whole or not at all); whether it did."""
    fd, staged = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.chmod(staged, 0o644)
        os.link(staged, target)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(staged)


def _same_images(target: Path, record: dict) -> bool:
    """Whether the record at `target` names the same image files as `record` (then `record`, the
    latest, replaces it: same images, fresher job)."""
    try:
        existing = json.loads(target.read_text())
    except (OSError, ValueError):
        existing = {}
    if [i["file"] for i in existing.get("images", [])] != [i["file"] for i in record["images"]]:
        return False
    atomic_write(target, json.dumps(record))
    return True


def dataset(cfg: Config, uid: str, base_url: str) -> dict:
    path = _folder(cfg) / f"{uid}.json"
    if not is_tracking_id(uid) or not path.is_file():
        raise NotFound(f"no dataset {uid!r}")
    data = json.loads(path.read_text())
    documents = []
    for doc in data["documents"]:
        url = f"{base_url}/datasets/document/{doc['type']}/{doc.get('key', doc['uid'])}"
        documents.append({"type": doc["type"], "uid": doc["uid"], "src": doc["src"], "url": url,
                          "download": f"{url}/download"})
    return {"uid": uid, "url": f"{base_url}/datasets/{uid}", "app": data.get("app"), "documents": documents}


def document(cfg: Config, doc_type: str, key: str, base_url: str) -> dict:
    """The document recorded under `key` (its uid, or `<uid>-<tracking_id>`): its images' URLs."""
    data = _read_document(cfg, doc_type, key)
    url = f"{base_url}/datasets/document/{doc_type}/{key}"
    images = [{"name": i["name"], "index": i["index"], "url": f"{url}/image/{i['name']}",
               "source_url": i["source_url"], **({"canvas": i["canvas"]} if i.get("canvas") else {})}
              for i in data["images"]]
    return {"type": doc_type, "uid": data.get("uid", key), "src": data["src"], "url": url,
            "download": f"{url}/download", "images": images}


def image_file(cfg: Config, doc_type: str, key: str, name: str) -> Path:
    """The file of one image, which must lie in DATA_FOLDER (cache or uploads)."""
    for image in _read_document(cfg, doc_type, key)["images"]:
        if image["name"] == name:
            path = Path(image["file"])
            if path.is_file() and path.resolve().is_relative_to(cfg.data_folder.resolve()):
                return path
            break
    raise NotFound(f"no image {name!r} in document {doc_type}/{key}")


def document_zip(cfg: Config, doc_type: str, key: str) -> Path:
    """A zip of the document's images (`<name>.<ext>`), built once, rebuilt when the document changes."""
    source = _document_file(cfg, doc_type, key)
    data = _read_document(cfg, doc_type, key)
    target = _folder(cfg) / "zips" / doc_type / f"{key}.zip"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    with atomic_open(target) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for image in data["images"]:
            path = Path(image["file"])
            if path.is_file():
                archive.write(path, f"{image['name']}{suffix(path)}")
    return target


def suffix(path: Path) -> str:
    """The extension the file's first bytes show (`.jpg`, `.png`, ...), never the name's (an upload
    named `x.png` may hold HTML); `.bin` when they show no image format recorded here."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in IMAGE_MAGIC if head.startswith(magic)), NOT_AN_IMAGE)


def _read_document(cfg: Config, doc_type: str, key: str) -> dict:
    path = _document_file(cfg, doc_type, key)
    if not path.is_file():
        raise NotFound(f"no document {doc_type}/{key}")
    return json.loads(path.read_text())
