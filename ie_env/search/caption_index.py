"""A LAION-style caption index searched in process (the paper's custom LAION engine, Appendix A).

Every row is an image URL with its caption (plus optional title, licence, size, id, source). Captions
are embedded once with the 384-d MiniLM sentence model (cached on disk by content hash); a query is
embedded with the same model and the rows with the most similar captions (exact cosine, one matmul)
are returned, with the stored URL. Rows that repeat a URL (common in LAION) give one hit.

Tables load from CSV/TSV, JSON Lines or Parquet; column names follow LAION (``URL``, ``TEXT``,
``WIDTH``, ``HEIGHT``, ``LICENSE``) or plain lower case (``url``, ``caption``, ...).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ie_env.errors import SetupError
from ie_env.search.base import SearchError, SearchHit, SearchResult, validate_query

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

EmbedFn = Callable[[Sequence[str]], np.ndarray]


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
    """Exact cosine search over caption embeddings, in process.

    Args:
        rows: the table.
        embeddings: (len(rows), d) L2-normalised caption embeddings; computed (and cached on disk
            under ``cache_name``) with the MiniLM model when None.
        name: engine name.
        embed_fn: embeds query texts to L2-normalised float32 rows (default MiniLM).
        cache_name: prefix of the on-disk embedding cache.
        show_progress: progress bar while embedding captions.
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
    ) -> None:
        if not rows:
            raise ValueError("CaptionIndexEngine: the caption table has no usable rows")
        self.rows = list(rows)
        self.name = name
        self.embed_fn = embed_fn or _default_embed
        if embeddings is None:
            captions = [row.caption for row in self.rows]
            if embed_fn is None:
                from ie_env.concepts.textembed import cached_embeddings

                embeddings = cached_embeddings(cache_name, captions, show_progress=show_progress)
            else:
                embeddings = embed_fn(captions)
        matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(self.rows):
            raise ValueError(
                f"CaptionIndexEngine: embeddings shape {matrix.shape} does not match {len(self.rows)} rows"
            )
        self.embeddings = matrix
        urls = [row.url for row in self.rows]
        unique = {url: index for index, url in reversed(list(enumerate(urls)))}
        self._url_group = np.array([unique[url] for url in urls], dtype=np.int64)
        self.has_duplicates = len(unique) < len(urls)
        self.unique_urls = len(unique)

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
        return len(self.rows)

    def search(self, query: str, n: int) -> SearchResult:
        """The ``n`` rows whose captions are nearest the query (distinct URLs), best first."""
        return self.search_many([query], n)[0]

    def search_many(self, queries: Sequence[str], n: int) -> list[SearchResult]:
        """Search several queries with one embedding pass and one matmul.

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
            vectors = np.ascontiguousarray(self.embed_fn(texts), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - an engine returns errors as values
            seconds = time.perf_counter() - started
            reason = f"{self.name}: query embedding failed ({type(exc).__name__}: {exc})"
            return [
                SearchResult(engine=self.name, query=text, error=reason, seconds=seconds) for text in texts
            ]
        indices, scores = self.top_k(vectors, n)
        seconds = (time.perf_counter() - started) / len(texts)
        results = []
        for text, row_ids, row_scores in zip(texts, indices, scores, strict=True):
            hits = [
                self._hit(int(row), rank, float(score))
                for rank, (row, score) in enumerate(zip(row_ids, row_scores, strict=True))
            ]
            results.append(SearchResult(engine=self.name, query=text, hits=hits, seconds=seconds))
        return results

    def top_k(self, vectors: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Row indices and cosine scores of the ``k`` best distinct-URL rows for each query vector."""
        sims = vectors @ self.embeddings.T  # (q, N)
        total = sims.shape[1]
        out_rows, out_scores = [], []
        for row_sims in sims:
            want = min(total, k * CANDIDATE_FACTOR if self.has_duplicates else k)
            while True:
                candidates = np.argpartition(-row_sims, want - 1)[:want] if want < total else np.arange(total)
                # Stable order: best score first, then lower row index.
                order = candidates[np.lexsort((candidates, -row_sims[candidates]))]
                if self.has_duplicates:
                    _, first = np.unique(self._url_group[order], return_index=True)
                    order = order[np.sort(first)]
                if len(order) >= k or want >= total:
                    break
                want = min(total, want * CANDIDATE_FACTOR)
            chosen = order[:k]
            out_rows.append(chosen)
            out_scores.append(row_sims[chosen])
        return out_rows, out_scores

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
