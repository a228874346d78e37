"""Inputs: document validation, downloads (cache, caps, SSRF guard), IIIF, url lists, zips, PDFs,
and the image feed. Every byte is made here and served by the local HTTP server on 127.0.0.1."""
from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import zipfile

import pytest
from PIL import Image

from api.platform.errors import InputError
from api.platform.inputs import (
    Document,
    DocumentError,
    DownloadError,
    Fetcher,
    ImageFeed,
    ImageSource,
    configure_pillow,
    decode_image,
    document_from_upload,
    expand,
    parse_documents,
)
from api.platform.inputs import fetch as fetch_module
from api.platform.netguard import is_public_address
from tests.support.httpserver import LocalServer, Response


def image_bytes(size=(40, 30), color="red", fmt="PNG", **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt, **save)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def pdf_bytes(sizes, resolution=100.0) -> bytes:
    pages = [Image.new("RGB", size, color) for size, color in zip(sizes, ("white", "blue", "green"), strict=False)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "PDF", resolution=resolution, save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def feed_all(sources, fetcher, cfg):
    with ImageFeed(sources, fetcher, cfg) as feed:
        return list(feed)


@pytest.fixture(scope="module")
def shared_server():
    with LocalServer() as server:
        yield server


@pytest.fixture
def http_server(shared_server):
    """conftest's server, but one for the module (stopping one takes 0.5 s), emptied for each test."""
    shared_server.routes.clear()
    shared_server.requests.clear()
    return shared_server


@pytest.fixture
def private_off(config):
    return dataclasses.replace(config, allow_private_urls=False)


# -- parse_documents, uploads --------------------------------------------------------------------

def test_parse_documents_list_and_json_string(config, http_server):
    url = http_server.url("/scans/page%201.jpg")
    raw = [{"type": "img", "src": url, "uid": "mine"}, {"type": "iiif", "src": http_server.url("/m/manifest.json")},
           {"type": "img", "src": url}, {"type": "img", "src": url}]
    docs = parse_documents(raw, config)
    assert [d.type for d in docs] == ["img", "iiif", "img", "img"]
    assert docs[0].uid == "mine" and docs[0].src == url
    assert docs[1].uid.startswith("manifest-")
    assert docs[2].uid.startswith("page_1-") and docs[3].uid == docs[2].uid + "-2"
    assert parse_documents(json.dumps(raw), config) == docs
    assert parse_documents([], config) == [] and parse_documents(None, config) == parse_documents(" ", config) == []
    assert Document.from_dict(json.loads(json.dumps(docs[0].to_dict()))) == docs[0]


@pytest.mark.parametrize("raw, field, words", [
    ([{"type": "video", "src": "http://127.0.0.1/a"}], "documents[0].type", "must be one of img, url_list"),
    ([{"type": "img", "src": "ftp://127.0.0.1/a.png"}], "documents[0].src", "http"),
    ([{"type": "img", "src": "file:///etc/passwd"}], "documents[0].src", "http"),
    ([{"type": "img"}], "documents[0].src", "required"),
    ([{"type": "img", "src": "http://127.0.0.1/a", "uid": "../up"}], "documents[0].uid", "must be"),
    ([{"type": "img", "src": "http://127.0.0.1/a", "uid": "a" * 129}], "documents[0].uid", "must be"),
    ([{"type": "img", "src": "http://127.0.0.1/a", "uid": "x"},
      {"type": "img", "src": "http://127.0.0.1/b", "uid": "x"}], "documents[1].uid", "used by another"),
    ([{"type": "img", "src": "http://127.0.0.1/a", "colour": "red"}], "documents[0]", "'colour'"),
    (["http://127.0.0.1/a"], "documents[0]", "must be an object"),
    ("[{not json", "documents", "JSON"),
    ({"type": "img"}, "documents", "list"),
])
def test_parse_documents_refuses(config, raw, field, words):
    with pytest.raises(InputError) as caught:
        parse_documents(raw, config)
    assert caught.value.field == field and words in caught.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_parse_documents_refuses_loopback_unless_allowed(config, private_off, http_server, host):
    url = f"http://{host}:{http_server.port}/x.png"
    with pytest.raises(InputError) as caught:
        parse_documents([{"type": "img", "src": url}], private_off)
    assert caught.value.field == "documents[0].src"
    assert parse_documents([{"type": "img", "src": url}], config)[0].src == url
    assert http_server.hits("/x.png") == 0


def test_document_from_upload_detects_type_and_makes_unique_uids(tmp_path):
    files = {"scan.zip": zip_bytes({"a.png": image_bytes()}), "book.pdf": pdf_bytes([(20, 20)]),
             "photo.jpg": image_bytes(fmt="JPEG"), "misnamed.jpg": pdf_bytes([(20, 20)])}
    taken = {"scan"}
    docs = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        docs[name] = document_from_upload(tmp_path / name, name, taken)
    assert {n: d.type for n, d in docs.items()} == {"scan.zip": "zip", "book.pdf": "pdf", "photo.jpg": "img",
                                                    "misnamed.jpg": "pdf"}
    assert docs["scan.zip"].uid == "scan-2" and docs["photo.jpg"].uid == "photo"
    assert taken == {"scan", "scan-2", "book", "photo", "misnamed"}
    (tmp_path / "x").write_bytes(image_bytes())
    assert document_from_upload(tmp_path / "x", "../../My Scan (1).png", taken).uid == "My_Scan_1"
    assert document_from_upload(tmp_path / "x", "...", taken).uid == "upload"


# -- Fetcher: cache, caps, content types, SSRF guard ---------------------------------------------

def test_fetch_caches_across_fetchers_and_threads(config, http_server):
    body = image_bytes()
    url = http_server.add("/img.png", body, "image/png")
    paths = []
    fetcher = Fetcher(config)
    threads = [threading.Thread(target=lambda: paths.append(fetcher.fetch(url, kind="image"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(paths)) == 1 and paths[0].read_bytes() == body
    assert paths[0].is_relative_to(config.cache_folder / "documents")
    assert Fetcher(config).fetch(url, kind="image") == paths[0]
    assert http_server.hits("/img.png") == 1
    assert not [p for p in paths[0].parent.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("body, content_type, kind, words", [
    (b"x" * 5000, "image/png", "image", "limit"),
    (b"<html></html>", "text/html", "image", "Content-Type 'text/html'"),
    (b"{}", "text/html", "manifest", "Content-Type"),
    (b"PK", "image/png", "zip", "Content-Type"),
])
def test_fetch_refuses(config, http_server, body, content_type, kind, words):
    url = http_server.add("/thing", body, content_type)
    fetcher = Fetcher(dataclasses.replace(config, max_download_bytes=1000))
    with pytest.raises(DownloadError, match=words):
        fetcher.fetch(url, kind=kind)
    assert not (fetcher.cache_path(url, kind)).exists()


def test_fetch_streaming_cap_without_content_length(config, http_server, monkeypatch):
    """A server may send no (or a false) Content-Length: the bytes are counted as they come."""
    url = http_server.add("/big.png", b"x" * 5000, "image/png")
    fetcher = Fetcher(dataclasses.replace(config, max_download_bytes=1000))
    original_get = fetcher.session.get

    def get_without_length(*args, **kwargs):
        response = original_get(*args, **kwargs)
        del response.headers["Content-Length"]
        return response

    monkeypatch.setattr(fetcher.session, "get", get_without_length)
    with pytest.raises(DownloadError, match="over the 1000 byte limit"):
        fetcher.fetch(url, kind="image")
    assert not fetcher.cache_path(url, "image").exists()


def test_fetch_http_error_and_lenient_types(config, http_server):
    fetcher = Fetcher(config)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetcher.fetch(http_server.url("/missing.png"), kind="image")
    url = http_server.add("/blob", image_bytes(), "application/octet-stream")
    assert fetcher.fetch(url, kind="image").stat().st_size > 0
    url = http_server.add("/m.json", b"{}", "application/ld+json; charset=utf-8")
    assert fetcher.fetch(url, kind="manifest").read_bytes() == b"{}"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_fetch_refuses_loopback_when_private_not_allowed(private_off, http_server, host):
    http_server.add("/x.png", image_bytes(), "image/png")
    with pytest.raises(DownloadError, match="refused|not a public|local"):
        Fetcher(private_off).fetch(f"http://{host}:{http_server.port}/x.png", kind="image")
    assert http_server.hits("/x.png") == 0


def test_fetch_guard_checks_the_address_connected_to(private_off, http_server, monkeypatch):
    """Even when the early URL check is passed (DNS rebinding), the connection's own look-up is
    checked before it connects (tests/test_netguard.py counts that no TCP connection is made)."""
    monkeypatch.setattr(fetch_module, "check_url", lambda *args, **kwargs: None)
    url = http_server.add("/x.png", image_bytes(), "image/png")
    with pytest.raises(DownloadError, match="refused"):
        Fetcher(private_off).fetch(url, kind="image")
    assert http_server.hits("/x.png") == 0


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fe80::1%eth0", False), ("fc00::1", False), ("fd00:ec2::254", False),
    ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False), ("64:ff9b::a9fe:a9fe", False),
    ("2002:7f00:1::", False), ("ff02::1", False),
])
def test_is_public_address(address, public):
    assert is_public_address(address) is public


# -- IIIF ----------------------------------------------------------------------------------------

def manifest_v2(server, n=2, service=True):
    canvases = []
    for i in range(n):
        resource = {"@id": server.url(f"/v2/p{i}.jpg"), "@type": "dctypes:Image", "format": "image/jpeg"}
        if service:
            resource["service"] = {"@context": "http://iiif.io/api/image/2/context.json",
                                   "@id": server.url(f"/iiif2/p{i}"), "profile": "http://iiif.io/api/image/2/level1.json"}
        canvases.append({"@id": server.url(f"/v2/canvas/{i}"), "@type": "sc:Canvas", "label": f"f. {i + 1}r",
                         "width": 1000 + i, "height": 1500,
                         "images": [{"@type": "oa:Annotation", "motivation": "sc:painting", "resource": resource,
                                     "on": server.url(f"/v2/canvas/{i}")}]})
    return {"@context": "http://iiif.io/api/presentation/2/context.json", "@type": "sc:Manifest",
            "@id": server.url("/v2/manifest.json"), "label": "Book", "sequences": [{"canvases": canvases}]}


def manifest_v3(server, bodies):
    items = []
    for i, body in enumerate(bodies):
        items.append({"id": server.url(f"/v3/canvas/{i}"), "type": "Canvas", "label": {"en": [f"page {i + 1}"]},
                      "width": 800, "height": 600 + i,
                      "items": [{"id": server.url(f"/v3/page/{i}"), "type": "AnnotationPage",
                                 "items": [{"id": server.url(f"/v3/anno/{i}"), "type": "Annotation",
                                            "motivation": "painting", "body": body,
                                            "target": server.url(f"/v3/canvas/{i}")}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": server.url("/v3/manifest.json"),
            "type": "Manifest", "label": {"en": ["Book"]}, "items": items}


def test_iiif_v2_with_image_service(config, http_server):
    url = http_server.add("/v2/manifest.json", json.dumps(manifest_v2(http_server)), "application/json")
    sources = expand(Document("iiif", "book", src=url), Fetcher(config), config)
    assert [s.url for s in sources] == [http_server.url(f"/iiif2/p{i}/full/!2048,2048/0/default.jpg") for i in (0, 1)]
    assert [s.name for s in sources] == ["0001", "0002"] and [s.index for s in sources] == [0, 1]
    assert sources[1].canvas == {"id": http_server.url("/v2/canvas/1"), "width": 1001, "height": 1500,
                                 "label": "f. 2r", "manifest": url}
    cfg_max = dataclasses.replace(config, iiif_image_size="max")
    fresh = Fetcher(cfg_max)
    assert expand(Document("iiif", "book", src=url), fresh, cfg_max)[0].url.endswith("/p0/full/full/0/default.jpg")


def test_iiif_v3_with_and_without_services(config, http_server):
    service3 = {"id": http_server.url("/iiif3/a"), "type": "ImageService3", "profile": "level1"}
    service2 = {"@id": http_server.url("/iiif2/b"), "@type": "ImageService2", "profile": "level1"}
    bodies = [
        {"id": http_server.url("/v3/a.jpg"), "type": "Image", "service": [service3]},
        [{"id": http_server.url("/v3/b.jpg"), "type": "Image", "service": [service2]}],
        {"type": "Choice", "items": [{"id": http_server.url("/v3/c.jpg"), "type": "Image"},
                                     {"id": http_server.url("/v3/c-infrared.jpg"), "type": "Image"}]},
        {"id": http_server.url("/v3/d.jpg"), "type": "Image"},
    ]
    url = http_server.add("/v3/manifest.json", json.dumps(manifest_v3(http_server, bodies)), "application/ld+json")
    cfg = dataclasses.replace(config, iiif_image_size="full")
    sources = expand(Document("iiif", "v3", src=url), Fetcher(cfg), cfg)
    assert [s.url for s in sources] == [
        http_server.url("/iiif3/a/full/max/0/default.jpg"), http_server.url("/iiif2/b/full/full/0/default.jpg"),
        http_server.url("/v3/c.jpg"), http_server.url("/v3/d.jpg")]
    assert sources[3].canvas == {"id": http_server.url("/v3/canvas/3"), "width": 800, "height": 603,
                                 "label": "page 4", "manifest": url}


def test_iiif_expand_and_feed_twice_makes_no_new_request(config, http_server):
    bodies = []
    for i, color in enumerate(("red", "green", "blue")):
        image_url = http_server.add(f"/v3/img{i}.jpg", image_bytes((30 + i, 20), color, "JPEG"), "image/jpeg")
        bodies.append({"id": image_url, "type": "Image", "format": "image/jpeg"})
    url = http_server.add("/v3/manifest.json", json.dumps(manifest_v3(http_server, bodies)), "application/json")
    for _ in range(2):
        fetcher = Fetcher(config)
        loaded = feed_all(expand(Document("iiif", "book", src=url), fetcher, config), fetcher, config)
        assert [item.error for item in loaded] == [None] * 3
        assert [item.image.size for item in loaded] == [(30, 20), (31, 20), (32, 20)]
        assert all(item.image.mode == "RGB" for item in loaded)
    assert [http_server.hits(p) for p in ("/v3/manifest.json", "/v3/img0.jpg", "/v3/img1.jpg", "/v3/img2.jpg")] \
        == [1, 1, 1, 1]


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"gone", "text/plain", 404, "HTTP 404"),
    (b"<html>login</html>", "text/html", 200, "Content-Type"),
    (b"{not json", "application/json", 200, "not valid JSON"),
    (b'{"label": "just some json"}', "application/json", 200, "not a IIIF manifest"),
    (b'{"@type": "sc:Collection", "manifests": []}', "application/json", 200, "collection"),
    (b'{"@context": "http://iiif.io/api/presentation/3/context.json", "type": "Manifest", "items": []}',
     "application/json", 200, "no images"),
])
def test_iiif_unusable_manifest(config, http_server, body, content_type, status, words):
    url = http_server.add("/bad/manifest.json", body, content_type, status=status)
    with pytest.raises(DocumentError, match=words):
        expand(Document("iiif", "bad", src=url), Fetcher(config), config)


# -- url lists, single images --------------------------------------------------------------------

def test_url_list(config, http_server, tmp_path):
    urls = [http_server.add(f"/list/{name}", image_bytes(), "image/png") for name in ("a.png", "b.png", "a.png")]
    text = "# my scans\n\n" + "\n".join(urls[:2]) + "\n   \n" + urls[2] + "\n"
    url = http_server.add("/list.txt", text, "text/plain; charset=utf-8")
    fetcher = Fetcher(config)
    sources = expand(Document("url_list", "list", src=url), fetcher, config)
    assert [s.url for s in sources] == urls and [s.index for s in sources] == [0, 1, 2]
    assert [s.name for s in sources] == ["a", "b", "a-2"]
    assert all(item.image is not None for item in feed_all(sources, fetcher, config))
    (tmp_path / "list.txt").write_text("ftp://example.org/x.png\n")
    with pytest.raises(DocumentError, match="line 1"):
        expand(Document("url_list", "up", path=str(tmp_path / "list.txt")), fetcher, config)


def test_too_many_images(config, http_server):
    url = http_server.add("/many.txt", "\n".join(http_server.url(f"/{i}.png") for i in range(5)), "text/plain")
    cfg = dataclasses.replace(config, max_images_per_job=4)
    with pytest.raises(DocumentError, match="limit is 4"):
        expand(Document("url_list", "many", src=url), Fetcher(cfg), cfg)


def test_single_image_documents(config, http_server, tmp_path):
    (tmp_path / "up.png").write_bytes(image_bytes((7, 9)))
    url = http_server.add("/one/photo.jpg", image_bytes((5, 6), fmt="JPEG"), "image/jpeg")
    fetcher = Fetcher(config)
    sources = (expand(Document("img", "remote", src=url), fetcher, config)
               + expand(Document("img", "local", path=str(tmp_path / "up.png")), fetcher, config))
    assert [(s.doc_uid, s.name, s.url) for s in sources] == [("remote", "photo", url), ("local", "up", None)]
    assert [item.image.size for item in feed_all(sources, fetcher, config)] == [(5, 6), (7, 9)]


# -- zips ----------------------------------------------------------------------------------------

def test_good_zip(config, http_server):
    members = {"scans/p10.png": image_bytes((10, 10)), "scans/p2.jpg": image_bytes((2, 2), fmt="JPEG"),
               "scans/": b"", "notes.txt": b"hello", "__MACOSX/scans/._p2.jpg": b"junk", "P1.PNG": image_bytes((1, 1))}
    url = http_server.add("/archive.zip", zip_bytes(members), "application/zip")
    fetcher = Fetcher(config)
    sources = expand(Document("zip", "arch", src=url), fetcher, config)
    assert [s.name for s in sources] == ["P1", "scans_p2", "scans_p10"]
    assert all(s.path.is_relative_to(config.cache_folder / "zip") for s in sources)
    assert [item.image.size for item in feed_all(sources, fetcher, config)] == [(1, 1), (2, 2), (10, 10)]
    assert expand(Document("zip", "again", src=url), Fetcher(config), config)[0].path == sources[0].path
    assert http_server.hits("/archive.zip") == 1


@pytest.mark.parametrize("member", ["../evil.png", "/abs.png", "scans/../../evil.png", "..\\evil.png"])
def test_zip_slip_is_refused(config, tmp_path, member):
    archive = tmp_path / "slip.zip"
    archive.write_bytes(zip_bytes({"ok.png": image_bytes(), member: image_bytes()}))
    with pytest.raises(DocumentError, match="unsafe path") as caught:
        expand(Document("zip", "slip", path=str(archive)), Fetcher(config), config)
    assert repr(member) in str(caught.value)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


@pytest.mark.parametrize("changes, words", [
    ({"max_zip_ratio": 100}, "MAX_ZIP_RATIO"),
    ({"max_zip_ratio": 100_000, "max_zip_bytes": 1_000_000}, "MAX_ZIP_BYTES"),
])
def test_zip_bomb_is_refused(config, tmp_path, changes, words):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_bytes({"ok.png": image_bytes(), "bomb.png": bytes(5_000_000)}))
    cfg = dataclasses.replace(config, **changes)
    with pytest.raises(DocumentError, match=words):
        expand(Document("zip", "bomb", path=str(archive)), Fetcher(cfg), cfg)
    assert not (config.cache_folder / "zip").exists() or not any((config.cache_folder / "zip").iterdir())


def test_corrupt_zip(config, tmp_path):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(DocumentError, match="zip"):
        expand(Document("zip", "bad", path=str(archive)), Fetcher(config), config)


# -- PDFs ----------------------------------------------------------------------------------------

def test_pdf_pages_rendered_at_dpi(config, http_server):
    url = http_server.add("/book.pdf", pdf_bytes([(200, 100), (100, 300)], resolution=100.0), "application/pdf")
    cfg = dataclasses.replace(config, pdf_dpi=50)  # pages are 2x1 and 1x3 inches
    fetcher = Fetcher(cfg)
    sources = expand(Document("pdf", "book", src=url), fetcher, cfg)
    assert [s.name for s in sources] == ["0001", "0002"]
    loaded = feed_all(sources, fetcher, cfg)
    assert [item.image.size for item in loaded] == [(100, 50), (50, 150)]
    red, green, blue = loaded[1].image.getpixel((25, 75))  # the page is blue (JPEG inside the PDF)
    assert red < 30 and green < 30 and blue > 220


def test_corrupt_pdf(config, tmp_path):
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf at all")
    with pytest.raises(DocumentError, match="PDF"):
        expand(Document("pdf", "bad", path=str(tmp_path / "bad.pdf")), Fetcher(config), config)


# -- the image feed ------------------------------------------------------------------------------

def test_feed_reports_bad_images_and_goes_on(config, http_server, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    cfg = dataclasses.replace(config, max_image_pixels=1_000_000, prefetch_images=2, download_workers=2)
    configure_pillow(cfg)
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000), 1).save(buffer, "PNG")  # 100 Mpx, a few kB
    routes = {
        "/bomb.png": (buffer.getvalue(), "image/png"), "/good.png": (image_bytes((3, 4)), "image/png"),
        "/corrupt.jpg": (b"\xff\xd8\xff\xe0 definitely not a jpeg", "image/jpeg"),
        "/page.html": (b"<html></html>", "text/html"), "/truncated.png": (image_bytes((50, 50))[:60], "image/png"),
    }
    for path, (body, content_type) in routes.items():
        http_server.add(path, body, content_type)
    order = ["/bomb.png", "/good.png", "/corrupt.jpg", "/missing.png", "/page.html", "/truncated.png", "/good.png"]
    sources = [ImageSource("doc", f"i{i}", i, url=http_server.url(p)) for i, p in enumerate(order)]
    loaded = feed_all(sources, Fetcher(cfg), cfg)
    assert [item.source.index for item in loaded] == list(range(len(order)))
    errors = [item.error for item in loaded]
    assert "pixels" in errors[0] and errors[1] is None and errors[6] is None
    assert "HTTP 404" in errors[3] and "Content-Type" in errors[4]
    assert errors[2] and errors[5]
    assert all((item.image is None) == (item.error is not None) for item in loaded)


def test_decode_checks_pixels_even_without_configure_pillow(config, tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (1200, 1000)).save(path)
    with pytest.raises(Exception, match="MAX_IMAGE_PIXELS"):
        decode_image(path, dataclasses.replace(config, max_image_pixels=1_000_000))


def test_decode_applies_exif_orientation_and_flattens_alpha(config, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), "red").save(path, "JPEG", exif=exif.tobytes())
    assert decode_image(path, config).size == (20, 40)
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    image = decode_image(path, config)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


def test_feed_close_stops_promptly(config, http_server):
    def slow(request):
        time.sleep(0.3)
        return Response(image_bytes(), 200, "image/png")

    http_server.routes["/slow.png"] = slow
    cfg = dataclasses.replace(config, prefetch_images=4, download_workers=2)
    sources = [ImageSource("doc", f"i{i}", i, url=http_server.url(f"/slow.png?{i}")) for i in range(40)]
    feed = ImageFeed(sources, Fetcher(cfg), cfg)
    first = next(iter(feed))
    assert first.image is not None
    started = time.monotonic()
    feed.close()
    assert time.monotonic() - started < 0.5
    time.sleep(0.8)
    assert http_server.hits("/slow.png") <= 8


# -- folders of images made by the platform or a demo ("dir") -------------------------------------
def test_a_folder_document_gives_its_images_by_name_and_only_inside_data_folder(config, tmp_path):
    folder = config.data_folder / "results" / "regions" / "abc" / "doc" / "crops"
    folder.mkdir(parents=True)
    for name in ("p2-0.jpg", "p1-1.jpg", "p1-0.jpg"):
        (folder / name).write_bytes(image_bytes(fmt="JPEG"))
    (folder / "notes.txt").write_text("not an image")
    fetcher = Fetcher(config)
    sources = expand(Document.from_dict({"type": "dir", "uid": "doc", "path": str(folder)}), fetcher, config)
    assert [(s.name, s.index) for s in sources] == [("p1-0", 0), ("p1-1", 1), ("p2-0", 2)]
    assert all(item.image.size == (40, 30) for item in feed_all(sources, fetcher, config))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(DocumentError, match="gone"):
        expand(Document(type="dir", uid="x", path=str(outside)), fetcher, config)


def test_clients_cannot_send_a_folder_document(config):
    with pytest.raises(InputError, match=r"documents\[0\]\.type"):
        parse_documents([{"type": "dir", "src": "http://127.0.0.1/x"}], config)


def test_allowed_source_hosts_pass_the_guard_by_name_and_nothing_else():
    from api.platform.config import load_config
    from api.platform.netguard import AddressNotAllowed, check_url

    cfg = load_config({"ENV_FILE": "/nonexistent", "ALLOWED_SOURCE_HOSTS": "Media.Front.Internal, 127.0.0.1"})
    assert cfg.allowed_source_hosts == frozenset({"media.front.internal", "127.0.0.1"})
    # a listed name is not even resolved (it may exist only on the private network)
    check_url("https://media.front.internal/a.jpg", allow_private=False, allowed_hosts=cfg.allowed_source_hosts)
    check_url("http://127.0.0.1:8000/a.jpg", allow_private=False, allowed_hosts=cfg.allowed_source_hosts)
    for url in ("http://10.0.0.5/a.jpg", "http://169.254.169.254/latest", "http://localhost/a.jpg"):
        with pytest.raises(AddressNotAllowed):
            check_url(url, allow_private=False, allowed_hosts=cfg.allowed_source_hosts)
    with pytest.raises(ValueError, match="only http"):
        check_url("file:///etc/passwd", allow_private=False, allowed_hosts=frozenset({""}))


def test_the_guarded_session_lets_a_listed_host_connect_and_refuses_the_same_address_by_another_name(http_server):
    from api.platform.netguard import AddressNotAllowed, guarded_session

    http_server.add("/x", b"hello", "text/plain")
    session = guarded_session(allow_private=False, allowed_hosts=frozenset({"127.0.0.1"}))
    assert session.get(http_server.url("/x"), timeout=5).content == b"hello"
    with pytest.raises(Exception) as refused:
        session.get(http_server.url("/x").replace("127.0.0.1", "localhost"), timeout=5)
    assert isinstance(refused.value, AddressNotAllowed) or "not a public address" in str(refused.value)
