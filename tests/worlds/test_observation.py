"""Concept clustering and the observation statistics."""

from __future__ import annotations

import numpy as np
import pytest

from ie_env.observation import QueryStatistics, _cluster_sums, concept_clusters, spherical_kmeans


def blobs(rng, centers=4, per=50, dim=16, noise=0.05):
    means = rng.standard_normal((centers, dim))
    points = np.concatenate([m + noise * rng.standard_normal((per, dim)) for m in means])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), np.repeat(np.arange(centers), per)


def test_kmeans_recovers_well_separated_clusters():
    points, truth = blobs(np.random.default_rng(0))
    labels, centers = spherical_kmeans(points, 4, np.random.default_rng(1))
    assert centers.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-5)
    # Each true cluster maps to exactly one label.
    for c in range(4):
        assert len(set(labels[truth == c])) == 1
    assert len(set(labels)) == 4


def test_cluster_sums_equal_sequential_float32_accumulation_bit_for_bit():
    # The cached cluster labels of existing vocabularies were made with np.add.at: the fast sums must
    # not move a single centroid, including with an empty cluster.
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 24)).astype(np.float32)
    labels = rng.integers(0, 7, 5000).astype(np.int32)
    labels[labels == 3] = 4
    expected = np.zeros((7, 24), dtype=np.float32)
    np.add.at(expected, labels, vectors)
    got = _cluster_sums(vectors, labels, 7)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert not got[3].any()


def test_kmeans_is_seeded_and_clusters_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    points, _ = blobs(np.random.default_rng(0), centers=6, noise=0.5)
    a = concept_clusters(points, 6, seed=3)
    b = concept_clusters(points, 6, seed=3, cache=False)
    np.testing.assert_array_equal(a, b)
    assert len(list((tmp_path / "clusters").glob("*.npy"))) == 1
    assert concept_clusters(points, 100, seed=0, cache=False).max() < len(points)


def test_statistics_observation_layout():
    labels = np.array([0, 0, 1, 2])
    stats = QueryStatistics(labels, n_clusters=3, budget=4)
    assert stats.size == 8
    np.testing.assert_array_equal(stats.observation(), np.zeros(8, dtype=np.float32))
    stats.record(0, 0.5)
    stats.record(1, 0.3)
    stats.record(3, -0.2)
    obs = stats.observation()
    np.testing.assert_allclose(obs[:3], [0.4, 0.0, -0.2], atol=1e-6)
    np.testing.assert_allclose(obs[3:6], [0.5, 0.0, 0.25])
    assert obs[6] == pytest.approx(0.75) and obs[7] == pytest.approx(-0.2)
    stats.reset()
    assert not stats.observation().any()
    with pytest.raises(ValueError, match="budget"):
        QueryStatistics(labels, 3, budget=0)
