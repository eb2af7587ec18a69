"""Search engines: one query in, ranked image hits out.

``make_engine(name, **kwargs)`` builds an engine by name:

* ``openverse``: the Openverse API (``base_url=`` the live API by default, or ``ie-web serve``'s URL);
* ``local``: the offline web, i.e. ``openverse`` with a required loopback ``base_url``;
* ``wikimedia``: Wikimedia Commons; ``flickr``: Flickr (``$FLICKR_API_KEY``);
* ``caption_index``: an in-process caption-embedding index (``path=`` a CSV/JSONL/Parquet table).

``replay=PATH`` (and ``replay_mode=`` "auto" | "record" | "replay") wraps any of them in a
:class:`~ie_env.search.replay.ReplayEngine`.

Layout: ``base`` (hits, results, ``validate_query``, the engine protocol); ``_paged`` (what the HTTP
engines share: URL check, limiter choice, client, paging loop); ``openverse``, ``wikimedia`` and
``flickr`` (each only its endpoint, parameters, response parsing and licences); ``http`` (the sync
JSON client with timeouts, retries and redaction), ``ratelimit`` (token buckets, ``Retry-After``) and
``credentials`` (secrets from the environment, redacted everywhere); ``caption_index`` (in-process
caption search); ``replay`` (record/replay store). A new HTTP engine subclasses
:class:`~ie_env.search._paged.PagedJsonEngine` and is added to :data:`ENGINES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ie_env.search.base import SearchEngine, SearchError, SearchHit, SearchResult, validate_query
from ie_env.search.caption_index import CaptionIndexEngine
from ie_env.search.flickr import FlickrEngine
from ie_env.search.http import HttpConfig, is_loopback_url
from ie_env.search.openverse import OpenverseEngine
from ie_env.search.replay import ReplayEngine
from ie_env.search.wikimedia import WikimediaEngine


def _local(base_url: str | None = None, **kwargs: Any) -> OpenverseEngine:
    if not base_url or not is_loopback_url(base_url):
        raise ValueError(
            f"engine 'local' needs a loopback base_url such as http://127.0.0.1:8080, got {base_url!r}"
        )
    kwargs.setdefault("name", "local")
    return OpenverseEngine(base_url, **kwargs)


def _caption_index(path: str | Path | None = None, **kwargs: Any) -> CaptionIndexEngine:
    if path is None:
        raise ValueError("engine 'caption_index' needs path= a caption table (.csv, .tsv, .jsonl, .parquet)")
    return CaptionIndexEngine.from_file(path, **kwargs)


ENGINES: dict[str, Callable[..., SearchEngine]] = {
    "openverse": OpenverseEngine,
    "local": _local,
    "wikimedia": WikimediaEngine,
    "flickr": FlickrEngine,
    "caption_index": _caption_index,
}


def make_engine(
    name: str, *, replay: str | Path | None = None, replay_mode: str = "auto", **kwargs: Any
) -> SearchEngine:
    """Build the engine called ``name`` with ``kwargs``, optionally wrapped for record/replay.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad arguments.
    """
    factory = ENGINES.get(name)
    if factory is None:
        raise ValueError(f"unknown search engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    engine = factory(**kwargs)
    if replay is not None:
        return ReplayEngine(engine, replay, mode=replay_mode)  # type: ignore[arg-type]
    return engine


__all__ = [
    "ENGINES",
    "CaptionIndexEngine",
    "FlickrEngine",
    "HttpConfig",
    "OpenverseEngine",
    "ReplayEngine",
    "SearchEngine",
    "SearchError",
    "SearchHit",
    "SearchResult",
    "WikimediaEngine",
    "make_engine",
    "validate_query",
]
