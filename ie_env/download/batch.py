"""One fetch's bookkeeping: the per-URL results, exact-duplicate groups, and the final dedup pass.

While a batch runs, the first URL whose bytes have a given sha256 is decoded and later ones wait in
``sha_dups`` (they are never decoded). :func:`finalise` then gives each of those the outcome of the
one decode, and drops near-duplicates in input order with a :class:`~ie_env.download.dedup.Deduplicator`
(within the batch) and the ``known`` index (against stored images).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ie_env.download.config import DownloadConfig
from ie_env.download.dedup import DedupIndex, Deduplicator
from ie_env.download.results import Download
from ie_env.download.transfer import Fetched


@dataclass
class BatchState:
    """What one :meth:`~ie_env.download.Downloader.fetch_async` call has recorded so far.

    Attributes:
        known: the already-stored images to dedup against (None when dedup is off).
        results: one slot per input item, filled as outcomes arrive.
        first_by_sha: sha256 of each decoded body -> the index of the item that is decoded.
        sha_dups: ``(index, sha256, fetched)`` of items whose bytes an earlier item already has.
        decode_tasks: the decodes in flight.
    """

    known: DedupIndex | None
    results: list[Download | None]
    first_by_sha: dict[str, int] = field(default_factory=dict)
    sha_dups: list[tuple[int, str, Fetched]] = field(default_factory=list)
    decode_tasks: list[asyncio.Task[None]] = field(default_factory=list)


def finalise(urls: Sequence[str], state: BatchState, config: DownloadConfig) -> list[Download]:
    """Return one :class:`Download` per item of ``urls``, with every duplicate marked.

    Args:
        urls: the items as shown in results (``repr`` of non-strings), in input order.
        state: what the batch recorded.
        config: ``dedup`` and ``phash_threshold`` are used.
    """
    _share_exact_duplicates(urls, state)
    out: list[Download] = [
        r if r is not None else Download(urls[i], "internal_error", "no result recorded")
        for i, r in enumerate(state.results)
    ]
    if config.dedup:
        _drop_near_duplicates(out, state.known, config.phash_threshold)
    return out


def _drop_near_duplicates(out: list[Download], known: DedupIndex | None, threshold: int) -> None:
    """Mark ``ok`` images near a stored one or an earlier one of the batch, in input order."""
    kept = Deduplicator(threshold)
    kept_urls: list[str] = []
    for i, d in enumerate(out):
        if not d.ok or d.phash is None:
            continue
        if known is not None and known.near_duplicate(d.phash) is not None:
            out[i] = replace(d, status="duplicate", error="near-duplicate of a stored image", image=None)
            continue
        match = kept.match(None, d.phash)
        if match is not None:
            error = f"near-duplicate (distance {match.distance}) of {kept_urls[match.index]}"
            out[i] = replace(d, status="duplicate", error=error, image=None)
            continue
        kept.add(d.sha256, d.phash)
        kept_urls.append(d.url)


def _share_exact_duplicates(urls: Sequence[str], state: BatchState) -> None:
    """Give every item whose bytes were seen before the outcome of the one decode of those bytes.

    The first in input order keeps the image, whichever finished first; the others are ``duplicate``
    (or share the failure when the bytes did not decode).
    """
    results = state.results
    groups: dict[str, list[tuple[int, Fetched]]] = {}
    for index, sha, fetched in state.sha_dups:
        groups.setdefault(sha, []).append((index, fetched))
    for sha, members in groups.items():
        first = state.first_by_sha[sha]
        decoded = results[first]
        assert decoded is not None
        where = {first: (decoded.final_url, decoded.http_status)}
        where.update({i: (f.final_url, f.http_status) for i, f in members})
        keeper_index = min(where)
        keeper = replace(
            decoded,
            url=urls[keeper_index],
            final_url=where[keeper_index][0],
            http_status=where[keeper_index][1],
        )
        for index, (final_url, http_status) in where.items():
            if index == keeper_index:
                results[index] = keeper
                continue
            results[index] = replace(
                keeper,
                url=urls[index],
                status="duplicate" if keeper.ok else keeper.status,
                error=f"same bytes as {keeper.url}" if keeper.ok else keeper.error,
                image=None,
                final_url=final_url,
                http_status=http_status,
            )
