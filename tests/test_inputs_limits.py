"""Inputs under hostile sizes and shapes: the image feed's memory budget, PDF pages too large for
MAX_IMAGE_PIXELS, and malformed IIIF manifests (an error for that document, never for the job).
Every file is made here; downloads come from the local HTTP server on 127.0.0.1."""
from __future__ import annotations

import dataclasses
import json
import math
import threading

import pypdfium2 as pdfium
import pytest
from PIL import Image

from api.platform.inputs import (
    Document,
    DocumentError,
    Fetcher,
    ImageFeed,
    ImageSource,
    expand,
)
from api.platform.inputs import feed as feed_module
from api.platform.inputs import pdf as pdf_module
from tests.support.platform import json_of, png_bytes, wait_for


def feed_all(sources, fetcher, cfg, timeout: float = 60.0):
    """Every item of a feed, from a thread, so a feed that never ends fails the test instead of hanging it."""
    result: list = []
    with ImageFeed(sources, fetcher, cfg) as feed:
        reader = threading.Thread(target=lambda: result.extend(feed), daemon=True)
        reader.start()
        reader.join(timeout)
        assert not reader.is_alive(), f"the feed did not end; {len(result)} item(s) came"
        return result, feed


def grey_png(path, side: int, level: int):
    """A `side` x `side` PNG of one grey level: a few kB on disk, side² pixels once decoded."""
    Image.new("L", (side, side), level).save(path)
    return path


# -- the image feed: decoded bytes ahead within a budget ------------------------------------------

class DecodeSpy:
    """Wraps the feed's decode_image and tallies the bytes of decoded images the demo has not
    finished with: a measure of what the feed holds, taken outside the feed's own accounting."""

    def __init__(self, monkeypatch):
        self.real = feed_module.decode_image
        self.lock = threading.Lock()
        self.decoded = 0
        self.produced = 0
        self.finished = 0
        self.most_held = 0
        monkeypatch.setattr(feed_module, "decode_image", self)

    def __call__(self, path, cfg):
        image = self.real(path, cfg)
        with self.lock:
            self.decoded += 1
            self.produced += self.size(image)
            self.most_held = max(self.most_held, self.produced - self.finished)
        return image

    def done_with(self, image) -> None:
        with self.lock:
            self.finished += self.size(image)

    @staticmethod
    def size(image) -> int:
        return image.width * image.height * feed_module.RGB_PIXEL_BYTES


def test_feed_holds_decoded_bytes_within_the_budget_and_keeps_the_order(config, tmp_path, monkeypatch):
    side, count = 2500, 8  # 8 x 6 kB of PNG that decode to 25 MB each
    sources = [ImageSource("doc", f"p{i}", i, path=grey_png(tmp_path / f"p{i}.png", side, 20 * i))
               for i in range(count)]
    one = side * side * feed_module.RGB_PIXEL_BYTES
    limit = 2 * one + feed_module.decode_bytes(side, side, "L", False)  # in hand + one ahead + one decoding
    spy = DecodeSpy(monkeypatch)
    cfg = dataclasses.replace(config, prefetch_images=count, download_workers=4, decode_ahead_bytes=limit)
    with ImageFeed(sources, Fetcher(cfg), cfg) as feed:
        items = iter(feed)
        first = next(items)
        # The demo is busy with the first image: the feed decodes ahead until its budget is full
        # (then a thread waits for room), and without a budget it would go on to all 8.
        wait_for(lambda: spy.decoded >= 5 or (hasattr(feed, "budget") and feed.budget.waiting),
                 message="the feed to fill its room ahead")
        assert spy.decoded <= 3, f"{spy.decoded} images decoded while the demo holds the first"
        loaded = [first]
        spy.done_with(first.image)
        for item in items:
            loaded.append(item)
            spy.done_with(item.image)
        assert feed.budget.peak <= limit
    assert spy.most_held <= limit, f"{spy.most_held / 2**20:.0f} MiB decoded at once; budget {limit / 2**20:.0f} MiB"
    assert [item.source.index for item in loaded] == list(range(count))
    assert [item.error for item in loaded] == [None] * count
    assert [item.image.getpixel((side - 1, side - 1)) for item in loaded] == [(20 * i,) * 3 for i in range(count)]


def test_an_image_larger_than_the_budget_is_decoded_alone(config, tmp_path, monkeypatch):
    small, large = 200, 2000
    sides = [small, large, small, small]
    sources = [ImageSource("doc", f"p{i}", i, path=grey_png(tmp_path / f"p{i}.png", side, 10 * i))
               for i, side in enumerate(sides)]
    large_peak = feed_module.decode_bytes(large, large, "L", False)
    cfg = dataclasses.replace(config, prefetch_images=4, download_workers=4, decode_ahead_bytes=large_peak // 4)
    loaded, feed = feed_all(sources, Fetcher(cfg), cfg)
    assert [item.image.size for item in loaded] == [(side, side) for side in sides]
    assert feed.budget.peak == large_peak  # nothing else was held, or decoded, beside it
    assert feed.budget.held == 0 and feed.budget.waiting == 0


def test_images_that_fail_give_up_their_turn_so_the_feed_goes_on(config, http_server, tmp_path, monkeypatch):
    http_server.add("/good.png", png_bytes(), "image/png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    grey_png(tmp_path / "huge.png", 1100, 0)
    sources = [
        ImageSource("doc", "missing", 0, path=tmp_path / "missing.png"),
        ImageSource("doc", "404", 1, url=http_server.url("/nothing.png")),
        ImageSource("doc", "corrupt", 2, path=tmp_path / "corrupt.png"),
        ImageSource("doc", "huge", 3, path=tmp_path / "huge.png"),
        ImageSource("doc", "good", 4, url=http_server.url("/good.png")),
        ImageSource("doc", "none", 5),
    ]
    cfg = dataclasses.replace(config, prefetch_images=6, download_workers=3, max_image_pixels=1_000_000,
                              decode_ahead_bytes=1)  # every image decoded alone, in turn
    loaded, feed = feed_all(sources, Fetcher(cfg), cfg)
    assert [item.source.index for item in loaded] == list(range(6))
    assert [item.image is not None for item in loaded] == [False, False, False, False, True, False]
    assert "MAX_IMAGE_PIXELS" in loaded[3].error and "HTTP 404" in loaded[1].error
    assert feed.budget.held == 0


def test_a_later_turn_given_up_first_does_not_skip_an_earlier_one():
    """Turn 1's image fails (e.g. a missing file) while turn 0 still downloads: turn 0 must still get
    its room. Before, giving up turn 1 moved the turn past 0, and 0 waited for ever (a feed that
    hung under load, when downloads finish out of order)."""
    budget = feed_module.DecodeBudget(10)
    budget.pass_turn(1)
    granted = threading.Event()
    waiter = threading.Thread(target=lambda: budget.acquire(0, 5) and granted.set(), daemon=True)
    waiter.start()
    assert granted.wait(5), "turn 0 was skipped"
    assert budget.acquire(2, 5)  # turn 1 was given up: 2 follows 0 at once
    budget.close()


def test_close_wakes_the_threads_waiting_for_room(config, tmp_path, monkeypatch):
    sources = [ImageSource("doc", f"p{i}", i, path=grey_png(tmp_path / f"p{i}.png", 300, i)) for i in range(6)]
    cfg = dataclasses.replace(config, prefetch_images=6, download_workers=3, decode_ahead_bytes=1)
    feed = ImageFeed(sources, Fetcher(cfg), cfg)
    items = iter(feed)
    assert next(items).image is not None
    wait_for(lambda: feed.budget.waiting, message="a thread waiting for room")
    feed.close()
    wait_for(lambda: feed.budget.waiting == 0, timeout=5, message="the waiting threads to leave")
    assert list(items) == []


# -- PDF pages larger than MAX_IMAGE_PIXELS --------------------------------------------------------

def pdf_with_pages(path, sizes):
    """A real PDF (pdfium writes it) whose pages have these MediaBox sizes, in points."""
    pdf = pdfium.PdfDocument.new()
    for width, height in sizes:
        pdf.new_page(width, height)
    pdf.save(str(path))
    pdf.close()
    return path


@pytest.mark.parametrize("page", [(14400, 10000), (10000, 14400), (14399.7, 333.3), (1e6, 1e6),
                                  (12345.6, 7890.1), (30, 14400), (6000.5, 6000.5)])
def test_an_oversized_page_is_rendered_within_the_pixel_limit(config, tmp_path, page):
    cfg = dataclasses.replace(config, max_image_pixels=1_000_000, pdf_dpi=150)
    path = pdf_with_pages(tmp_path / "big.pdf", [page, (200, 100)])
    fetcher = Fetcher(cfg)
    loaded, _ = feed_all(expand(Document("pdf", "big", path=str(path)), fetcher, cfg), fetcher, cfg)
    assert [item.error for item in loaded] == [None, None]
    big, small = (item.image.size for item in loaded)
    assert big[0] * big[1] <= cfg.max_image_pixels
    # As large as fits, give or take the rounding of each side, and the page's shape kept.
    assert big[0] * big[1] >= cfg.max_image_pixels * (1 - 2 / min(big))
    assert math.isclose(big[0] / big[1], page[0] / page[1], rel_tol=2 / min(big))
    assert big == pdf_module.bitmap_size(*page, pdf_module.render_scale(*page, cfg))  # known before rendering
    assert small == (math.ceil(200 * 150 / 72), math.ceil(100 * 150 / 72))  # at PDF_DPI, untouched


def test_a_page_that_cannot_fit_fails_before_it_is_rendered(config, tmp_path):
    cfg = dataclasses.replace(config, max_image_pixels=100)
    path = pdf_with_pages(tmp_path / "thin.pdf", [(10, 10), (0.5, 14400)])  # 1 pixel wide: 14400 tall
    with pytest.raises(DocumentError, match=r"page 2 .*MAX_IMAGE_PIXELS"):
        expand(Document("pdf", "thin", path=str(path)), Fetcher(cfg), cfg)
    assert not list((cfg.cache_folder / "pdf").glob("*/*.png"))  # nothing of it was kept


# -- malformed IIIF manifests ---------------------------------------------------------------------

V3 = "http://iiif.io/api/presentation/3/context.json"
IMG = "http://127.0.0.1:9/a.jpg"  # never fetched: these tests only read manifests


def v2(canvases) -> dict:
    return {"@context": "http://iiif.io/api/presentation/2/context.json", "@type": "sc:Manifest",
            "sequences": [{"canvases": canvases}]}


def v2_canvas(resource, **extra) -> dict:
    return {"@id": "c1", "@type": "sc:Canvas", "images": [{"resource": resource}], **extra}


def v3(items) -> dict:
    return {"@context": V3, "type": "Manifest", "items": items}


def v3_canvas(body, motivation="painting", **extra) -> dict:
    return {"id": "c1", "type": "Canvas", **extra,
            "items": [{"type": "AnnotationPage", "items": [{"motivation": motivation, "body": body}]}]}


def nested(depth: int, inner=None):
    value = inner
    for _ in range(depth):
        value = [value]
    return value


UNUSABLE = {
    "empty": (b"", "not valid JSON"),
    "truncated": (b'{"sequences": [', "not valid JSON"),
    "not utf-8": (b"\xff\xfe\x00{", "not valid JSON"),
    "bom, then nothing": (b"\xef\xbb\xbf{}", "neither"),
    "huge integer": (b'{"sequences": ' + b"9" * 5000 + b"}", "not valid JSON"),
    "deep arrays": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep objects": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    "array": (b"[]", "JSON object"),
    "null": (b"null", "JSON object"),
    "number": (b"42", "JSON object"),
    "string": (b'"manifest"', "JSON object"),
    "no sequences nor items": ({"label": "x"}, "neither"),
    "sequences a string": ({"sequences": "abc"}, "neither"),
    "sequences NaN": (b'{"sequences": NaN}', "neither"),
    "sequences Infinity": (b'{"sequences": Infinity}', "neither"),
    "items a number": ({"type": ["Manifest"], "items": 5}, "neither"),
    "collection": ({"@type": "sc:Collection", "manifests": []}, "collection"),
    "sequences of numbers": ({"sequences": [1, 2, 3]}, "no images"),
    "canvases a string": ({"sequences": [{"canvases": "x"}]}, "no images"),
    "canvases of nulls": ({"sequences": [{"canvases": [None, True, {"images": None}]}]}, "no images"),
    "images a dict of junk": (v2([{"images": {"x": 1}}]), "no images"),
    "resource a number": (v2([v2_canvas(5)]), "no images"),
    "resource a list of lists": (v2([v2_canvas([[{"@id": IMG}]])]), "no images"),
    "resource without id": (v2([v2_canvas({"@type": "dctypes:Image"})]), "without an id"),
    "resource id a number": (v2([v2_canvas({"@id": 42})]), "without an id"),
    "resource id a list": (v2([v2_canvas({"@id": [IMG]})]), "without an id"),
    "resource type a list": (v2([v2_canvas({"@type": ["dctypes:Image"]})]), "without an id"),
    "choice without default": (v2([v2_canvas({"@type": "oa:Choice", "default": "x"})]), "no images"),
    "only sound": (v2([v2_canvas({"@id": IMG, "@type": "dctypes:Sound"})]), "no images"),
    "v3 items a dict": (v3({"a": 1}), "no images"),
    "v3 items nested lists": (v3([[["deep"]]]), "no images"),
    "v3 body a string": (v3([v3_canvas(IMG)]), "no images"),
    "v3 body a number": (v3([v3_canvas(7)]), "no images"),
    "v3 motivation an object": (v3([v3_canvas({"id": IMG}, motivation={"a": 1})]), "no images"),
    "v3 motivation a number": (v3([v3_canvas({"id": IMG}, motivation=3)]), "no images"),
    "v3 choice of choices": (v3([v3_canvas({"type": "Choice", "items": {"type": "Choice", "items": 1}})]),
                             "without an id"),
    "v3 annotation pages a string": (v3([{"id": "c", "items": "page"}]), "no images"),
    "v3 context junk": ({"@context": [V3, {"x": 1}, 5], "items": [None]}, "no images"),
    "v3 body id an object": (v3([v3_canvas({"id": {"url": IMG}})]), "without an id"),
    "v3 service id a list, no body id": (v3([v3_canvas({"type": "Image", "service": [{"id": [1]}]})]),
                                         "without an id"),
}


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_a_malformed_manifest_is_a_document_error(config, tmp_path, name):
    body, words = UNUSABLE[name]
    path = tmp_path / "manifest.json"
    path.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    with pytest.raises(DocumentError, match=words):
        expand(Document("iiif", "bad", path=str(path)), Fetcher(config), config)


def test_a_manifest_too_large_to_parse_safely_is_refused_unread(config, tmp_path):
    """json.loads of a 200 MB download (MAX_DOWNLOAD_BYTES) would take gigabytes: refused by size."""
    from api.platform.inputs.iiif import MAX_MANIFEST_BYTES

    path = tmp_path / "manifest.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: no disk, and never read
    with pytest.raises(DocumentError, match="larger than 64 MiB"):
        expand(Document("iiif", "huge", path=str(path)), Fetcher(config), config)


ODD_BUT_USABLE = {
    "width Infinity, height NaN": v2([v2_canvas({"@id": IMG}, width=float("inf"), height=float("nan"))]),
    "width negative, height true": v2([v2_canvas({"@id": IMG}, width=-5, height=True)]),
    "width an object, height a list": v3([v3_canvas({"id": IMG}, width={"a": 1}, height=[1])]),
    "width a word, height huge": v3([v3_canvas({"id": IMG}, width="wide", height=1e400)]),
    "label nested deep": v2([v2_canvas({"@id": IMG}, label=nested(600, "deep"), width=0)]),
    "label value nested deep": v3([v3_canvas({"id": IMG}, label={"@value": nested(600)}, width=0)]),
    "label a number": v3([v3_canvas({"id": IMG}, label=12, width=-1)]),
    "service junk": v3([v3_canvas({"id": IMG, "service": [5, {"id": 3}, {"type": ["ImageService3"]},
                                                          {"@context": nested(600, "x"), "id": None}]},
                                  width=None)]),
    "type a list": {**v2([v2_canvas({"@id": IMG, "@type": {"a": 1}})]), "@type": ["sc:Collection"]},
}


@pytest.mark.parametrize("name", list(ODD_BUT_USABLE))
def test_odd_canvas_details_do_not_spoil_a_usable_manifest(config, tmp_path, name):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(ODD_BUT_USABLE[name]))  # json writes Infinity and NaN, as some servers do
    [source] = expand(Document("iiif", "odd", path=str(path)), Fetcher(config), config)
    assert source.url == IMG
    canvas = source.canvas
    assert canvas["width"] is None and canvas["height"] is None  # not a positive whole number: unknown
    assert isinstance(canvas["label"], str)
    json.dumps(canvas, allow_nan=False)  # what is recorded stays plain JSON


def test_a_malformed_manifest_fails_its_document_and_the_job_goes_on(procs, client, http_server):
    procs.worker()
    manifest = http_server.add("/deep/manifest.json", b"[" * 100_000 + b"]" * 100_000, "application/json")
    image = http_server.add("/page.png", png_bytes((0, 0, 255), (40, 30)), "image/png")
    response = client.post("/dummy/start", json={"documents": [
        {"type": "iiif", "src": manifest, "uid": "book"}, {"type": "img", "src": image, "uid": "page"}]})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_for(lambda: (s := json_of(client.get(f"/dummy/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE") and s, 60, message="the job to end")
    assert status["state"] == "SUCCESS", status
    assert status["output"]["images"]["page"][0]["mean"] == [0.0, 0.0, 255.0]
    [error] = status["errors"]
    assert error["doc_uid"] == "book" and "nested too deeply" in error["message"]
