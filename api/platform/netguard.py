"""The SSRF guard: outgoing requests (document downloads, callbacks) reach public addresses only.

Two layers: `check_url` refuses a URL early (at submit time) by resolving its host, and
`guarded_session` checks the address each connection *actually* reached, right after connect and
before a byte is sent, so DNS rebinding and redirects to internal hosts are refused too.
`ALLOW_PRIVATE_URLS=1` (development, tests on loopback) turns both off. `ALLOWED_SOURCE_HOSTS`
names hosts let through whatever they resolve to (a front's media server on a private network),
while every other host stays guarded, redirects included.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5


class AddressNotAllowed(ValueError):
    """The URL's host is (or resolves to) a loopback, private, link-local or reserved address."""


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private ranges,
    link-local (169.254/16, which holds cloud metadata services), multicast, reserved, and for
    IPv6 forms that embed such an IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_public_address(str(embedded))
        if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 wraps an IPv4 address
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast


def check_address(address: str, *, allow_private: bool) -> None:
    if not allow_private and not is_public_address(address):
        raise AddressNotAllowed(f"address {address} is not a public address")


def check_url(url: str, *, allow_private: bool, resolve: bool = True, allowed_hosts: frozenset[str] = frozenset()) -> None:
    """Refuse a URL that is not http(s), has no host, or whose host resolves to a non-public
    address (unless the host is in `allowed_hosts`, lower-case names)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError(f"only http and https URLs are accepted, not {parts.scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are not accepted")
    if allow_private or host.lower() in allowed_hosts:
        return
    try:
        check_address(str(ipaddress.ip_address(host)), allow_private=False)
        return
    except ValueError as exc:
        if isinstance(exc, AddressNotAllowed):
            raise
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        raise AddressNotAllowed(f"host {host} is local")
    if not resolve:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"host {host} does not resolve: {exc.strerror}") from None
    for info in infos:
        check_address(info[4][0], allow_private=False)


def _guarded(connection_cls: type, allow_private: bool, allowed_hosts: frozenset[str]) -> type:
    class Guarded(connection_cls):
        def _new_conn(self):
            sock = super()._new_conn()
            if (self.host or "").lower() in allowed_hosts:
                return sock
            try:
                check_address(sock.getpeername()[0], allow_private=allow_private)
            except AddressNotAllowed:
                sock.close()
                raise
            return sock

    Guarded.__name__ = f"Guarded{connection_cls.__name__}"
    return Guarded


@functools.lru_cache(maxsize=8)
def _pool_classes(allow_private: bool, allowed_hosts: frozenset[str]) -> dict[str, type]:
    http = type("GuardedHTTPPool", (HTTPConnectionPool,),
                {"ConnectionCls": _guarded(HTTPConnection, allow_private, allowed_hosts)})
    https = type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                 {"ConnectionCls": _guarded(HTTPSConnection, allow_private, allowed_hosts)})
    return {"http": http, "https": https}


class GuardedAdapter(HTTPAdapter):
    def __init__(self, allow_private: bool, allowed_hosts: frozenset[str] = frozenset(), **kwargs):
        self.allow_private = allow_private
        self.allowed_hosts = allowed_hosts
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.allow_private, self.allowed_hosts)


def guarded_session(*, allow_private: bool, pool_size: int = 10,
                    allowed_hosts: frozenset[str] = frozenset()) -> requests.Session:
    """A requests Session whose every connection, redirects included, is checked after connect.

    Environment proxies are ignored (a proxy would hide the address reached)."""
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = MAX_REDIRECTS
    adapter = GuardedAdapter(allow_private, allowed_hosts, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
