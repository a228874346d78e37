"""Datasets: the images a job read, kept findable so a client can fetch them again.

discover-demo cuts crops on its side from the images the API downloaded, so the API tells it
where they are: a job's dataset (uid = the job's tracking id) lists its documents, and each
document (by type and uid) lists its images, served from the input cache. The worker records
both when a job succeeds:

    DATA_FOLDER/datasets/<tracking_id>.json              {"uid", "app", "documents": [{type, uid, src}]}
    DATA_FOLDER/datasets/documents/<type>/<uid>.json     {"type", "uid", "src", "images": [...]}
    DATA_FOLDER/datasets/zips/<type>/<uid>.zip           built on first download
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from .config import Config
from .errors import NotFound
from .inputs import DOCUMENT_TYPES, Document, Fetcher, ImageSource
from .inputs.names import SAFE_NAME
from .storage import atomic_open, atomic_write, is_tracking_id


def _folder(cfg: Config) -> Path:
    return cfg.data_folder / "datasets"


def _document_file(cfg: Config, doc_type: str, uid: str) -> Path:
    if doc_type not in DOCUMENT_TYPES or not SAFE_NAME.match(uid):
        raise NotFound(f"no document {doc_type}/{uid}")
    return _folder(cfg) / "documents" / doc_type / f"{uid}.json"


def record(cfg: Config, tracking_id: str, app: str, documents: list[dict], sources: list[ImageSource],
           fetcher: Fetcher) -> None:
    """Remember the job's documents and where each of their images lies on disk."""
    client_documents = [Document.from_dict(d) for d in documents]
    client_documents = [d for d in client_documents if d.type in DOCUMENT_TYPES]  # not internal "dir"
    atomic_write(_folder(cfg) / f"{tracking_id}.json", json.dumps({
        "uid": tracking_id, "app": app,
        "documents": [{"type": d.type, "uid": d.uid, "src": d.src} for d in client_documents]}))
    by_doc: dict[str, list[ImageSource]] = {}
    for source in sources:
        by_doc.setdefault(source.doc_uid, []).append(source)
    for doc in client_documents:
        images = []
        for source in by_doc.get(doc.uid, []):
            path = source.path or (fetcher.cache_path(source.url, "image") if source.url else None)
            if path is None or not Path(path).is_file():
                continue  # never downloaded (an error of that image)
            images.append({"name": source.name, "index": source.index, "file": str(Path(path).resolve()),
                           "source_url": source.url, "canvas": source.canvas})
        atomic_write(_document_file(cfg, doc.type, doc.uid), json.dumps(
            {"type": doc.type, "uid": doc.uid, "src": doc.src, "images": images}))


def dataset(cfg: Config, uid: str, base_url: str) -> dict:
    path = _folder(cfg) / f"{uid}.json"
    if not is_tracking_id(uid) or not path.is_file():
        raise NotFound(f"no dataset {uid!r}")
    data = json.loads(path.read_text())
    for doc in data["documents"]:
        doc["url"] = f"{base_url}/datasets/document/{doc['type']}/{doc['uid']}"
        doc["download"] = f"{doc['url']}/download"
    return {"uid": uid, "url": f"{base_url}/datasets/{uid}", "app": data.get("app"), "documents": data["documents"]}


def document(cfg: Config, doc_type: str, uid: str, base_url: str) -> dict:
    data = _read_document(cfg, doc_type, uid)
    url = f"{base_url}/datasets/document/{doc_type}/{uid}"
    images = [{"name": i["name"], "index": i["index"], "url": f"{url}/image/{i['name']}",
               "source_url": i["source_url"], **({"canvas": i["canvas"]} if i.get("canvas") else {})}
              for i in data["images"]]
    return {"type": doc_type, "uid": uid, "src": data["src"], "url": url, "download": f"{url}/download",
            "images": images}


def image_file(cfg: Config, doc_type: str, uid: str, name: str) -> Path:
    """The file of one image, which must lie in DATA_FOLDER (cache or uploads)."""
    for image in _read_document(cfg, doc_type, uid)["images"]:
        if image["name"] == name:
            path = Path(image["file"])
            if path.is_file() and path.resolve().is_relative_to(cfg.data_folder.resolve()):
                return path
            break
    raise NotFound(f"no image {name!r} in document {doc_type}/{uid}")


def document_zip(cfg: Config, doc_type: str, uid: str) -> Path:
    """A zip of the document's images (`<name>.<ext>`), built once, rebuilt when the document changes."""
    source = _document_file(cfg, doc_type, uid)
    data = _read_document(cfg, doc_type, uid)
    target = _folder(cfg) / "zips" / doc_type / f"{uid}.zip"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    with atomic_open(target) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for image in data["images"]:
            path = Path(image["file"])
            if path.is_file():
                archive.write(path, f"{image['name']}{suffix(path)}")
    return target


def suffix(path: Path) -> str:
    """Cached downloads have no extension: name them by their first bytes."""
    if path.suffix:
        return path.suffix.lower()
    head = path.read_bytes()[:12]
    for magic, suffix in ((b"\xff\xd8", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"II*\x00", ".tif"),
                          (b"MM\x00*", ".tif"), (b"RIFF", ".webp"), (b"BM", ".bmp")):
        if head.startswith(magic):
            return suffix
    return ".jp2" if b"jP" in head else ".img"


def _read_document(cfg: Config, doc_type: str, uid: str) -> dict:
    path = _document_file(cfg, doc_type, uid)
    if not path.is_file():
        raise NotFound(f"no document {doc_type}/{uid}")
    return json.loads(path.read_text())
