"""The offline web's search engine: an HTTP server on loopback that speaks the Openverse images API.

Routes (all ``GET``; the answers are made by :class:`ie_env.web.app.SearchApp`):

* ``/v1/images/?q=&page_size=&page=`` -> Openverse's search answer;
* ``/v1/images/<id>/`` -> one image's JSON; ``/v1/images/<id>/thumb/`` and ``/images/<id>.png`` -> PNG bytes
  (the corpus' stored PNG, byte for byte);
* ``/healthz`` -> ``{"status": "ok", ...}``.

Bad requests get a 400 JSON body ``{"error": code, "field": name, "detail": message}``; unknown paths and
ids get 404. Fault injection (latency, error rate, corrupt image bytes) is off by default. Requests run
on threads. Starting a server never changes process-wide settings such as torch's thread count: only
the ``ie-web`` command line, a process of its own, sets those.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from ie_env.web.app import BadRequest, FaultConfig, SearchApp, ServerConfig, corrupt
from ie_env.web.corpus import Corpus, open_corpus
from ie_env.web.index import CaptionIndex
from ie_env.web.targets import TargetSet, load_target

__all__ = [
    "FaultConfig",
    "SearchApp",
    "ServerConfig",
    "WebServer",
    "build_index",
    "corrupt",
    "start_server",
]

log = logging.getLogger(__name__)

_IMAGE_PATH = re.compile(r"^/images/([A-Za-z0-9_.-]+)\.png$")
_DETAIL_PATH = re.compile(r"^/v1/images/([A-Za-z0-9_.-]+)/(thumb/)?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ie-web/1"
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        if self.server.app.config.verbose:
            log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        app = self.server.app
        app.requests += 1
        split = urlsplit(self.path)
        path = unquote(split.path)
        faults = app.config.faults
        if path != "/healthz" and faults.active:
            if faults.latency_s:
                time.sleep(faults.latency_s)
            if app.roll(faults.error_rate):
                self._json(503, {"error": "injected_fault", "detail": "fault injection: service unavailable"})
                return
        try:
            if path in ("/v1/images/", "/v1/images"):
                params = parse_qs(split.query, keep_blank_values=True)
                body = app.search_json(params, self._base_url())
                self._send(200, body, "application/json")
            elif path == "/healthz":
                self._json(200, app.health())
            elif match := _IMAGE_PATH.match(path):
                self._image(match.group(1))
            elif match := _DETAIL_PATH.match(path):
                if match.group(2):
                    self._image(match.group(1))
                else:
                    row = app.image_row(match.group(1))
                    if row is None:
                        self._not_found(f"no image with id {match.group(1)!r}")
                    else:
                        self._json(200, app.describe(row, self._base_url()))
            else:
                self._not_found(f"no route for {path!r}")
        except BadRequest as exc:
            self._json(400, {"error": exc.code, "field": exc.field, "detail": exc.detail})
        except Exception as exc:  # noqa: BLE001 - a server answers 500, it does not die
            log.exception("internal error on %s", self.path)
            self._json(500, {"error": "internal_error", "detail": f"{type(exc).__name__}: {exc}"})

    def do_POST(self) -> None:  # noqa: N802
        self._json(405, {"error": "method_not_allowed", "detail": "only GET is supported"})

    def _base_url(self) -> str:
        host, port = self.server.server_address[:2]
        if host in ("0.0.0.0", "", "::"):
            return f"http://{self.headers.get('Host') or f'127.0.0.1:{port}'}"
        return f"http://{host}:{port}"

    def _image(self, image_id: str) -> None:
        app = self.server.app
        row = app.image_row(image_id)
        if row is None:
            self._not_found(f"no image with id {image_id!r}")
            return
        data = app.corpus.image_bytes(row)
        if app.roll(app.config.faults.corrupt_rate):
            with app._random_lock:
                data = corrupt(data, app._random)
        self._send(200, data, "image/png", extra={"Cache-Control": "public, max-age=86400"})

    def _not_found(self, detail: str) -> None:
        self._json(404, {"error": "not_found", "detail": detail})

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body, separators=(",", ":")).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: SearchApp) -> None:
        self.app = app
        super().__init__(address, _Handler)


class WebServer:
    """A running search server (see :func:`start_server`). Use as a context manager or call :meth:`stop`."""

    def __init__(self, app: SearchApp, host: str, port: int) -> None:
        self.app = app
        self._server = _Server((host, port), app)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (the search endpoint is ``url + '/v1/images/'``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def index(self) -> CaptionIndex:
        """Return the caption index the server ranks with."""
        return self.app.index

    def start(self) -> WebServer:
        """Serve on a daemon thread and return self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving and close the socket and the embedder."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._close()

    def _close(self) -> None:
        self._server.server_close()
        self.app.close()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_index(
    corpus: str | Corpus = "web",
    target: str | TargetSet | None = None,
    *,
    progress: bool = True,
    threads: int | None = None,
) -> CaptionIndex:
    """Return a caption index over ``corpus`` with ``target``'s images excluded.

    Args:
        corpus: a corpus or corpus name (default: the target's corpus).
        target: a target set name or object, or None.
        progress: progress bars while building.
        threads: torch threads while embedding captions only; the caller's count is restored after.
    """
    if isinstance(target, str):
        target = load_target(target, corpus=corpus if isinstance(corpus, Corpus) else None, progress=progress)
    if isinstance(corpus, str):
        corpus = target.corpus if target is not None else open_corpus(corpus, progress=progress)
    excluded = target.excluded_ids if target is not None else ()
    return CaptionIndex(corpus, excluded, progress=progress, threads=threads)


def start_server(
    source: CaptionIndex | Corpus | str = "web",
    *,
    target: str | TargetSet | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ServerConfig | None = None,
    background: bool = True,
) -> WebServer:
    """Start the search server; ``port=0`` picks a free port (read it from ``.port`` / ``.url``).

    Query embedding runs with the caller's torch thread count: nothing here changes it.

    Args:
        source: an index (used as is), or a corpus / corpus name to index (excluding ``target``'s images).
        target: target set name or object whose images the index excludes (ignored when ``source`` is an index).
        host: address to bind; loopback by default.
        port: TCP port, 0 for any free one.
        config: API limits and fault injection (default :class:`ServerConfig`).
        background: serve on a daemon thread and return at once; if False, call ``serve_forever()``.

    Returns:
        The server, already serving when ``background`` is True.
    """
    index = source if isinstance(source, CaptionIndex) else build_index(source, target, progress=False)
    name = target if isinstance(target, str) else (target.name if target is not None else None)
    index.embedder.embed(["warm-up query"])
    server = WebServer(SearchApp(index, config or ServerConfig(), target=name), host, port)
    return server.start() if background else server
