"""The search API's logic, apart from the HTTP plumbing: request checks, ranking, Openverse-shaped answers.

``/v1/images/?q=&page_size=&page=`` answers ``{"result_count", "page_count", "page", "page_size",
"results": [...]}`` where each result has Openverse's fields (``id``, ``title``, ``url``, ``thumbnail``,
``width``, ``height``, ``license``, ``license_version``, ``license_url``, ``creator``, ``tags`` as
``[{"name", "accuracy"}]``, ``source``, ``provider``, ``category``, ``filetype``, ``filesize``,
``attribution``, ``detail_url`` ...). A request the API refuses raises :class:`BadRequest` (answered
with 400): a query :func:`ie_env.search.base.validate_query` refuses (the same rules every client
checks before sending), a page_size outside 1..``max_page_size``, a page outside 1..page_count.

Concurrent requests' query embeddings are micro-batched into one model call by
:class:`~ie_env.web.embedder.BatchingEmbedder`, and ranked by the caption index.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
from dataclasses import dataclass, field

from ie_env.search.base import MAX_QUERY_CHARS, InvalidQuery, validate_query
from ie_env.validate import check_bool, check_int, check_ints, check_number, fail
from ie_env.web.corpus import Corpus
from ie_env.web.index import BatchingEmbedder, CaptionIndex

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
        check_number(self, "latency_s", 0.0, 600.0)
        check_number(self, "error_rate", 0.0, 1.0)
        check_number(self, "corrupt_rate", 0.0, 1.0)
        check_int(self, "seed")

    @property
    def active(self) -> bool:
        """Return whether any fault is switched on."""
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
        check_ints(self, ("max_page_size", "max_page", "max_results", "max_query_chars", "embed_batch"), 1)
        check_bool(self, "verbose")
        if not isinstance(self.faults, FaultConfig):
            fail(self, "faults", "be a FaultConfig")


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
        self, index: CaptionIndex, config: ServerConfig | None = None, target: str | None = None
    ) -> None:
        self.index = index
        self.corpus: Corpus = index.corpus
        self.config = config = config or ServerConfig()
        self.target = target
        self.embedder = BatchingEmbedder(
            index.embedder, max_batch=config.embed_batch, scorer=index.doc_scores
        )
        self._random = random.Random(config.faults.seed)
        self._random_lock = threading.Lock()
        self._fragments: dict[str, dict[int, str]] = {}
        self.requests = 0

    def close(self) -> None:
        """Stop the worker and release what it holds."""
        self.embedder.close()

    def roll(self, probability: float) -> bool:
        """Return True with ``probability`` (the fault dice, seeded by ``FaultConfig.seed``)."""
        if probability <= 0.0:
            return False
        with self._random_lock:
            return self._random.random() < probability

    def _ranked(self, params: dict[str, list[str]]) -> tuple[dict, list[int]]:
        """Validate a search request and rank it: (response fields but ``results``, result rows)."""
        if "q" not in params:
            raise BadRequest("q", "missing query parameter 'q'", "missing_query")
        try:
            query = validate_query(params["q"][0], engine="ie-web", max_chars=self.config.max_query_chars)
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
        """Return the same answer as :meth:`search`, serialised.

        Built from per-image JSON fragments cached per base URL (an image's description never changes
        while the server runs).
        """
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
            "filesize": corpus.stored_size(row),
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
        """Return the ``/healthz`` answer."""
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
