"""The env's fixed-size observation: query statistics over k-means clusters of concept embeddings.

The action space has one action per concept (146,347 for the full vocabulary), far too many to
observe one by one. Concepts are grouped once into ``K`` clusters by spherical k-means over their
text embeddings (cached per vocabulary and K), and the observation summarises what the agent has
seen per cluster:

==============  =========  ===============================================================
slice           size       meaning
==============  =========  ===============================================================
``[0, K)``      K          mean reward of the queries made in each cluster (0 if none)
``[K, 2K)``     K          queries made in each cluster / episode budget, clipped to 1
``2K``          1          episode progress: steps taken / episode budget
``2K + 1``      1          the last step's reward (0 after reset)
==============  =========  ===============================================================
"""

from __future__ import annotations

import hashlib

import numpy as np

from ie_env.paths import atomic_path, cache_subdir


def spherical_kmeans(
    vectors: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster L2-normalised rows by cosine similarity.

    Args:
        vectors: (N, D) float32, rows L2-normalised.
        k: number of clusters (clipped to N).
        rng: the generator for the k-means++ initialisation.
        iterations: Lloyd iterations.
        chunk: rows per matmul block (bounds memory).

    Returns:
        (labels (N,) int32, centroids (k, D) float32 L2-normalised).
    """
    n = len(vectors)
    if n == 0:
        raise ValueError("cannot cluster zero vectors")
    k = max(1, min(k, n))
    # k-means++ on a sample, by cosine distance.
    sample = vectors[rng.choice(n, size=min(n, 20 * k + 1000), replace=False)]
    centroids = [sample[rng.integers(len(sample))]]
    distance = 1.0 - sample @ centroids[0]
    for _ in range(1, k):
        weights = np.clip(distance, 0, None)
        total = weights.sum()
        pick = rng.choice(len(sample), p=weights / total) if total > 0 else rng.integers(len(sample))
        centroids.append(sample[pick])
        distance = np.minimum(distance, 1.0 - sample @ sample[pick])
    centers = np.stack(centroids).astype(np.float32)
    labels = np.zeros(n, dtype=np.int32)
    for _ in range(iterations):
        for lo in range(0, n, chunk):
            labels[lo : lo + chunk] = np.argmax(vectors[lo : lo + chunk] @ centers.T, axis=1)
        sums = _cluster_sums(vectors, labels, len(centers))
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        if empty.any():  # re-seed empty clusters with random points
            sums[empty] = vectors[rng.choice(n, size=int(empty.sum()), replace=False)]
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
        new_centers = (sums / norms).astype(np.float32)
        if np.allclose(new_centers, centers, atol=1e-6):
            break
        centers = new_centers
    return labels, centers


def _cluster_sums(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Row sums per label, (k, D) float32: ``np.add.at``'s result bit for bit (rows added in index order).

    torch's ``index_add_`` does the same sequential float32 accumulation about 20 times faster (0.35 s
    against 0.017 s per Lloyd iteration on the full vocabulary, 2 threads).
    """
    import torch

    sums = torch.zeros((k, vectors.shape[1]), dtype=torch.float32)
    source = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    sums.index_add_(0, torch.from_numpy(labels.astype(np.int64)), source)
    return sums.numpy()


def concept_clusters(embeddings: np.ndarray, k: int, seed: int = 0, cache: bool = True) -> np.ndarray:
    """Cluster labels of concept embeddings, cached on disk by content hash, K and seed."""
    digest = hashlib.sha256(np.ascontiguousarray(embeddings).tobytes())
    digest.update(f"{embeddings.shape}|{k}|{seed}".encode())
    path = cache_subdir("clusters") / f"kmeans-{digest.hexdigest()[:20]}.npy"
    if cache and path.exists():
        try:
            labels = np.load(path, allow_pickle=False)
            if labels.shape == (len(embeddings),):
                return labels
        except (OSError, ValueError):
            pass
    labels, _ = spherical_kmeans(embeddings, k, np.random.default_rng(seed))
    if cache:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, labels)
    return labels


class QueryStatistics:
    """Per-cluster running reward statistics that make up the observation.

    Args:
        labels: cluster label of every action (concept position), shape (n_actions,).
        n_clusters: K.
        budget: the episode's query budget (for normalising counts and progress).
    """

    def __init__(self, labels: np.ndarray, n_clusters: int, budget: int) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n_clusters = int(n_clusters)
        self.budget = int(budget)
        self.reset()

    @property
    def size(self) -> int:
        """Observation length, 2K + 2."""
        return 2 * self.n_clusters + 2

    def reset(self) -> None:
        """Forget the episode's queries."""
        self.reward_sum = np.zeros(self.n_clusters, dtype=np.float64)
        self.count = np.zeros(self.n_clusters, dtype=np.int64)
        self.steps = 0
        self.last_reward = 0.0

    def record(self, action: int, reward: float) -> None:
        """Count one query of the concept at ``action`` and its reward."""
        cluster = self.labels[action]
        self.reward_sum[cluster] += reward
        self.count[cluster] += 1
        self.steps += 1
        self.last_reward = float(reward)

    def observation(self) -> np.ndarray:
        """The observation vector (see the env's Observation Space table), clipped to [-1, 1]."""
        mean = np.divide(self.reward_sum, self.count, out=np.zeros(self.n_clusters), where=self.count > 0)
        counts = np.minimum(self.count / self.budget, 1.0)
        progress = min(self.steps / self.budget, 1.0)
        obs = np.concatenate([mean, counts, [progress, self.last_reward]])
        return np.clip(obs, -1.0, 1.0).astype(np.float32)
