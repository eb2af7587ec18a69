"""URL validation and the SSRF guard: which addresses the downloader may connect to.

Two layers, both applied before any socket is opened:

1. :class:`AddressPolicy` parses and checks every URL (the first one and each redirect hop):
   http/https only, no credentials, bounded length, valid UTF-8; the host is resolved and every
   address it resolves to must be globally routable (not loopback, private, link-local, cloud
   metadata, CGNAT, multicast, reserved or unspecified), unless ``host`` or ``host:port`` is on
   the allow-list.
2. :class:`GuardedBackend` is the httpcore network backend the HTTP client connects through. It
   resolves the host itself with the same policy and connects to the checked address only, so a
   DNS answer that changes between check and connect (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddressError(Exception):
    """Raised inside the HTTP client when a connection to a forbidden address is refused."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


@dataclass(frozen=True)
class ParsedURL:
    """A URL that passed the syntactic checks."""

    url: httpx.URL
    host: str
    port: int

    def __str__(self) -> str:
        return str(self.url)


def parse_url(raw: object, max_length: int = 2048) -> tuple[ParsedURL | None, str | None]:
    """Check a URL's syntax; return ``(parsed, None)`` or ``(None, reason)``. Never raises."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None, "URL is not valid UTF-8"
    if not isinstance(raw, str):
        return None, f"URL must be a string, got {type(raw).__name__}"
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return None, "URL is not valid UTF-8 (contains lone surrogates)"
    if len(raw) > max_length:
        return None, f"URL is {len(raw)} characters long (limit {max_length})"
    if not raw or any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in raw):
        return None, "URL is empty or contains whitespace or control characters"
    try:
        url = httpx.URL(raw)
    except Exception as exc:  # httpx.InvalidURL and friends
        return None, f"unparsable URL: {exc}"[:200]
    if url.scheme not in ALLOWED_SCHEMES:
        return None, f"scheme {url.scheme or '(none)'!r} is not allowed (only http and https)"
    if not url.host:
        return None, "URL has no host"
    if url.userinfo:
        return None, "URLs with credentials are not fetched"
    if len(str(url)) > max_length:
        return None, f"URL is longer than {max_length} characters once encoded"
    port = url.port or DEFAULT_PORTS[url.scheme]
    return ParsedURL(url, url.host.lower().rstrip("."), port), None


def blocked_reason(address: str) -> str | None:
    """Why ``address`` is not a public internet address, or None if it is one."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}"):
            kind = name.replace("_", "-")
            if ip == ipaddress.ip_address("169.254.169.254"):
                kind = "cloud metadata (link-local)"
            return f"{ip} is a {kind} address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def normalise_allowed(entries: Iterable[str]) -> frozenset[tuple[str, int | None]]:
    """Turn ``host`` / ``host:port`` / ``[v6]:port`` strings into ``(host, port or None)`` pairs."""
    out: set[tuple[str, int | None]] = set()
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip() or "/" in entry:
            raise ValueError(f"allowed host must look like 'host' or 'host:port', got {entry!r}")
        try:
            url = httpx.URL("http://" + entry.strip())
        except Exception as exc:
            raise ValueError(f"allowed host {entry!r} does not parse: {exc}") from None
        if not url.host:
            raise ValueError(f"allowed host {entry!r} has no host part")
        out.add((url.host.lower().rstrip("."), url.port))
    return frozenset(out)


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver (getaddrinfo in a thread); unique addresses."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


class AddressPolicy:
    """Decides, with a small DNS cache, which addresses a host may be reached at.

    Args:
        allowed_hosts: ``host`` or ``host:port`` strings that may resolve anywhere (e.g. the
            offline web on ``127.0.0.1:PORT``).
        resolver: async ``(host, port) -> [address, ...]``; defaults to the system resolver.
        ttl: seconds a resolution is reused.
    """

    def __init__(
        self, allowed_hosts: Iterable[str] = (), resolver: Resolver | None = None, ttl: float = 60.0
    ) -> None:
        self.allowed = normalise_allowed(allowed_hosts)
        self._resolver = resolver or system_resolver
        self._ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def is_allowed(self, host: str, port: int) -> bool:
        """Return whether ``host`` (on ``port``) is on the allow-list."""
        host = host.lower().rstrip(".")
        return (host, port) in self.allowed or (host, None) in self.allowed

    async def addresses(self, host: str, port: int) -> list[str]:
        """Addresses ``host`` may be connected at; raises :class:`BlockedAddressError` if none.

        Resolution failures raise :class:`OSError` (``socket.gaierror``).
        """
        host = host.lower().rstrip(".").strip("[]")
        literal = _ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            key = (host, port)
            cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                addresses = cached[1]
            else:
                addresses = await self._resolver(host, port)
                if not addresses:
                    raise socket.gaierror(f"{host} resolved to no addresses")
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + self._ttl, addresses)
        if self.is_allowed(host, port):
            return addresses
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                raise BlockedAddressError(host, f"resolves to {reason}" if literal is None else reason)
        return addresses


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend that connects only to addresses the :class:`AddressPolicy` approves."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host`` with the address policy and connect to a checked address only."""
        try:
            addresses = await asyncio.wait_for(self.policy.addresses(host, port), timeout)
        except BlockedAddressError:
            raise
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse: unix sockets are never allowed."""
        raise BlockedAddressError(path, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Sleep (delegated to the wrapped backend)."""
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool connects through :class:`GuardedBackend`.

    Environment proxies are ignored (a proxy would connect on our behalf, bypassing the guard).
    """

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits, verify: bool = True) -> None:
        super().__init__(limits=limits, trust_env=False, verify=verify)
        # httpx has no public hook for the network backend; build the same pool with ours.
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(policy),
        )
