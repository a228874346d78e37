"""The SSRF guard: nothing connects to a refused address, and every refusal reads the same.

With private URLs off, downloads aimed at a loopback "probe" port (a real listening socket that
counts the connections it is offered) must leave it untouched, whether the URL names the port
directly, comes from a URL list or an IIIF manifest, or is a redirect from an allowed server.
The allowed server listens on 127.0.0.2, let through by ALLOWED_SOURCE_HOSTS; the probe is on
127.0.0.1. Addresses that are not loopback are only classified and resolved with a fake
resolver, never connected to.
"""
from __future__ import annotations

import json
import select
import socket

import pytest
import requests

from api.platform import netguard
from api.platform.config import load_config
from api.platform.inputs import Document, DownloadError, Fetcher, ImageFeed, expand
from api.platform.netguard import (
    REFUSED,
    Address,
    AddressNotAllowed,
    check_url,
    checked_addresses,
    guarded_session,
    is_public_address,
)
from tests.support.httpserver import LocalServer, Response

ALLOWED = "127.0.0.2"
# Names the system resolves to 127.0.0.1 without DNS (inet_aton forms), so only a check of the
# resolved address can refuse them.
LOOPBACK_NAMES = ["127.1", "2130706433", "0x7f000001"]
SHAPES = ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", *LOOPBACK_NAMES]


class Probe:
    """A listening socket that never answers: it counts the connections made to it."""

    def __init__(self, listen: bool = True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        if listen:
            self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.count = 0

    def accepted(self) -> int:
        """Connections completed so far (a connection closed at once still waits in the queue)."""
        while select.select([self.sock], [], [], 0.2)[0]:
            connection, _ = self.sock.accept()
            connection.close()
            self.count += 1
        return self.count

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def probe():
    listener = Probe()
    yield listener
    listener.close()


@pytest.fixture
def closed_port():
    """A port held by a socket that does not listen: connecting to it is refused."""
    holder = Probe(listen=False)
    yield holder.port
    holder.close()


@pytest.fixture(scope="module")
def allowed_server():
    with LocalServer(host=ALLOWED) as server:
        yield server


@pytest.fixture
def allowed(allowed_server):
    allowed_server.routes.clear()
    allowed_server.requests.clear()
    return allowed_server


@pytest.fixture
def guarded(data_folder):
    """ALLOW_PRIVATE_URLS=0, as deployed, with only the allowed server's host let through."""
    return load_config({"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data_folder), "ALLOW_PRIVATE_URLS": "0",
                        "ALLOWED_SOURCE_HOSTS": ALLOWED, "DOWNLOAD_TIMEOUT_S": "5"})


def fake_resolver(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Replace the guard's one DNS look-up; returns the list of names asked, in order."""
    asked: list[str] = []

    def resolve_host(host: str, port: int) -> list[Address]:
        asked.append(host)
        found = answers[host.lower()]  # DNS names are case-insensitive
        ips = found.pop(0) if isinstance(found[0], list) else found  # a list of lists: one answer per query
        return [Address(socket.AF_INET6 if ":" in ip else socket.AF_INET,
                        (ip, port, 0, 0) if ":" in ip else (ip, port)) for ip in ips]

    monkeypatch.setattr(netguard, "resolve_host", resolve_host)
    return asked


def refusal(fetcher: Fetcher, url: str, kind: str = "image") -> str:
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch(url, kind=kind)
    return str(caught.value)


# -- the address classifier (no connection) ------------------------------------------------------

@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("::ffff:8.8.8.8", True), ("2002:808:808::1", True),
    ("64:ff9b::808:808", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fe80::1%eth0", False), ("fc00::1", False),
    ("ff02::1", False),
    # IPv4-mapped ::ffff:a.b.c.d
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("::ffff:169.254.169.254", False),
    # IPv4-compatible ::a.b.c.d (deprecated, never routed)
    ("::127.0.0.1", False), ("::10.0.0.1", False), ("::8.8.8.8", False),
    # IPv4-translated ::ffff:0:a.b.c.d (SIIT, never routed)
    ("::ffff:0:7f00:1", False), ("::ffff:0:a00:1", False), ("::ffff:0:808:808", False),
    # 6to4 2002:a.b.c.d::/48
    ("2002:7f00:1::", False), ("2002:a00:1::1", False), ("2002:a9fe:a9fe::", False),
    # NAT64 well-known 64:ff9b::a.b.c.d, and the local-use prefix
    ("64:ff9b::7f00:1", False), ("64:ff9b::a9fe:a9fe", False), ("64:ff9b::a00:1", False),
    ("64:ff9b:1::808:808", False),
    # Teredo
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
])
def test_is_public_address(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[::ffff:0:7f00:1]", "[::ffff:127.0.0.1]", "[2002:7f00:1::]",
                                  "[64:ff9b::7f00:1]", "[::ffff:a9fe:a9fe]", "169.254.169.254", "localhost"])
def test_check_url_refuses_embedded_and_local_forms_without_resolving(host, monkeypatch):
    asked = fake_resolver(monkeypatch, {})
    with pytest.raises(AddressNotAllowed) as caught:
        check_url(f"http://{host}:8080/x", allow_private=False)
    assert str(caught.value) == REFUSED
    assert asked == []


# -- resolve, then check (a fake resolver, no connection) ---------------------------------------

def test_checked_addresses_refuses_a_name_with_any_non_public_address(monkeypatch):
    fake_resolver(monkeypatch, {"public.example": ["8.8.8.8", "2606:4700:4700::1111"],
                                "mixed.example": ["8.8.8.8", "10.0.0.5"],
                                "mapped.example": ["::ffff:192.168.0.1"],
                                "compat.example": ["::127.0.0.1"],
                                "media.internal": ["10.0.0.7"]})
    assert [a.sockaddr[0] for a in checked_addresses("public.example", 443, allow_private=False)] == \
        ["8.8.8.8", "2606:4700:4700::1111"]
    for name in ("mixed.example", "mapped.example", "compat.example", "media.internal"):
        with pytest.raises(AddressNotAllowed, match=f"^{REFUSED}$"):
            checked_addresses(name, 443, allow_private=False)
    # a listed host, or private URLs allowed: returned unchecked
    assert checked_addresses("Media.Internal", 443, allow_private=False, allowed_hosts=frozenset({"media.internal"}))
    assert checked_addresses("media.internal", 443, allow_private=True)


def test_check_url_resolves_names_and_refuses_a_private_answer(monkeypatch):
    asked = fake_resolver(monkeypatch, {"rebind.example": ["10.0.0.1"], "public.example": ["8.8.8.8"]})
    with pytest.raises(AddressNotAllowed, match=f"^{REFUSED}$"):
        check_url("https://rebind.example/x", allow_private=False)
    check_url("https://public.example/x", allow_private=False)
    check_url("https://rebind.example/x", allow_private=False, resolve=False)  # left to the connection
    assert asked == ["rebind.example", "public.example"]


# -- real downloads aimed at a loopback probe (private URLs off) --------------------------------

def test_the_probe_counts_connections(probe):
    """The control: a plain connection is counted, so a count of 0 below means none was made."""
    socket.create_connection(("127.0.0.1", probe.port), timeout=5).close()
    assert probe.accepted() == 1


@pytest.mark.parametrize("host", SHAPES)
def test_a_direct_download_never_connects_to_a_refused_address(guarded, probe, host):
    url = f"http://{host}:{probe.port}/x.png"
    assert refusal(Fetcher(guarded), url) == f"{url}: refused, {REFUSED}"
    assert probe.accepted() == 0


@pytest.mark.parametrize("host", LOOPBACK_NAMES)
def test_an_open_and_a_closed_port_give_the_same_refusal(guarded, probe, closed_port, host):
    fetcher = Fetcher(guarded)
    open_error = refusal(fetcher, f"http://{host}:{probe.port}/x.png").replace(str(probe.port), "PORT")
    closed_error = refusal(fetcher, f"http://{host}:{closed_port}/x.png").replace(str(closed_port), "PORT")
    assert open_error == closed_error
    assert probe.accepted() == 0


def test_a_rebinding_name_is_checked_again_by_the_connection(guarded, probe, monkeypatch):
    """Public when the job was submitted, loopback when downloaded: refused, never connected."""
    asked = fake_resolver(monkeypatch, {"rebind.example": [["8.8.8.8"], ["127.0.0.1"]]})
    url = f"http://rebind.example:{probe.port}/x.png"
    check_url(url, allow_private=False)  # at submit time
    assert refusal(Fetcher(guarded), url) == f"{url}: refused, {REFUSED}"
    assert asked == ["rebind.example", "rebind.example"]
    assert probe.accepted() == 0


def test_the_connection_goes_to_the_address_checked(allowed, monkeypatch):
    """One look-up per connection, and its answer is the address connected to: "localhost" is
    answered 127.0.0.2 here, where only the allowed server listens on that port."""
    allowed.add("/x", b"hello", "text/plain")
    asked = fake_resolver(monkeypatch, {"localhost": [ALLOWED]})
    session = guarded_session(allow_private=False, allowed_hosts=frozenset({"localhost"}))
    assert session.get(f"http://localhost:{allowed.port}/x", timeout=5).content == b"hello"
    assert asked == ["localhost"]


@pytest.mark.parametrize("host", ["127.0.0.1", *LOOPBACK_NAMES])
def test_a_redirect_from_an_allowed_server_to_a_refused_address_is_not_followed(guarded, allowed, probe, host):
    target = f"http://{host}:{probe.port}/x.png"
    url = allowed.add("/go", b"", status=302, headers={"Location": target})
    assert refusal(Fetcher(guarded), url) == f"{url}: refused, {REFUSED}"
    assert allowed.hits("/go") == 1
    assert probe.accepted() == 0


def test_redirects_on_an_allowed_server_are_followed_and_bounded(guarded, allowed):
    allowed.add("/x.png", b"\x89PNG", "image/png")
    url = allowed.add("/go", b"", status=302, headers={"Location": "/x.png"})
    assert Fetcher(guarded).fetch(url, kind="image").read_bytes() == b"\x89PNG"
    loop = allowed.add("/loop", b"", status=302, headers={"Location": "/loop"})
    assert refusal(Fetcher(guarded), loop) == f"{loop}: too many redirects"
    assert allowed.hits("/loop") == netguard.MAX_REDIRECTS + 1


def test_a_redirect_to_another_scheme_is_refused(guarded, allowed):
    url = allowed.add("/go", b"", status=302, headers={"Location": "file:///etc/passwd"})
    assert "only http and https" in refusal(Fetcher(guarded), url)


def test_url_list_and_iiif_images_never_reach_a_refused_address(guarded, allowed, probe):
    targets = [f"http://{host}:{probe.port}/{i}.png" for i, host in enumerate(LOOPBACK_NAMES)]
    allowed.add("/list.txt", "\n".join(targets), "text/plain")
    canvases = [{"@id": f"{allowed.base_url}/c/{i}", "@type": "sc:Canvas", "width": 10, "height": 10,
                 "images": [{"@type": "oa:Annotation", "motivation": "sc:painting",
                             "resource": {"@id": target, "@type": "dctypes:Image"}}]}
                for i, target in enumerate(targets)]
    manifest = {"@context": "http://iiif.io/api/presentation/2/context.json", "@type": "sc:Manifest",
                "@id": allowed.url("/manifest.json"), "label": "m", "sequences": [{"canvases": canvases}]}
    allowed.add("/manifest.json", json.dumps(manifest), "application/json")
    fetcher = Fetcher(guarded)
    for doc in (Document(type="url_list", uid="list", src=allowed.url("/list.txt")),
                Document(type="iiif", uid="book", src=allowed.url("/manifest.json"))):
        sources = expand(doc, fetcher, guarded)
        assert [s.url for s in sources] == targets
        with ImageFeed(sources, fetcher, guarded) as feed:
            errors = [loaded.error for loaded in feed]
        assert errors == [f"{target}: refused, {REFUSED}" for target in targets]
    assert probe.accepted() == 0


def test_a_callback_post_never_connects_to_a_refused_address(probe):
    session = guarded_session(allow_private=False)
    for host in LOOPBACK_NAMES:
        with pytest.raises(AddressNotAllowed, match=f"^{REFUSED}$"):
            session.post(f"http://{host}:{probe.port}/cb", data=b"{}", timeout=5, allow_redirects=False)
    assert probe.accepted() == 0


def test_a_post_does_not_follow_redirects(allowed, probe):
    allowed.routes["/cb"] = Response(b"", 307, headers={"Location": f"http://127.1:{probe.port}/cb"})
    session = guarded_session(allow_private=False, allowed_hosts=frozenset({ALLOWED}))
    response = session.post(allowed.url("/cb"), data=b"{}", timeout=5)
    assert response.status_code == 307
    assert probe.accepted() == 0


def test_private_urls_allowed_still_connect(data_folder, allowed):
    """ALLOW_PRIVATE_URLS=1 (development) turns the checks off: loopback addresses are fetched."""
    config = load_config({"ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data_folder), "ALLOW_PRIVATE_URLS": "1"})
    allowed.add("/x.png", b"\x89PNG", "image/png")
    assert Fetcher(config).fetch(allowed.url("/x.png"), kind="image").read_bytes() == b"\x89PNG"
    assert isinstance(guarded_session(allow_private=True).get(allowed.url("/x.png"), timeout=5), requests.Response)
