"""A misbehaving image server on 127.0.0.1 for the downloader tests, plus a loopback-only guard.

``HostileServer`` is a real threaded HTTP/1.1 server. Each path shows one kind of bad behaviour
(see ``Handler.route``), and ``/file/<name>`` serves what a test put in ``state.files`` (the
near-the-pixel-cap images made by the generators below); every request is logged with its path and User-Agent, and the server counts
bytes sent and the most requests it saw in flight at once.

``loopback_guard`` patches ``socket.socket.connect``/``connect_ex`` for the whole process: every
connection attempt is recorded, and one to an address outside 127.0.0.0/8 fails the test (it raises
and is recorded in ``violations``). SSRF tests assert that a refused URL caused no attempt at all.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import ipaddress
import math
import socket
import struct
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------
# images


def pattern_image(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A distinct RGB image per seed: a random 6x6 block pattern (phashes far apart)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return Image.fromarray(blocks, "RGB").resize(size, Image.Resampling.NEAREST)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (a decompression bomb's header) with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _zeros_compressed(n: int, wbits: int) -> bytes:
    """``n`` zero bytes compressed (streamed, so the zeros never exist all at once)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block[: min(len(block), n - done)]) for done in range(0, n, len(block))]
    return b"".join(parts) + packer.flush()


@functools.cache
def gzip_bomb(n: int = 50 * 1024 * 1024) -> bytes:
    """A gzip body that decodes to ``n`` zero bytes."""
    return _zeros_compressed(n, 16 + zlib.MAX_WBITS)


@functools.cache
def deflate_bomb(n: int = 50 * 1024 * 1024) -> bytes:
    """A zlib-wrapped deflate body (HTTP ``deflate``) that decodes to ``n`` zero bytes."""
    return _zeros_compressed(n, zlib.MAX_WBITS)


@functools.cache
def stacked_gzip_bomb(n: int = 64 * 1024 * 1024) -> bytes:
    """``gzip(gzip(zeros))``: a few KB on the wire for ``Content-Encoding: gzip, gzip``."""
    return gzip.compress(gzip_bomb(n), compresslevel=9)


def near_cap_side(max_pixels: int) -> int:
    """The side of the largest square image within ``max_pixels``."""
    return math.isqrt(max_pixels)


def gradient(width: int, height: int, peak: int, dtype: type) -> np.ndarray:
    """A diagonal gradient from 0 to ``peak`` (compresses well, is not constant)."""
    row = np.linspace(0, peak, width, dtype=np.float64).astype(dtype)
    return np.broadcast_to(row, (height, width)).copy()


def png_16bit_grey(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG (Pillow opens it as ``I;16``)."""
    return encode(Image.fromarray(gradient(width, height, 60000, np.uint16)), "PNG", compress_level=1)


def tiff_16bit_grey(width: int, height: int) -> bytes:
    """A 16-bit greyscale TIFF (deflate-compressed)."""
    image = Image.fromarray(gradient(width, height, 60000, np.uint16))
    return encode(image, "TIFF", compression="tiff_adobe_deflate")


def png_1bit(width: int, height: int) -> bytes:
    """A 1-bit PNG of stripes."""
    return encode(Image.fromarray(gradient(width, height, 1, np.uint8) > 0), "PNG", compress_level=1)


def png_palette(width: int, height: int, transparent: bool = True) -> bytes:
    """A palette PNG (256 colours), with one transparent entry when ``transparent``."""
    image = Image.fromarray(gradient(width, height, 255, np.uint8), "L").convert("P")
    image.putpalette(bytes(range(256)) * 3)
    params: dict[str, object] = {"transparency": 0} if transparent else {}
    return encode(image, "PNG", compress_level=1, **params)


def png_thin_rgba(long_side: int, short_side: int = 200) -> bytes:
    """A tall, narrow RGBA PNG: too narrow to box-reduce, the decoder's worst case."""
    arr = np.zeros((long_side, short_side, 4), dtype=np.uint8)
    arr[:, :, 0] = 200
    arr[:, :, 3] = gradient(short_side, long_side, 255, np.uint8)
    return encode(Image.fromarray(arr, "RGBA"), "PNG", compress_level=1)


def rgba_half_transparent() -> bytes:
    """64x64 RGBA: left half fully transparent (black), right half opaque red."""
    arr = np.zeros((64, 64, 4), dtype=np.uint8)
    arr[:, 32:] = (255, 0, 0, 255)
    return encode(Image.fromarray(arr, "RGBA"), "PNG")


# ---------------------------------------------------------------------------------------------
# the server


@dataclass
class ServerState:
    log: list[tuple[str, str]] = field(default_factory=list)  # (path with query, user agent)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    robots: str = "User-agent: *\nDisallow: /private/\n"
    delay: float = 0.0
    files: dict[str, tuple[bytes, str, dict[str, str]]] = field(default_factory=dict)  # /file/<name>
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _ in self.log]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    @property
    def state(self) -> ServerState:
        return self.server.state

    def do_GET(self) -> None:
        st = self.state
        with st.lock:
            st.log.append((self.path, self.headers.get("User-Agent", "")))
            st.hits[self.path] += 1
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with st.lock:
                st.in_flight -= 1

    # -- helpers --------------------------------------------------------------------------

    def send(
        self, body: bytes, ctype: str = "image/png", code: int = 200, headers: dict | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        with self.state.lock:
            self.state.bytes_sent[self.path] += len(body)

    def redirect(self, location: bytes | str, code: int = 302) -> None:
        raw = location if isinstance(location, bytes) else location.encode()
        self.wfile.write(b"HTTP/1.1 %d Found\r\nLocation: " % code + raw + b"\r\nContent-Length: 0\r\n\r\n")

    def stream_zeros(self, total: int, with_length: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        if with_length:
            self.send_header("Content-Length", str(total))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        block = b"\0" * 65536
        sent = 0
        while sent < total:
            self.wfile.write(block)
            sent += len(block)
            with self.state.lock:
                self.state.bytes_sent[self.path] += len(block)

    # -- routes ---------------------------------------------------------------------------

    def route(self) -> None:  # noqa: C901 - one branch per behaviour is the point
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        if self.state.delay:
            time.sleep(self.state.delay)
        if path == "/robots.txt":
            self.send(self.state.robots.encode(), "text/plain")
        elif path.startswith("/img/") or path.startswith("/private/"):
            stem, _, ext = path.rsplit("/", 1)[1].partition(".")
            seed = int(stem) if stem.isdigit() else sum(stem.encode())
            fmt = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP", "tif": "TIFF"}[
                ext
            ]
            self.send(encode(pattern_image(seed), fmt), f"image/{ext}")
        elif path.startswith("/slow/"):
            time.sleep(float(query.get("s", ["0.15"])[0]))
            self.send(encode(pattern_image(int(path.split("/")[2].split(".")[0])), "PNG"))
        elif path == "/same-a.png" or path == "/same-b.png":
            self.send(encode(pattern_image(4242, (320, 240)), "PNG"))
        elif path == "/near.jpg":  # the same picture as /same-*.png, re-encoded: different bytes
            self.send(encode(pattern_image(4242, (320, 240)), "JPEG", quality=90), "image/jpeg")
        elif path == "/rgba.png":
            self.send(rgba_half_transparent())
        elif path == "/tiny.png":
            self.send(encode(pattern_image(1, (8, 8)), "PNG"))
        elif path == "/bomb.png":  # 400 Mpx: Pillow's DecompressionBombError
            self.send(png_header_only(20000, 20000))
        elif path == "/bomb-warn.png":  # 100 Mpx: Pillow's warning, made an error
            self.send(png_header_only(10000, 10000))
        elif path == "/bomb-cap.png":  # 49 Mpx: above our max_pixels
            self.send(png_header_only(7000, 7000))
        elif path == "/truncated.jpg":
            data = encode(pattern_image(7, (400, 300)), "JPEG", quality=95)
            self.send(data[: len(data) // 2], "image/jpeg")
        elif path == "/truncated.png":
            data = encode(pattern_image(8, (300, 300)), "PNG")
            self.send(data[: len(data) // 2])
        elif path == "/html.jpg":
            self.send(b"<!doctype html><html><body>not an image</body></html>", "image/jpeg")
        elif path == "/html":
            self.send(b"<html>" + b"x" * 100000 + b"</html>", "text/html; charset=utf-8")
        elif path == "/huge":
            self.stream_zeros(100 * 1024 * 1024, with_length=True)
        elif path == "/huge-chunked":
            self.stream_zeros(100 * 1024 * 1024, with_length=False)
        elif path == "/gzip-bomb":
            self.send(gzip_bomb(), "image/png", headers={"Content-Encoding": "gzip"})
        elif path == "/deflate-bomb":
            self.send(deflate_bomb(), "image/png", headers={"Content-Encoding": "deflate"})
        elif path == "/gzip-gzip":  # stacked in one header
            self.send(stacked_gzip_bomb(), "image/png", headers={"Content-Encoding": "gzip, gzip"})
        elif path == "/gzip-gzip-lines":  # stacked in two header lines
            self.send_response(200)
            body = stacked_gzip_bomb()
            for key, value in (("Content-Type", "image/png"), ("Content-Length", str(len(body)))):
                self.send_header(key, value)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(body)
        elif path.startswith("/encoding/"):  # an image sent with the given Content-Encoding
            coding = path.split("/")[2]
            body = encode(pattern_image(777), "PNG")
            packed = zlib.compress(body) if coding == "deflate" else gzip.compress(body)
            self.send(packed if coding in ("gzip", "deflate") else body, headers={"Content-Encoding": coding})
        elif path == "/bigger-decoded":  # 3 MiB of PNG-looking bytes gzip'ed to a few KB
            body = gzip.compress(encode(pattern_image(9), "PNG") + b"\0" * (3 << 20))
            self.send(body, headers={"Content-Encoding": "gzip"})
        elif path.startswith("/file/"):
            body, ctype, headers = self.state.files[path.split("/", 2)[2]]
            self.send(body, ctype, headers=headers)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.1)
        elif path.startswith("/loop/"):
            self.redirect(f"/loop/{int(path.split('/')[2]) + 1}")
        elif path == "/redirect":
            self.redirect(query["to"][0])
        elif path == "/redirect-bad-utf8":
            self.redirect(b"/img/\xff\xfe.png")
        elif path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            headers = {"Retry-After": query["retry_after"][0]} if "retry_after" in query else {}
            self.send(b"nope", "text/plain", code=code, headers=headers)
        elif path.startswith("/flaky/"):  # first answer 429 (Retry-After from ?ra=), then an image
            key = path
            with self.state.lock:
                first = self.state.hits[self.path] == 1
            if first:
                self.send(b"slow down", "text/plain", 429, {"Retry-After": query.get("ra", ["0"])[0]})
            else:
                self.send(encode(pattern_image(int(key.split("/")[2].split(".")[0])), "PNG"))
        elif path.startswith("/xrobots/"):
            value = urllib.parse.unquote(path.split("/", 2)[2])
            self.send(encode(pattern_image(len(value) + 500), "PNG"), headers={"X-Robots-Tag": value})
        else:
            self.send(b"not found", "text/plain", 404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: ServerState


class HostileServer:
    """Run :class:`Handler` on ``host`` (127.0.0.1 by default) and an ephemeral port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.httpd = _Server((host, 0), Handler)
        self.httpd.state = ServerState()
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def state(self) -> ServerState:
        return self.httpd.state

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------
# the loopback-only connection guard


@dataclass
class ConnectRecorder:
    attempts: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def attempted(self, host: str) -> bool:
        return any(a == host for a in self.attempts)


@contextlib.contextmanager
def loopback_guard() -> Iterator[ConnectRecorder]:
    """Record every socket connect in this process; refuse (and record) any outside 127.0.0.0/8."""
    recorder = ConnectRecorder()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    loopback = ipaddress.ip_network("127.0.0.0/8")

    def check(address: object) -> None:
        if not isinstance(address, tuple):  # unix socket paths etc.
            return
        host = str(address[0])
        recorder.attempts.append(host)
        try:
            ok = ipaddress.ip_address(host.split("%")[0]) in loopback
        except ValueError:
            ok = False
        if not ok:
            recorder.violations.append(host)
            raise ConnectionRefusedError(f"test guard: connection to {host} outside 127.0.0.0/8")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield recorder
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]


def fake_resolver(table: dict[str, list[str]]) -> Callable[[str, int], object]:
    """An async resolver answering from ``table`` (names absent from it fail like NXDOMAIN)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} not in the test resolver")
        return list(table[host])

    return resolve
