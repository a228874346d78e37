"""`PageWriter`: the files of a regions job, page by page, then per document.

Layout in the job folder, per document uid:
    <doc>/annotations/<page>.json   one page, discover-api compatible
    <doc>/labels/<page>.txt         YOLO labels (class cx cy w h, normalised)
    <doc>/crops/<page>-<i>.jpg      each box, when `crops` is on (crop_id = <page>-<i>)
    <doc>/previews/<page>.jpg       the page with boxes and labels drawn
    <doc>/annotations.json          every page of the document, at the end
    <doc>/iiif/annotation-list.json and annotation-page.json  for IIIF canvases (v2 and W3C/v3)

Every file is made while the job runs (eagerly), none on first request: the platform builds the
result zip before the job is said to have succeeded, so a lazy file would be made then anyway, on
the job's critical path instead of beside inference; the API checks that a file exists before it
hands it to nginx (X-Accel-Redirect); and the demos that chain on a regions job read its crops
from disk. The files are made cheaply instead, on this writer's thread while the model works on
the next pages: the preview is drawn on the page as it was decoded for the model (a JPEG decoded
at a DCT scale with its long side >= PREVIEW_MAX_SIDE, so no full-resolution pixels are touched)
and is that page itself, encoded once, when it has nothing to draw and the right size; the
full-resolution page is decoded only for a page that has boxes to crop, once; and a document's
files (annotations.json, IIIF lists) are written as soon as its last page is, not all after the
last page of the job.
"""
from __future__ import annotations

import time
from collections import Counter

from .common import Detection
from .outputs import annotation, crop_entry, crop_image, iiif_annotations, preview, yolo_lines


class PageWriter:
    def __init__(self, job, model, *, crops: bool, padding: int, previews: bool = True):
        self.job = job
        self.model = model
        self.crops = crops
        self.previews = previews
        self.padding = padding
        self.annotations: dict[str, list[dict]] = {}
        self.canvases: dict[str, list[tuple[dict, tuple[int, int], list[dict]]]] = {}
        self.class_counts: Counter = Counter()
        self.order: dict[int, int] = {}  # pages may be written out of order (batches by aspect ratio)
        # pages each document has; one whose pages are all written gets its files at once (a
        # page that failed to load never comes: its document's files wait for `finish`)
        self.pages_of: Counter = Counter(source.doc_uid for source in job.sources)
        self.files: dict[str, dict] = {}

    def write_page(self, item, detections: list[Detection]) -> float:
        """Write one page's files; returns the seconds it took. `item` is the LoadedImage, maybe
        decoded reduced (`item.scale`); `detections` are in full-resolution pixels (`item.size`)."""
        start = time.perf_counter()
        job, src, size = self.job, item.source, item.size
        doc, page = src.doc_uid, src.name
        entries = [crop_entry(d, f"{page}-{i}", self.model.label(d.cls), *size)
                   for i, d in enumerate(sorted(detections, key=lambda d: (d.y1, d.x1)))]
        entries = [e for e in entries if e["absolute"]["width"] > 0 and e["absolute"]["height"] > 0]
        record = annotation(page, doc, size, entries)
        if src.canvas:
            record["canvas"] = src.canvas.get("id")
            self.canvases.setdefault(doc, []).append((src.canvas, size, entries))
        job.write_json(f"{doc}/annotations/{page}.json", record)
        job.write(f"{doc}/labels/{page}.txt", yolo_lines(entries))
        if self.crops and entries:
            full = item.full()  # the page itself unless it was decoded reduced
            for entry in entries:
                with job.open(f"{doc}/crops/{entry['crop_id']}.jpg") as handle:
                    crop_image(full, entry, self.padding).save(handle, "JPEG", quality=90)
            del full
        if self.previews:
            with job.open(f"{doc}/previews/{page}.jpg") as handle:
                preview(item.image, entries, size).save(handle, "JPEG", quality=85)
        self.annotations.setdefault(doc, []).append(record)
        self.order[id(record)] = src.index
        self.class_counts.update(e["class"] for e in entries)
        if self.pages_of[doc] and len(self.annotations[doc]) >= self.pages_of[doc]:
            self.files[doc] = self.write_document(doc)  # (again, should a page come that was not counted)
        return time.perf_counter() - start

    def finish(self) -> dict[str, dict]:
        """The files of the documents not written yet; returns every document's URLs by uid, in
        the order their first pages were written."""
        return {doc: self.files.get(doc) or self.write_document(doc) for doc in self.annotations}

    def write_document(self, doc: str) -> dict:
        """One document's files (its pages in order); returns their URLs."""
        records = self.annotations[doc]
        records.sort(key=lambda record: self.order[id(record)])
        self.job.write_json(f"{doc}/annotations.json", records)
        files = {"annotations": self.job.url(f"{doc}/annotations.json"),
                 "previews": [self.job.url(f"{doc}/previews/{r['source']}.jpg") for r in records]
                 if self.previews else []}
        if doc in self.canvases:
            list_id = self.job.url(f"{doc}/iiif")
            annotation_list, annotation_page = iiif_annotations(self.canvases[doc], list_id)
            self.job.write_json(f"{doc}/iiif/annotation-list.json", annotation_list)
            self.job.write_json(f"{doc}/iiif/annotation-page.json", annotation_page)
            files["iiif_annotation_list"] = self.job.url(f"{doc}/iiif/annotation-list.json")
            files["iiif_annotation_page"] = self.job.url(f"{doc}/iiif/annotation-page.json")
        return files
