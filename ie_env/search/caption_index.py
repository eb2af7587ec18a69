"""A LAION-style caption index searched in process, like the Internet Explorer paper's LAION engine.

Every row is an image URL with its caption (plus optional title, licence, size, id, source). Captions
are embedded once with the 384-d MiniLM sentence model (cached on disk by content hash); a query is
embedded with the same model and ranked by the offline web's one caption ranking
(:class:`ie_env.web.index.CaptionRanking`: caption cosine + exact-token boost, ties broken by a hash of
query and URL), with the stored URL. Rows that repeat a URL (common in LAION) give one hit, the
best-ranked row of that URL.

Tables load from CSV/TSV, JSON Lines or Parquet; column names follow LAION (``URL``, ``TEXT``,
``WIDTH``, ``HEIGHT``, ``LICENSE``) or plain lower case (``url``, ``caption``, ...).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ie_env.errors import SetupError
from ie_env.search.base import SearchError, SearchHit, SearchResult, validate_query
from ie_env.web.embedder import EmbedFn, QueryEmbedder

if TYPE_CHECKING:
    from ie_env.web.index import RankedImage

log = logging.getLogger(__name__)

URL_COLUMNS = ("url", "URL", "image_url", "img_url")
CAPTION_COLUMNS = ("caption", "TEXT", "text", "alt", "title")
OPTIONAL_COLUMNS = {
    "title": ("title", "TITLE"),
    "license": ("license", "LICENSE"),
    "source": ("source", "SOURCE", "provider"),
    "id": ("id", "key", "SAMPLE_ID", "sample_id"),
    "width": ("width", "WIDTH"),
    "height": ("height", "HEIGHT"),
    "thumbnail": ("thumbnail",),
}
CANDIDATE_FACTOR = 4


@dataclass(frozen=True)
class CaptionRow:
    """One (url, caption) row and what else the table knows about the image."""

    url: str
    caption: str
    title: str = ""
    license: str = ""
    source: str = ""
    id: str = ""
    width: int | None = None
    height: int | None = None
    thumbnail: str | None = None


def _pick(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None and value != "":
            return value
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def row_from_record(record: Mapping[str, Any]) -> CaptionRow | None:
    """Turn a table record (any supported column names) into a row; None without url or caption."""
    url = _pick(record, URL_COLUMNS)
    caption = _pick(record, CAPTION_COLUMNS)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or caption is None:
        return None
    caption = " ".join(str(caption).split())
    if not caption:
        return None
    extra = {key: _pick(record, names) for key, names in OPTIONAL_COLUMNS.items()}
    return CaptionRow(
        url=url,
        caption=caption,
        title=str(extra["title"] or ""),
        license=str(extra["license"] or ""),
        source=str(extra["source"] or ""),
        id=str(extra["id"] or ""),
        width=_int_or_none(extra["width"]),
        height=_int_or_none(extra["height"]),
        thumbnail=str(extra["thumbnail"]) if extra["thumbnail"] else None,
    )


def read_table(path: str | Path) -> tuple[list[CaptionRow], int]:
    """Read rows from ``.csv``/``.tsv``/``.jsonl``/``.json``/``.parquet``.

    Returns:
        (rows, skipped): rows with a URL and caption, and how many records lacked them.

    Raises:
        ValueError: unknown extension or unreadable file (message names the file).
        SetupError: a Parquet file without ``pyarrow`` installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    records: Iterable[Mapping[str, Any]]
    try:
        if suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        elif suffix in (".jsonl", ".json"):
            with open(path, encoding="utf-8") as handle:
                if suffix == ".json":
                    loaded = json.load(handle)
                    records = loaded if isinstance(loaded, list) else []
                else:
                    records = [json.loads(line) for line in handle if line.strip()]
        elif suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise SetupError("Reading Parquet caption tables needs the PyPI package 'pyarrow'") from exc
            records = pq.read_table(path).to_pylist()
        else:
            raise ValueError(
                f"{path}: unsupported caption table type {suffix!r} (csv, tsv, jsonl, json, parquet)"
            )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read caption table ({exc})") from exc
    rows, skipped = [], 0
    for record in records:
        row = row_from_record(record) if isinstance(record, Mapping) else None
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    return rows, skipped


def _default_embed(texts: Sequence[str]) -> np.ndarray:
    from ie_env.concepts.textembed import embed_texts

    return embed_texts(texts, batch_size=64)


class CaptionIndexEngine:
    """Caption search over a table, in process, ranked by the offline web's one caption ranking.

    Args:
        rows: the table.
        embeddings: (len(rows), d) L2-normalised caption embeddings; computed (and cached on disk
            under ``cache_name``) with the MiniLM model when None.
        name: engine name.
        embed_fn: embeds query texts to L2-normalised float32 rows (default MiniLM).
        cache_name: prefix of the on-disk embedding cache.
        show_progress: progress bar while embedding captions.
        boost: exact-token boost of the ranking (None: the web's default, see :mod:`ie_env.web.index`).
    """

    def __init__(
        self,
        rows: Sequence[CaptionRow],
        embeddings: np.ndarray | None = None,
        *,
        name: str = "caption_index",
        embed_fn: EmbedFn | None = None,
        cache_name: str = "caption-index",
        show_progress: bool = False,
        boost: float | None = None,
    ) -> None:
        from ie_env.web.index import DEFAULT_BOOST, CaptionRanking  # the web imports this package

        if not rows:
            raise ValueError("CaptionIndexEngine: the caption table has no usable rows")
        self.rows = list(rows)
        self.name = name
        self.embed_fn = embed_fn or _default_embed
        captions = [row.caption for row in self.rows]
        if embeddings is not None:
            matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[0] != len(self.rows):
                raise ValueError(
                    f"CaptionIndexEngine: embeddings shape {matrix.shape} does not match {len(self.rows)} rows"
                )
            first_row = {caption: i for i, caption in reversed(list(enumerate(captions)))}

        def embed_captions(texts: list[str]) -> np.ndarray:
            if embeddings is not None:
                return matrix[[first_row[text] for text in texts]]
            if embed_fn is not None:
                return embed_fn(texts)
            from ie_env.concepts.textembed import cached_embeddings

            return cached_embeddings(cache_name, texts, show_progress=show_progress)

        urls = [row.url for row in self.rows]
        self.ranking = CaptionRanking(
            captions,
            urls,
            embed_captions,
            boost=DEFAULT_BOOST if boost is None else boost,
            embedder=QueryEmbedder(embed=self.embed_fn),
        )
        self.unique_urls = len(set(urls))
        self.has_duplicates = self.unique_urls < len(urls)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> CaptionIndexEngine:
        """Load a caption table (see :func:`read_table`) and index it."""
        rows, skipped = read_table(path)
        if skipped:
            log.info("%s: skipped %d rows without a URL or caption", path, skipped)
        kwargs.setdefault("cache_name", f"caption-index-{Path(path).stem}")
        return cls(rows, **kwargs)

    def __repr__(self) -> str:
        return (
            f"CaptionIndexEngine(name={self.name!r}, rows={len(self.rows)}, unique_urls={self.unique_urls})"
        )

    def __len__(self) -> int:
        """Return the number of table rows."""
        return len(self.rows)

    def search(self, query: str, n: int) -> SearchResult:
        """Return the ``n`` rows whose captions rank best for the query (distinct URLs), best first."""
        return self.search_many([query], n)[0]

    def search_many(self, queries: Sequence[str], n: int) -> list[SearchResult]:
        """Search several queries with one embedding pass and one matrix product.

        Raises:
            SearchError: any query is invalid (checked before any work).
        """
        if isinstance(queries, str):
            raise SearchError(f"{self.name}: search_many takes a list of queries, not a string")
        texts = [validate_query(query, n, self.name) for query in queries]
        if not texts:
            return []
        started = time.perf_counter()
        try:
            vectors = self.ranking.embedder.embed(texts)
        except Exception as exc:  # noqa: BLE001 - an engine returns errors as values
            seconds = time.perf_counter() - started
            reason = f"{self.name}: query embedding failed ({type(exc).__name__}: {exc})"
            return [
                SearchResult(engine=self.name, query=text, error=reason, seconds=seconds) for text in texts
            ]
        scores = self.ranking.doc_scores(vectors)
        ranked = [self.top_rows(t, v, n, s) for t, v, s in zip(texts, vectors, scores, strict=True)]
        seconds = (time.perf_counter() - started) / len(texts)
        return [
            SearchResult(
                engine=self.name,
                query=text,
                hits=[self._hit(hit.row, rank, hit.score) for rank, hit in enumerate(hits)],
                seconds=seconds,
            )
            for text, hits in zip(texts, ranked, strict=True)
        ]

    def top_rows(
        self, query: str, vector: np.ndarray, n: int, scores: np.ndarray | None = None
    ) -> list[RankedImage]:
        """Return the ``n`` best rows with distinct URLs (the best-ranked row of each URL)."""
        want = n * CANDIDATE_FACTOR if self.has_duplicates else n
        while True:
            ranked = self.ranking.rank(query, vector, want, scores=scores)
            if not self.has_duplicates:
                return ranked
            seen: set[str] = set()
            distinct = [hit for hit in ranked if not (hit.id in seen or seen.add(hit.id))]
            if len(distinct) >= n or want >= len(self.rows):
                return distinct[:n]
            want = min(len(self.rows), want * CANDIDATE_FACTOR)

    def _hit(self, row_index: int, rank: int, score: float) -> SearchHit:
        row = self.rows[row_index]
        return SearchHit(
            url=row.url,
            title=row.title or row.caption,
            engine=self.name,
            rank=rank,
            id=row.id or str(row_index),
            thumbnail=row.thumbnail,
            license=row.license,
            source=row.source,
            width=row.width,
            height=row.height,
            score=round(score, 6),
        )
