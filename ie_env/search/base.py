"""The search-engine interface: one query in, ranked image hits out.

Engines never raise for a dead, slow or refusing service: ``search`` returns a
:class:`SearchResult` whose ``error`` names the engine and the reason. ``SearchError`` is
raised only for a bad request made by the caller (e.g. an empty query), before anything is sent.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

MAX_QUERY_CHARS = 1000
MAX_RESULTS = 10_000


@dataclass(frozen=True)
class SearchHit:
    """One image a search engine returned.

    Attributes:
        url: where the full image can be downloaded.
        title: the engine's title or caption for the image.
        engine: name of the engine that returned it.
        rank: 0-based position in the result list.
        id: the engine's id for the image.
        thumbnail: a smaller rendition's URL, if any.
        license: licence code as the engine gives it (e.g. "cc0", "by-sa").
        source: the site or collection the image comes from.
        width: image width in pixels when the engine reports it.
        height: image height in pixels when the engine reports it.
        tags: the engine's tags for the image.
        score: the engine's relevance score when it reports one (e.g. caption cosine).
    """

    url: str
    title: str = ""
    engine: str = ""
    rank: int = 0
    id: str = ""
    thumbnail: str | None = None
    license: str = ""
    source: str = ""
    width: int | None = None
    height: int | None = None
    tags: tuple[str, ...] = ()
    score: float | None = None


@dataclass(frozen=True)
class SearchResult:
    """What one query produced: hits, or an error value naming the engine.

    Attributes:
        engine: engine name.
        query: the query text as sent.
        hits: ranked hits (empty on error).
        error: None on success, else a short reason that starts with the engine's name.
        seconds: wall time of the search.
        note: a non-fatal problem on success, e.g. a later page failed and fewer hits came back.
    """

    engine: str
    query: str
    hits: list[SearchHit] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the search succeeded (``error`` is None)."""
        return self.error is None


class SearchError(ValueError):
    """A request the caller got wrong (empty, too long or control-character query, bad n)."""


class InvalidQuery(SearchError):
    """A query text no engine accepts: not a string, empty, too long or with a control character."""


def validate_query(
    query: object, n: int | None = None, engine: str = "search", *, max_chars: int = MAX_QUERY_CHARS
) -> str:
    """Check a query (and result count) before anything is sent: the one set of query rules.

    The offline web's server answers exactly the queries this accepts, so a client that calls it
    first never sends a query the server refuses with 400. A query is refused when it is not a
    string, longer than ``max_chars`` (counted before stripping), contains a control or surrogate
    character (Unicode categories ``Cc`` and ``Cs``, and the line/paragraph separators U+2028 and
    U+2029) anywhere, or is empty once surrounding whitespace is removed (checked first).

    Args:
        query: the query text.
        n: how many hits are wanted (1 to ``MAX_RESULTS``); None when the caller has no count.
        engine: engine name that starts every message.
        max_chars: longest query accepted.

    Returns:
        The query with surrounding whitespace stripped.

    Raises:
        InvalidQuery: the query text breaks a rule above.
        SearchError: ``n`` is not an int in [1, MAX_RESULTS].
    """
    if not isinstance(query, str):
        raise InvalidQuery(f"{engine}: query must be a string, got {type(query).__name__}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RESULTS):
        raise SearchError(f"{engine}: n must be an int in [1, {MAX_RESULTS}], got {n!r}")
    text = query.strip()
    if not text:
        raise InvalidQuery(f"{engine}: empty query")
    if len(query) > max_chars:
        raise InvalidQuery(f"{engine}: query is {len(query)} characters, the limit is {max_chars}")
    for position, char in enumerate(query):
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            raise InvalidQuery(
                f"{engine}: query has a control character U+{ord(char):04X} at position {position}"
            )
    return text


@runtime_checkable
class SearchEngine(Protocol):
    """Anything that turns a query into ranked image hits."""

    name: str

    def search(self, query: str, n: int) -> SearchResult:
        """Return up to ``n`` hits for ``query``, best first; errors as values, never exceptions."""
        ...


def rank_hits(hits: list[SearchHit], n: int) -> list[SearchHit]:
    """Drop repeated URLs (keeping the first), keep the best ``n``, and number them 0..n-1."""
    from dataclasses import replace

    seen: set[str] = set()
    ranked: list[SearchHit] = []
    for hit in hits:
        if not hit.url or hit.url in seen:
            continue
        seen.add(hit.url)
        ranked.append(replace(hit, rank=len(ranked)))
        if len(ranked) >= n:
            break
    return ranked
