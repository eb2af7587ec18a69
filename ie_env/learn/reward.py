"""The target-similarity reward: image reward variants and the concept score.

Image rewards (``variant``), all functions of L2-normalised embeddings of the candidates, the
target-train images and (for the last four) a background sample of web images:

* ``knn`` (the paper's Eq. 2): mean cosine similarity of an image's embedding to its k = 15 nearest
  target-train embeddings.
* ``knn_centered``: all features are centred on the mean of the background sample and
  re-normalised, and the image's k-NN similarity to the background sample is subtracted.
* ``knn_contrast``: the paper's k-NN similarity to the target minus the k-NN similarity to the
  background sample (raw features): a k-NN estimate of the target-vs-web density ratio's log. Generic
  "hub" images (silhouettes, signs, simple shapes) are close to everything, the target included; the
  contrast cancels that.
* ``cluster_contrast``: as ``knn_contrast``, but the target side is the best of per-cluster k-NN
  similarities over a k-means clustering of the target-train embeddings (:func:`target_clusters`),
  so a small target class counts as much as a large one.
* ``knn_csls``: cross-domain similarity local scaling (Lample et al., 2018, a hubness correction):
  each target image's own background density is subtracted from its similarities before the k
  nearest are averaged, then the candidate's background density.

The four background variants are offset by :data:`BACKGROUND_OFFSET` (+1; +2 for csls), so an image's reward is
positive in practice (a similarity difference is above -1 unless the image is much closer to the web
than to the target) and a query whose images are all new scores above one that returned none (the
env's 0.0). Without it most contrast rewards are negative and a reward-maximiser learns to prefer
queries that download nothing (measured: on ``ocp-10`` with a 16,384-image background the greedy
ceiling agent kept 7 new images in 160 queries). An image's own copies in the background sample
(cosine >= 1 - 1e-4: the same image, or the same bytes under another id) are left out of its background
density, so sampled images are not penalised for being sampled. Concept score: mean of the top-10
image rewards of one query. Measured side by side (ceilings, AUCs) by ``benchmarks/reward.py``; the
numbers and the default are in the README section "Targets and rewards".

Search is exact: chunked matmul + top-k in torch, or faiss ``IndexFlatIP`` on CPU when installed
(the faster of the two on CPU, see benchmarks/learner.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ie_env.learn.config import REWARDS

BACKENDS = ("auto", "torch", "faiss")
# Added to the background variants' rewards (see the module docstring): one similarity difference for
# the contrasts, two for csls (its target side also subtracts a density).
BACKGROUND_OFFSET = {"knn_centered": 1.0, "knn_contrast": 1.0, "cluster_contrast": 1.0, "knn_csls": 2.0}
SELF_MATCH = 1.0 - 1e-4  # a background image this similar to a candidate is the candidate itself


@dataclass(frozen=True)
class ImageScores:
    """Per-image rewards and the embeddings they came from (float32, L2-normalised)."""

    rewards: np.ndarray
    embeddings: np.ndarray


class ConceptScore(NamedTuple):
    """A query's score and why: ``"ok"``, ``"few_images"`` (fewer than ``top``) or ``"no_images"`` (0.0)."""

    score: float
    status: str


def concept_score(image_rewards: np.ndarray | list[float], top: int = 10) -> ConceptScore:
    """Mean of the ``top`` largest image rewards; fewer images: mean of all; none: ``(0.0, "no_images")``.

    Non-finite rewards are ignored.
    """
    r = np.asarray(image_rewards, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        return ConceptScore(0.0, "no_images")
    if r.size < top:
        return ConceptScore(float(r.mean()), "few_images")
    best = np.partition(r, r.size - top)[r.size - top :]
    return ConceptScore(float(best.mean()), "ok")


def knn_similarity(
    queries: np.ndarray | torch.Tensor,
    keys: np.ndarray | torch.Tensor,
    k: int,
    *,
    backend: str = "auto",
    chunk_size: int = 4096,
    key_bias: np.ndarray | None = None,
    exclude_above: float | None = None,
) -> np.ndarray:
    """Mean inner product of each query with its ``k`` most similar keys (exact).

    Rows should be L2-normalised (inner product = cosine). ``k`` larger than the number of keys uses all keys.

    Args:
        queries: Shape: (n_queries, dim).
        keys: Shape: (n_keys, dim), n_keys >= 1.
        k: neighbours.
        backend: ``"torch"`` (chunked matmul + topk, on the queries' device), ``"faiss"`` (IndexFlatIP, CPU),
            or ``"auto"`` (torch for CUDA tensors, faiss on CPU when installed, else torch).
        chunk_size: queries per matmul (bounds memory to chunk_size x n_keys floats).
        key_bias: optional value added to every similarity with each key (n_keys,) before the top-k
            (torch backend only; ``knn_csls`` uses it).
        exclude_above: leave out keys at least this similar to the query (torch backend; used to drop
            a candidate's own copies from its background density). A query with fewer than ``k``
            keys left averages those it has, 0.0 when none is left.

    Returns:
        float32 array of shape (n_queries,).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    n_keys = keys.shape[0]
    if n_keys == 0:
        raise ValueError("knn_similarity needs at least one key")
    n_q = queries.shape[0]
    if n_q == 0:
        return np.zeros(0, dtype=np.float32)
    k = min(k, n_keys)
    on_cuda = isinstance(queries, torch.Tensor) and queries.is_cuda
    if backend == "auto":
        special = key_bias is not None or exclude_above is not None
        backend = "torch" if on_cuda or special or not _has_faiss() else "faiss"
    if backend == "faiss" and (key_bias is not None or exclude_above is not None):
        raise ValueError("key_bias and exclude_above need the torch backend")
    if backend == "faiss":
        return _knn_faiss(_to_numpy(queries), _to_numpy(keys), k)
    q = torch.as_tensor(queries, dtype=torch.float32)
    kt = torch.as_tensor(keys, dtype=torch.float32, device=q.device)
    bias = None if key_bias is None else torch.as_tensor(key_bias, dtype=torch.float32, device=q.device)
    out = torch.empty(n_q, dtype=torch.float32, device=q.device)
    for start in range(0, n_q, chunk_size):
        sims = q[start : start + chunk_size] @ kt.t()
        if bias is not None:
            sims = sims + bias
        if exclude_above is None:
            out[start : start + chunk_size] = sims.topk(k, dim=1, sorted=False).values.mean(dim=1)
            continue
        best = sims.masked_fill(sims >= exclude_above, float("-inf")).topk(k, dim=1, sorted=False).values
        kept = torch.isfinite(best)
        total = torch.where(kept, best, torch.zeros_like(best)).sum(dim=1)
        out[start : start + chunk_size] = total / kept.sum(dim=1).clamp(min=1)
    return out.cpu().numpy()


def image_rewards(
    candidates: np.ndarray,
    targets: np.ndarray,
    *,
    k: int = 15,
    variant: str = "knn",
    background: np.ndarray | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Image reward of each candidate embedding against the target-train embeddings.

    Args:
        candidates: L2-normalised embeddings. Shape: (n, dim).
        targets: L2-normalised target-train embeddings. Shape: (n_target, dim).
        k: neighbours (paper: 15).
        variant: one of ``REWARDS`` (see the module docstring); all but ``knn`` need ``background``.
        background: L2-normalised embeddings of a background sample of web images. Shape: (n_bg, dim).
        backend: see ``knn_similarity``.

    Returns:
        float32 array of shape (n,).

    Raises:
        ValueError: unknown variant, or a background variant without a background sample.
    """
    if variant not in REWARDS:
        raise ValueError(f"variant must be one of {REWARDS}, got {variant!r}")
    if variant == "knn":
        return knn_similarity(candidates, targets, k, backend=backend)
    if background is None or len(background) == 0:
        raise ValueError(f"the {variant!r} reward needs a non-empty background sample of web images")
    cand = np.asarray(candidates, dtype=np.float32)
    targ = np.asarray(targets, dtype=np.float32)
    back = np.asarray(background, dtype=np.float32)
    if variant == "knn_centered":
        mean = back.mean(axis=0, keepdims=True)
        cand, targ, back = (_renormalise(x - mean) for x in (cand, targ, back))
    # A candidate's own copies are identical vectors, centred or not: leave them out of its density.
    density = knn_similarity(cand, back, k, backend="torch", exclude_above=SELF_MATCH)
    if variant in ("knn_centered", "knn_contrast"):
        similarity = knn_similarity(cand, targ, k, backend=backend)
    elif variant == "cluster_contrast":
        similarity = cluster_similarity(cand, targ, k, backend=backend)
    else:
        target_density = knn_similarity(targ, back, k, backend=backend)
        similarity = knn_similarity(cand, targ, k, key_bias=-target_density)
    return (similarity - density + BACKGROUND_OFFSET[variant]).astype(np.float32)


def target_clusters(targets: np.ndarray, n_clusters: int | None = None, seed: int = 0) -> np.ndarray:
    """Spherical k-means labels of the target embeddings (deterministic for a seed).

    Args:
        targets: L2-normalised embeddings. Shape: (n, dim).
        n_clusters: clusters; default ``round(sqrt(n / 4))`` (at least 1): about 10 for 400 images.
        seed: seeds the k-means++-style initialisation.

    Returns:
        int64 labels of shape (n,), every label in ``range(n_clusters)`` used at least once.
    """
    x = np.asarray(targets, dtype=np.float32)
    n = len(x)
    c = n_clusters if n_clusters is not None else max(1, round(np.sqrt(n / 4)))
    c = max(1, min(c, n))
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    for _ in range(1, c):  # farthest-first-ish seeding (k-means++ with cosine distance)
        dist = np.clip(1.0 - np.max(x @ np.stack(centres).T, axis=1), 0.0, None)
        centres.append(x[rng.choice(n, p=dist / dist.sum())] if dist.sum() > 0 else x[rng.integers(n)])
    centre = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(20):
        labels = np.argmax(x @ centre.T, axis=1)
        for j in range(c):
            members = x[labels == j]
            if len(members):
                centre[j] = members.sum(axis=0) / max(np.linalg.norm(members.sum(axis=0)), 1e-12)
    labels = np.argmax(x @ centre.T, axis=1)
    _, labels = np.unique(labels, return_inverse=True)  # drop empty clusters
    return labels.astype(np.int64)


def cluster_similarity(
    candidates: np.ndarray, targets: np.ndarray, k: int, *, backend: str = "auto"
) -> np.ndarray:
    """Best per-cluster k-NN similarity: max over target clusters of the mean of ``min(k, size)`` nearest."""
    labels = _cached_clusters(targets)
    best = np.full(len(candidates), -np.inf, dtype=np.float32)
    for j in range(int(labels.max()) + 1):
        members = targets[labels == j]
        best = np.maximum(best, knn_similarity(candidates, members, min(k, len(members)), backend=backend))
    return best


_CLUSTER_CACHE: dict[str, np.ndarray] = {}


def _cached_clusters(targets: np.ndarray) -> np.ndarray:
    """The clusters of a target embedding matrix, memoised by its bytes (it changes once per phase)."""
    key = hashlib.sha1(np.ascontiguousarray(targets, dtype=np.float32).tobytes()).hexdigest()
    if key not in _CLUSTER_CACHE:
        if len(_CLUSTER_CACHE) > 8:
            _CLUSTER_CACHE.clear()
        _CLUSTER_CACHE[key] = target_clusters(targets)
    return _CLUSTER_CACHE[key]


def _renormalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _knn_faiss(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    import faiss

    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    sims, _ = index.search(queries, k)
    return sims.mean(axis=1).astype(np.float32)
