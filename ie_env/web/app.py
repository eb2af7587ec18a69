"""The offline web's search engine: an HTTP server on loopback that speaks the Openverse images API.

Routes (all ``GET``):

* ``/v1/images/?q=&page_size=&page=`` -> ``{"result_count", "page_count", "page", "page_size", "results": [...]}``
  where each result has Openverse's fields (``id``, ``title``, ``url``, ``thumbnail``, ``width``, ``height``,
  ``license``, ``license_version``, ``license_url``, ``creator``, ``tags`` as ``[{"name", "accuracy"}]``,
  ``source``, ``provider``, ``category``, ``filetype``, ``filesize``, ``attribution``, ``detail_url`` ...);
* ``/v1/images/<id>/`` -> one image's JSON; ``/v1/images/<id>/thumb/`` and ``/images/<id>.png`` -> PNG bytes;
* ``/healthz`` -> ``{"status": "ok", ...}``.

Bad requests get a 400 JSON body ``{"error": code, "field": name, "detail": message}``: an empty, over-long
(> 1000 characters) or control-character query, a page_size outside 1..500, a page outside 1..page_count.
Unknown paths and ids get 404. Fault injection (latency, error rate, corrupt image bytes) is off by default.

Concurrent requests run on threads; their query embeddings are micro-batched into one model call by
:class:`ie_env.web.index.BatchingEmbedder`, and the ranking is one matrix-vector product per query.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from ie_env.web.corpus import Corpus, open_corpus
from ie_env.web.index import MAX_QUERY_CHARS, BatchingEmbedder, CaptionIndex, InvalidQuery, validate_query
from ie_env.web.targets import TargetSet, load_target

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20
LICENSES = {
    "cc0": ("1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    "pdm": ("1.0", "https://creativecommons.org/publicdomain/mark/1.0/"),
    "by": ("4.0", "https://creativecommons.org/licenses/by/4.0/"),
    "by-sa": ("4.0", "https://creativecommons.org/licenses/by-sa/4.0/"),
    "mit": ("", "https://opensource.org/licenses/MIT"),
    "apache-2.0": ("2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
}
PHOTO_SITES = ("fashion-mnist",)
_IMAGE_PATH = re.compile(r"^/images/([A-Za-z0-9_.-]+)\.png$")
_DETAIL_PATH = re.compile(r"^/v1/images/([A-Za-z0-9_.-]+)/(thumb/)?$")


@dataclass(frozen=True)
class FaultConfig:
    """Deliberate misbehaviour for tests; everything off by default.

    Attributes:
        latency_s: extra seconds before every response.
        error_rate: probability that a request gets a 503 instead of its answer.
        corrupt_rate: probability that an image response carries corrupt (truncated, scrambled) bytes.
        seed: seed of the fault dice.
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    corrupt_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.latency_s <= 600.0:
            raise ValueError(f"FaultConfig.latency_s must be in [0, 600], got {self.latency_s}")
        for name in ("error_rate", "corrupt_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be in [0, 1], got {value}")

    @property
    def active(self) -> bool:
        return bool(self.latency_s or self.error_rate or self.corrupt_rate)


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the search API.

    Attributes:
        max_page_size: largest page_size accepted (Openverse: 500 when authenticated).
        max_page: deepest page (Openverse's MAX_PAGINATION_DEPTH is 20).
        max_results: cap on result_count (Elasticsearch's default window is 10,000).
        max_query_chars: longest query accepted.
        embed_batch: most queries embedded in one model call.
        faults: fault injection.
        verbose: log every request.
    """

    max_page_size: int = 500
    max_page: int = 20
    max_results: int = 10_000
    max_query_chars: int = MAX_QUERY_CHARS
    embed_batch: int = 64
    faults: FaultConfig = field(default_factory=FaultConfig)
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("max_page_size", "max_page", "max_results", "max_query_chars", "embed_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, got {getattr(self, name)}")


class BadRequest(ValueError):
    """A request parameter the API refuses (answered with 400)."""

    def __init__(self, field_name: str, detail: str, code: str = "invalid_parameter") -> None:
        super().__init__(detail)
        self.field = field_name
        self.detail = detail
        self.code = code


class SearchApp:
    """The API's logic, independent of the HTTP plumbing (so it can be tested and timed alone)."""

    def __init__(
        self, index: CaptionIndex, config: ServerConfig = ServerConfig(), target: str | None = None
    ) -> None:
        self.index = index
        self.corpus: Corpus = index.corpus
        self.config = config
        self.target = target
        self.embedder = BatchingEmbedder(
            index.embedder, max_batch=config.embed_batch, scorer=index.doc_scores
        )
        self._random = random.Random(config.faults.seed)
        self._random_lock = threading.Lock()
        self._fragments: dict[str, dict[int, str]] = {}
        self.requests = 0

    def close(self) -> None:
        self.embedder.close()

    def roll(self, probability: float) -> bool:
        if probability <= 0.0:
            return False
        with self._random_lock:
            return self._random.random() < probability

    def _ranked(self, params: dict[str, list[str]]) -> tuple[dict, list[int]]:
        """Validate a search request and rank it: (response fields but ``results``, result rows)."""
        if "q" not in params:
            raise BadRequest("q", "missing query parameter 'q'", "missing_query")
        try:
            query = validate_query(params["q"][0], self.config.max_query_chars)
        except InvalidQuery as exc:
            raise BadRequest("q", str(exc), "invalid_query") from None
        page_size = _int_param(params, "page_size", DEFAULT_PAGE_SIZE)
        if not 1 <= page_size <= self.config.max_page_size:
            raise BadRequest(
                "page_size", f"page_size must be in 1..{self.config.max_page_size}, got {page_size}"
            )
        page = _int_param(params, "page", 1)
        result_count = min(len(self.index), self.config.max_results)
        page_count = min(math.ceil(result_count / page_size), self.config.max_page)
        if not 1 <= page <= max(page_count, 1):
            raise BadRequest("page", f"page must be in 1..{page_count} for page_size {page_size}, got {page}")
        vector, scores = self.embedder.request(query)
        ranked = self.index.rank(query, vector, page_size, (page - 1) * page_size, scores=scores)
        meta = {"result_count": result_count, "page_count": page_count, "page_size": page_size, "page": page}
        return meta, [hit.row for hit in ranked]

    def search(self, params: dict[str, list[str]], base_url: str) -> dict:
        """Answer ``/v1/images/`` as a dict; raises BadRequest."""
        meta, rows = self._ranked(params)
        return {**meta, "results": [self.describe(row, base_url) for row in rows]}

    def search_json(self, params: dict[str, list[str]], base_url: str) -> bytes:
        """The same answer as :meth:`search`, serialised, from per-image JSON fragments cached per
        base URL (an image's description never changes while the server runs)."""
        meta, rows = self._ranked(params)
        fragments = self._fragments.setdefault(base_url, {})
        parts = []
        for row in rows:
            fragment = fragments.get(row)
            if fragment is None:
                fragment = fragments[row] = json.dumps(self.describe(row, base_url), separators=(",", ":"))
            parts.append(fragment)
        head = json.dumps(meta, separators=(",", ":"))[:-1]
        return f'{head},"results":[{",".join(parts)}]}}'.encode()

    def describe(self, row: int, base_url: str) -> dict:
        """One image in Openverse's result shape."""
        corpus = self.corpus
        image_id = corpus.ids[row]
        site = corpus.sites[row]
        license_code = corpus.licenses[row]
        version, license_url = LICENSES.get(license_code, ("", ""))
        title = corpus.titles[row]
        creator = corpus.creators[row] or None
        detail = f"{base_url}/v1/images/{image_id}/"
        licence_text = f"{license_code.upper()} {version}".strip() if license_code else "unknown licence"
        return {
            "id": image_id,
            "title": title,
            "indexed_on": None,
            "foreign_landing_url": detail,
            "url": f"{base_url}/images/{image_id}.png",
            "creator": creator,
            "creator_url": None,
            "license": license_code,
            "license_version": version,
            "license_url": license_url,
            "provider": site,
            "source": site,
            "category": "photograph" if site in PHOTO_SITES else "illustration",
            "genres": None,
            "filesize": int(corpus._lengths[row]),
            "filetype": "png",
            "tags": [{"name": tag, "accuracy": None} for tag in corpus.tags(row)],
            "attribution": f'"{title}" by {creator or "unknown"} is licensed under {licence_text}.',
            "fields_matched": ["caption"],
            "mature": False,
            "height": int(corpus.heights[row]),
            "width": int(corpus.widths[row]),
            "thumbnail": f"{detail}thumb/",
            "detail_url": detail,
            "related_url": f"{detail}related/",
            "unstable__sensitivity": [],
        }

    def image_row(self, image_id: str) -> int | None:
        """Row of a servable image: known and not excluded by the target set."""
        if not self.corpus.has(image_id) or self.index.is_excluded(image_id):
            return None
        return self.corpus.row(image_id)

    def health(self) -> dict:
        return {
            "status": "ok",
            "corpus": self.corpus.name,
            "images": len(self.index),
            "target": self.target,
            "requests": self.requests,
        }


def _int_param(params: dict[str, list[str]], name: str, default: int) -> int:
    if name not in params:
        return default
    raw = params[name][0].strip()
    if not re.fullmatch(r"[+-]?\d{1,9}", raw):
        raise BadRequest(name, f"{name} must be an integer, got {raw[:40]!r}")
    return int(raw)


def corrupt(data: bytes, rng: random.Random) -> bytes:
    """Damage image bytes so that no decoder accepts them: keep a prefix, scramble and truncate the rest."""
    keep = min(len(data) // 3, 64)
    tail = bytearray(data[keep : keep + max(16, len(data) // 3)])
    for i in range(len(tail)):
        tail[i] ^= rng.randrange(1, 256)
    return bytes(data[:keep]) + bytes(tail)


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
        return self.app.index

    def start(self) -> WebServer:
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
    """A caption index over ``corpus`` with ``target``'s images excluded."""
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
    config: ServerConfig = ServerConfig(),
    threads: int | None = None,
    background: bool = True,
) -> WebServer:
    """Start the search server; ``port=0`` picks a free port (read it from ``.port`` / ``.url``).

    Args:
        source: an index (used as is), or a corpus / corpus name to index (excluding ``target``'s images).
        target: target set name or object whose images the index excludes (ignored when ``source`` is an index).
        host: address to bind; loopback by default.
        port: TCP port, 0 for any free one.
        config: API limits and fault injection.
        threads: torch threads for query embedding (default ``$IE_ENV_THREADS`` or 1).
        background: serve on a daemon thread and return at once; if False, call ``serve_forever()``.
    """
    import torch

    torch.set_num_threads(threads or int(os.environ.get("IE_ENV_THREADS", "1")))
    index = source if isinstance(source, CaptionIndex) else build_index(source, target, progress=False)
    name = target if isinstance(target, str) else (target.name if target is not None else None)
    index.embedder.embed(["warm-up query"])
    server = WebServer(SearchApp(index, config, target=name), host, port)
    return server.start() if background else server
