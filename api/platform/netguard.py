"""The SSRF guard: outgoing requests (document downloads, callbacks) reach public addresses only.

Two layers: `check_url` refuses a URL early (at submit time) by resolving its host, and
`guarded_session` resolves the host of every connection itself, checks *every* address before
connecting, then connects to one of those checked addresses (no second lookup that a rebinding
DNS server could answer differently). The session follows redirects itself, checking each target
the same way, at most `MAX_REDIRECTS` of them. Nothing ever connects to a refused address, and
every refusal reads `REFUSED`, so an error cannot tell an open port from a closed one (no internal
port scanner). `ALLOW_PRIVATE_URLS=1` (development, tests on loopback) turns the address checks
off. `ALLOWED_SOURCE_HOSTS` names hosts let through whatever they resolve to (a front's media
server on a private network), while every other host stays guarded, redirects included.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util.connection import allowed_gai_family

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
REFUSED = "not a public address"  # the one text of every refusal: it must not tell why, or what is there
LOCAL_NAMES = ("localhost", "localhost.localdomain")
REDIRECTED_METHODS = ("GET", "HEAD")  # downloads; a callback's POST never follows a redirect
# NAT64's well-known prefix: the IPv4 address it reaches is in the last 32 bits (RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges never routed on the Internet, whatever they embed: IPv4-compatible (::a.b.c.d,
# deprecated), IPv4-translated (::ffff:0:a.b.c.d, SIIT) and NAT64 local-use prefixes.
_NEVER_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48"))


class AddressNotAllowed(ValueError):
    """The URL's host is (or resolves to) a loopback, private, link-local or reserved address."""

    def __init__(self, message: str = REFUSED):
        super().__init__(message)


class Address(NamedTuple):
    """One result of resolving a host: what `socket.socket` and `connect` need."""
    family: int
    sockaddr: tuple


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private ranges,
    link-local (169.254/16, which holds cloud metadata services), multicast and reserved ones.
    An IPv6 form that carries an IPv4 address (mapped, 6to4, Teredo, NAT64) is as public as
    that IPv4 address, since it may reach it; forms the Internet never routes (IPv4-compatible,
    IPv4-translated, NAT64 local-use) are never public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _NEVER_PUBLIC):
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(str(embedded))
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to `ip` may end up at, for the forms that carry one."""
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_address(address: str, *, allow_private: bool) -> None:
    """Raise AddressNotAllowed (always with the text `REFUSED`) for a non-public address."""
    if not allow_private and not is_public_address(address):
        raise AddressNotAllowed()


def resolve_host(host: str, port: int) -> list[Address]:
    """The addresses a connection to `host` may use, as urllib3 would look them up (the one DNS
    query of a connection; tests replace this function with a fake resolver)."""
    infos = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    return [Address(family, sockaddr) for family, _type, _proto, _canonical, sockaddr in infos]


def checked_addresses(host: str, port: int, *, allow_private: bool,
                      allowed_hosts: frozenset[str] = frozenset()) -> list[Address]:
    """Resolve `host` once and return its addresses, after checking every one of them: a name
    with any non-public address is refused whole (no fallback that an attacker could steer).
    A host in `allowed_hosts` (lower-case names) is not checked. Raises socket.gaierror when
    the host does not resolve."""
    host = host.strip("[]")
    addresses = resolve_host(host, port)
    if not allow_private and _name(host) not in allowed_hosts:
        for address in addresses:
            check_address(address.sockaddr[0], allow_private=False)
    return addresses


def _name(host: str) -> str:
    """A host as compared with ALLOWED_SOURCE_HOSTS and the local names."""
    return host.strip("[]").lower().rstrip(".")


def check_url(url: str, *, allow_private: bool, resolve: bool = True,
              allowed_hosts: frozenset[str] = frozenset()) -> None:
    """Refuse a URL that is not http(s), has no host, or whose host is (or, with `resolve`,
    resolves to) a non-public address, unless the host is in `allowed_hosts` (lower-case names).

    Without `resolve`, names are left to the connection, which resolves and checks them before
    connecting (`guarded_session`)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError(f"only http and https URLs are accepted, not {parts.scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are not accepted")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)  # ValueError when out of range
    name = _name(host)
    if allow_private or name in allowed_hosts:
        return
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(str(literal), allow_private=False)
        return
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        raise AddressNotAllowed()
    if not resolve:
        return
    try:
        checked_addresses(host, port, allow_private=False, allowed_hosts=allowed_hosts)
    except socket.gaierror as exc:
        raise ValueError(f"host {host} does not resolve: {exc.strerror}") from None


def _connect(addresses: list[Address], timeout: Any, source_address: Any, socket_options: Any) -> socket.socket:
    """Connect to the first of `addresses` that answers (as urllib3's create_connection does,
    but to addresses already resolved and checked)."""
    error: OSError | None = None
    for address in addresses:
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, (int, float)):  # not urllib3's 'default' token
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(address.sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError("no address to connect to")


def _guarded(connection_cls: type, allow_private: bool, allowed_hosts: frozenset[str]) -> type:
    class Guarded(connection_cls):
        def _new_conn(self) -> socket.socket:
            """Resolve, check, then connect to a checked address: a refused address is never
            connected to, and no later lookup can swap in another one."""
            try:
                addresses = checked_addresses(self._dns_host, self.port, allow_private=allow_private,
                                              allowed_hosts=allowed_hosts)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            try:
                sock = _connect(addresses, self.timeout, self.source_address, self.socket_options)
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                f"(connect timeout={self.timeout})") from exc
            except OSError as exc:
                raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
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


class GuardedSession(requests.Session):
    """A Session that checks each URL it requests and follows redirects itself.

    requests' own redirect loop reads each redirect's whole body and leaves each target to the
    connection alone; here every target is checked by `check_url` before its request, its
    connection resolves and checks its addresses before connecting, a streamed redirect's body
    is never read, and only GET and HEAD follow redirects, at most `max_redirects`."""

    def __init__(self, *, allow_private: bool, allowed_hosts: frozenset[str], pool_size: int):
        super().__init__()
        self.trust_env = False  # a proxy from the environment would hide the address reached
        self.max_redirects = MAX_REDIRECTS
        self.allow_private = allow_private
        self.allowed_hosts = allowed_hosts
        adapter = GuardedAdapter(allow_private, allowed_hosts, pool_connections=pool_size, pool_maxsize=pool_size)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        follow = kwargs.pop("allow_redirects", True) and method.upper() in REDIRECTED_METHODS
        history: list[requests.Response] = []
        while True:
            check_url(url, allow_private=self.allow_private, resolve=False, allowed_hosts=self.allowed_hosts)
            response = super().request(method, url, allow_redirects=False, **kwargs)
            target = self.get_redirect_target(response) if follow else None
            if not target:
                response.history = history
                return response
            response.close()  # a streamed redirect's body is not read: the connection goes instead
            history.append(response)
            if len(history) > self.max_redirects:
                raise requests.TooManyRedirects(f"more than {self.max_redirects} redirects", response=response)
            url = urljoin(response.url, target)
            kwargs["params"] = None  # the query given for the first URL is not added to the next


def guarded_session(*, allow_private: bool, pool_size: int = 10,
                    allowed_hosts: frozenset[str] = frozenset()) -> requests.Session:
    """A requests Session whose every connection, redirects included, reaches only addresses
    checked before connecting (see `GuardedSession`). Environment proxies are ignored."""
    return GuardedSession(allow_private=allow_private, allowed_hosts=allowed_hosts, pool_size=pool_size)
