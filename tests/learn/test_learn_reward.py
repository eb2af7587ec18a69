"""The image reward (k-NN mean cosine), its hubness-corrected variant, and the top-10 concept score."""

from __future__ import annotations

import numpy as np
import pytest

from ie_env.learn.reward import concept_score, image_rewards, knn_similarity

BACKENDS = ["torch", "faiss", "auto"]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _targets() -> np.ndarray:
    """15 copies of e0 and 5 copies of e1 in R^4."""
    t = np.zeros((20, 4), dtype=np.float32)
    t[:15, 0] = 1.0
    t[15:, 1] = 1.0
    return t


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_mean_on_constructed_embeddings(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    cands = _unit(
        np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, 0]], dtype=np.float32)
    )
    got = knn_similarity(cands, _targets(), 15, backend=backend)
    # e0: its 15 neighbours are the 15 copies of e0; diagonal: every target at cos 1/sqrt2;
    # e1: 5 ones + 10 zeros; e2: all zeros; -e0: 5 zeros (e1) beat the -1s, then ten -1s.
    expected = [1.0, 1 / np.sqrt(2), 5 / 15, 0.0, -10 / 15]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got.dtype == np.float32


def test_paper_reward_uses_k15_and_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    cands, targets = _unit(rng.standard_normal((50, 16))), _unit(rng.standard_normal((40, 16)))
    sims = cands @ targets.T
    brute = np.sort(sims, axis=1)[:, -15:].mean(axis=1)
    np.testing.assert_allclose(image_rewards(cands, targets), brute, atol=1e-5)
    np.testing.assert_allclose(image_rewards(cands, targets, k=1), sims.max(axis=1), atol=1e-5)


def test_chunking_does_not_change_results() -> None:
    rng = np.random.default_rng(1)
    cands, targets = _unit(rng.standard_normal((37, 8))), _unit(rng.standard_normal((20, 8)))
    a = knn_similarity(cands, targets, 5, backend="torch", chunk_size=4)
    b = knn_similarity(cands, targets, 5, backend="torch", chunk_size=1000)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_k_larger_than_target_uses_all_and_empty_queries() -> None:
    t = _targets()[:3]
    got = knn_similarity(_unit(np.array([[1.0, 0, 0, 0]])), t, 15, backend="torch")
    np.testing.assert_allclose(got, [1.0])
    assert knn_similarity(np.zeros((0, 4), np.float32), t, 15).shape == (0,)
    with pytest.raises(ValueError, match="at least one key"):
        knn_similarity(t, t[:0], 3)
    with pytest.raises(ValueError, match="backend"):
        knn_similarity(t, t, 3, backend="annoy")


def test_centered_variant_formula() -> None:
    rng = np.random.default_rng(2)
    cands, targets, bg = (_unit(rng.standard_normal((n, 6)) + 0.5) for n in (10, 30, 25))
    mean = bg.mean(axis=0)

    def ren(x: np.ndarray) -> np.ndarray:
        return _unit(x - mean)

    c, t, b = ren(cands), ren(targets), ren(bg)
    k = 4
    expected = np.sort(c @ t.T, 1)[:, -k:].mean(1) - np.sort(c @ b.T, 1)[:, -k:].mean(1) + 1.0
    got = image_rewards(cands, targets, k=k, variant="knn_centered", background=bg)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_centered_variant_demotes_hub_images() -> None:
    """A generic image near the centre of the web scores high on the paper's reward, low on the corrected one."""
    rng = np.random.default_rng(3)
    hub_dir = np.array([1.0, 0, 0, 0, 0, 0, 0, 0])
    target_dir = np.array([0, 1.0, 0, 0, 0, 0, 0, 0])
    web = _unit(hub_dir * 2 + rng.standard_normal((200, 8)) * 0.6)  # the web clusters around the hub
    targets = _unit(hub_dir * 2 + target_dir * 1.5 + rng.standard_normal((30, 8)) * 0.3)
    hub = _unit(hub_dir[None] * 2 + rng.standard_normal((1, 8)) * 0.05)
    relevant = _unit(hub_dir[None] * 2 + target_dir * 1.5 + rng.standard_normal((1, 8)) * 0.3)
    cands = np.concatenate([hub, relevant])
    plain = image_rewards(cands, targets)
    centred = image_rewards(cands, targets, variant="knn_centered", background=web)
    assert plain[0] > 0.5  # the hub looks relevant to the paper's reward
    assert centred[1] > centred[0] + 0.5  # after centring the relevant image clearly wins
    assert (centred[1] - centred[0]) > (plain[1] - plain[0])


def test_centered_variant_needs_background() -> None:
    t = _targets()
    with pytest.raises(ValueError, match="background"):
        image_rewards(t, t, variant="knn_centered")
    with pytest.raises(ValueError, match="variant"):
        image_rewards(t, t, variant="max")


class TestConceptScore:
    def test_mean_of_top_10(self) -> None:
        rewards = np.arange(25, dtype=np.float32) / 100  # top 10 are 0.15 .. 0.24
        score, status = concept_score(np.random.default_rng(0).permutation(rewards))
        assert score == pytest.approx(np.mean(np.arange(15, 25) / 100), abs=1e-6)
        assert status == "ok"

    def test_exactly_ten_and_fewer(self) -> None:
        assert concept_score(np.full(10, 0.3)) == pytest.approx((0.3, "ok"))
        score, status = concept_score([0.1, 0.5, 0.3])
        assert score == pytest.approx(0.3)
        assert status == "few_images"

    def test_no_images(self) -> None:
        assert concept_score([]) == (0.0, "no_images")
        assert concept_score(np.array([np.nan])) == (0.0, "no_images")

    def test_custom_top_and_ignores_non_finite(self) -> None:
        score, status = concept_score([1.0, np.nan, 0.0, 0.5, np.inf], top=2)
        assert (score, status) == (pytest.approx(0.75), "ok")
