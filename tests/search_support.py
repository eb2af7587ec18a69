"""Helpers for the search tests: a real HTTP server on 127.0.0.1 and a loopback-only network guard."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

DATA = Path(__file__).parent / "data" / "search"


def fixture_json(name: str) -> dict:
    """A recorded response from tests/data/search/."""
    return json.loads((DATA / name).read_text())


@dataclass
class Req:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Resp:
    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None


class FakeApi:
    """A threaded http.server on a free loopback port; ``handler(Req) -> Resp`` answers each request."""

    def __init__(self, handler: Callable[[Req], Resp]) -> None:
        self.handler = handler
        self.requests: list[Req] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Req(
                    method=self.command,
                    path=parts.path,
                    params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    form=dict(parse_qsl(body.decode())) if body else {},
                )
                api.requests.append(req)
                resp = api.handler(req)
                if resp.delay_s:
                    time.sleep(resp.delay_s)
                data = resp.raw if resp.raw is not None else json.dumps(resp.body).encode()
                try:
                    self.send_response(resp.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in resp.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api():
    """Factory fixture: ``fake_api(handler)`` starts a FakeApi that is closed after the test."""
    servers: list[FakeApi] = []

    def start(handler: Callable[[Req], Resp]) -> FakeApi:
        server = FakeApi(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _is_loopback_host(host: object) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail any DNS lookup or connection to a non-loopback address during the test; returns attempts."""
    attempts: list[object] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_loopback_host(host):
            attempts.append(host)
            raise OSError(f"test network guard: lookup of non-loopback host {host!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback_host(host):
            attempts.append(address)
            raise OSError(f"test network guard: connection to {address!r} refused")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return attempts


class FakeClock:
    """A monotonic clock that only moves when ``sleep`` is called (for limiter tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def free_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
