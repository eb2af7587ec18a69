"""Query descriptors (the paper's "Ours++"): a word or two put before a concept's query.

In Internet Explorer the largest single gain came from prefixing every concept with a generated
descriptor ("baby duck", "brown labrador retriever"): each query of the same concept then reaches
different images. The query sent is ``descriptor + " " + concept query``; one descriptor is drawn per
query. Three sources share :class:`DescriptorSource`:

* ``none``: the plain concept query (descriptor ``""``);
* ``wordnet``: offline, from WordNet itself: adjectives linked to the concept or its hypernyms, plus a
  curated list of generic visual adjectives (:mod:`ie_env.concepts.wordnet_descriptors`);
* ``llm``: a language model behind any OpenAI-compatible ``chat/completions`` endpoint, with the
  paper's few-shot prompt (:mod:`ie_env.concepts.llm_descriptors`).

Draws come from the caller's ``numpy`` generator only, so a seeded env draws the same descriptors.

The frozen world ranks descriptor queries on the fly: :func:`rank_query` ranks one arbitrary query
against a :class:`~ie_env.web.index.CaptionIndex` exactly as the search server answers it (the same
float32 query embedding, the same score matrix product, the same tie-break), and :class:`QueryRanker`
caches those rankings.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ie_env.concepts.queries import normalize_text
from ie_env.search.base import InvalidQuery, validate_query
from ie_env.validate import check_bool, check_choice, check_int, check_ints, check_number, check_text

if TYPE_CHECKING:
    from ie_env.concepts.vocabulary import Concept, Vocabulary
    from ie_env.search.credentials import Secret
    from ie_env.web.index import CaptionIndex

DESCRIPTOR_SOURCES = ("none", "wordnet", "llm")
URL_ENV_VAR = "IE_ENV_LLM_URL"
MODEL_ENV_VAR = "IE_ENV_LLM_MODEL"
KEY_ENV_VAR = "IE_ENV_LLM_API_KEY"


@dataclass(frozen=True)
class DescriptorConfig:
    """Which descriptor source to use and its settings (every field is safe to save: no secrets).

    The API key is never a config field: it is read from the environment variable ``api_key_env``
    (or passed to :func:`make_descriptor_source`), so configs can be printed, saved and compared.

    Attributes:
        source: ``none``, ``wordnet`` or ``llm``.
        url: the LLM endpoint's base URL (``.../v1``) or its full ``.../chat/completions`` URL; None:
            ``$IE_ENV_LLM_URL``.
        model: the model name sent in requests; None: ``$IE_ENV_LLM_MODEL``, else ``"default"``.
        api_key_env: environment variable holding the API key (unset: no ``Authorization`` header).
        temperature: sampling temperature (paper: 0.9).
        max_tokens: longest completion requested (paper: 100).
        pool_size: valid descriptors kept (and cached) per concept; each query draws one of them.
        samples_per_request: completions asked per request (the API's ``n``).
        max_requests: requests per concept at most while resampling degenerate outputs.
        max_words: longer descriptors are degenerate.
        max_chars: longer descriptors are degenerate.
        timeout_s: per-request timeout.
        requests_per_minute: client-side rate limit.
        max_wait_s: longest wait for the rate limit before a request is given up.
        concurrency: parallel requests in :meth:`DescriptorSource.prefetch`.
        strict: raise on LLM failures instead of falling back to the plain concept query.
        linked_share: WordNet source: probability of a WordNet-linked adjective when a concept has any.
        hypernym_depth: WordNet source: hypernym levels whose linked adjectives count.
    """

    source: str = "none"
    url: str | None = None
    model: str | None = None
    api_key_env: str = KEY_ENV_VAR
    temperature: float = 0.9
    max_tokens: int = 100
    pool_size: int = 16
    samples_per_request: int = 8
    max_requests: int = 6
    max_words: int = 4
    max_chars: int = 40
    timeout_s: float = 20.0
    requests_per_minute: int = 120
    max_wait_s: float = 30.0
    concurrency: int = 4
    strict: bool = False
    linked_share: float = 0.6
    hypernym_depth: int = 3

    def __post_init__(self) -> None:
        check_choice(self, "source", DESCRIPTOR_SOURCES)
        check_number(self, "temperature", 0.0, 2.0)
        check_int(self, "max_tokens", 1, 4096)
        check_ints(self, ("pool_size", "samples_per_request", "max_requests", "max_words", "max_chars"), 1)
        check_int(self, "requests_per_minute", 1)
        check_int(self, "concurrency", 1, 64)
        check_number(self, "timeout_s", 0.0, low_open=True)
        check_number(self, "max_wait_s", 0.0)
        check_bool(self, "strict")
        check_number(self, "linked_share", 0.0, 1.0)
        check_int(self, "hypernym_depth", 0, 20)
        check_text(self, "api_key_env")
        for name in ("url", "model"):
            if getattr(self, name) is not None:
                check_text(self, name)

    @classmethod
    def parse(cls, value: DescriptorConfig | str | dict | None) -> DescriptorConfig:
        """A config from a config, a source name (``"wordnet"``), a dict of fields, or None (``none``)."""
        if value is None:
            return cls()
        if isinstance(value, DescriptorConfig):
            return value
        if isinstance(value, str):
            return cls(source=value)
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"descriptors must be a source name, a dict or a DescriptorConfig, got {value!r}")

    def resolved_url(self) -> str | None:
        """The endpoint URL: the config's, else ``$IE_ENV_LLM_URL``."""
        return self.url or os.environ.get(URL_ENV_VAR) or None

    def resolved_model(self) -> str:
        """The model name: the config's, else ``$IE_ENV_LLM_MODEL``, else ``"default"``."""
        return self.model or os.environ.get(MODEL_ENV_VAR) or "default"


def join_query(descriptor: str, concept_query: str) -> str:
    """The query sent: ``descriptor + " " + concept query`` (just the concept query without descriptor)."""
    descriptor = " ".join(descriptor.split())
    return f"{descriptor} {concept_query}" if descriptor else concept_query


class DescriptorSource:
    """Draws descriptors for concept queries; subclasses implement :meth:`descriptor`.

    Attributes:
        name: the source's name (``none``, ``wordnet``, ``llm``).
    """

    name = "base"

    def descriptor(self, concept_query: str, rng: np.random.Generator, concept: Concept | None = None) -> str:
        """Draw one descriptor for a concept (``""`` for none).

        Args:
            concept_query: the concept's search query (or a class name in the label-set setting).
            rng: the only randomness used.
            concept: the WordNet concept, when the query is one (sources may use its synset).
        """
        raise NotImplementedError

    def query_for(
        self, concept_query: str, rng: np.random.Generator, concept: Concept | None = None
    ) -> tuple[str, str]:
        """Return ``(descriptor, query to send)``; the env records both in ``info``.

        The query is the plain concept query (and the descriptor ``""``) when there is no descriptor
        or the joined text would not be a valid search query.
        """
        descriptor = self.descriptor(concept_query, rng, concept)
        if not descriptor:
            return "", concept_query
        query = join_query(descriptor, concept_query)
        try:
            validate_query(query, engine="descriptors", max_chars=len(concept_query) + 64)
        except InvalidQuery:
            return "", concept_query
        return descriptor, query

    def prefetch(self, concept_queries: Iterable[str]) -> None:
        """Prepare descriptors for many concepts at once (batched requests); a no-op by default."""

    def describe(self) -> dict:
        """What the source is, for run records (never a secret)."""
        return {"source": self.name}

    def close(self) -> None:
        """Release what the source holds (HTTP clients, database handles)."""

    def __enter__(self) -> DescriptorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoDescriptors(DescriptorSource):
    """The plain concept query; draws nothing from the generator."""

    name = "none"

    def descriptor(self, concept_query: str, rng: np.random.Generator, concept: Concept | None = None) -> str:
        """Return ``""``."""
        return ""


def make_descriptor_source(
    config: DescriptorConfig | str | dict | None,
    vocabulary: Vocabulary | None = None,
    *,
    api_key: str | Secret | None = None,
) -> DescriptorSource:
    """Build the source a config names.

    Args:
        config: see :meth:`DescriptorConfig.parse`.
        vocabulary: gives the WordNet folder for the ``wordnet`` source (default: the installed WordNet).
        api_key: the LLM's key (default: ``$<api_key_env>``); kept as a :class:`Secret`.
    """
    config = DescriptorConfig.parse(config)
    if config.source == "none":
        return NoDescriptors()
    if config.source == "wordnet":
        from ie_env.concepts.wordnet_descriptors import WordNetDescriptors

        folder = vocabulary.folder if vocabulary is not None else None
        return WordNetDescriptors(folder, linked_share=config.linked_share, depth=config.hypernym_depth)
    from ie_env.concepts.llm_descriptors import LLMDescriptors

    return LLMDescriptors(config, api_key=api_key)


def rank_query(index: CaptionIndex, query: str, n: int) -> np.ndarray:
    """The corpus rows the search server returns for ``query`` (its first ``n``), best first.

    Same steps as the server's answer: the query is validated and embedded by the index's float32
    query embedder, scored against every caption with :meth:`CaptionIndex.doc_scores` (the matrix
    product the server's batcher runs) and ranked by :meth:`CaptionIndex.rank`.

    Returns:
        int32 rows, length ``n``, ``-1`` past the results; all ``-1`` for a query the server refuses.
    """
    out = np.full(n, -1, dtype=np.int32)
    try:
        text = validate_query(query)
    except InvalidQuery:
        return out
    vector = index.embedder.embed([text])[0]
    scores = index.doc_scores(vector[None, :])[0]
    hits = index.rank(text, vector, n, scores=scores)
    out[: len(hits)] = [hit.row for hit in hits]
    return out


class QueryRanker:
    """:func:`rank_query` with an LRU cache of recent queries (descriptor queries repeat).

    Args:
        index: the caption index (the frozen world's).
        n: results per query.
        capacity: cached rankings.
    """

    def __init__(self, index: CaptionIndex, n: int, capacity: int = 50_000) -> None:
        check_int(self, "n", 1, value=n)
        check_int(self, "capacity", 1, value=capacity)
        self.index = index
        self.n = n
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, query: str) -> np.ndarray:
        """Return the rows for ``query`` (a read-only int32 array, ``-1`` past the results)."""
        key = normalize_text(query)
        rows = self._cache.get(key)
        if rows is None:
            rows = rank_query(self.index, query, self.n)
            rows.setflags(write=False)
            self._cache[key] = rows
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return rows
