import numpy as np
import pytest
from ie_env.agents.policy import calc_prob, sample, softmax, tier_boundaries, tiered


def test_softmax_golden_values_and_range():
    p = softmax(np.array([0.5, 0.1, 0.9, 0.3, 0.7]))
    np.testing.assert_allclose(p, [0.12056639, 0.026902, 0.54034105, 0.05695153, 0.25523904], atol=1e-8)
    assert p.max() / p.min() == pytest.approx(np.exp(3.0))


def test_softmax_is_max_subtracted_and_uniform_when_flat():
    p = softmax(np.array([1e6, 1e6 - 1.0]))
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(softmax(np.full(3, 7.0)), np.full(3, 1 / 3))
    with pytest.raises(ValueError):
        softmax(np.array([np.nan, 1.0]))


def test_tier_boundaries_paper_and_shrunk():
    assert tier_boundaries(146_347) == (250, 1000, 146_347)
    assert tier_boundaries(2000) == (250, 1000, 2000)
    assert tier_boundaries(112) == (14, 56, 112)
    assert tier_boundaries(5) == (1, 2, 5)
    assert tier_boundaries(1) == (1,)


def test_tier_masses_on_the_full_vocabulary():
    scores = np.random.default_rng(0).normal(size=146_347)
    p = calc_prob(scores)
    order = np.argsort(-p)
    assert p[order[:250]].sum() == pytest.approx(0.8)
    assert p[order[250:1000]].sum() == pytest.approx(0.1)
    assert p[order[1000:]].sum() == pytest.approx(0.1)
    # within a tier the softmax ratios are kept
    raw = softmax(scores)
    a, b = order[0], order[100]
    assert p[a] / p[b] == pytest.approx(raw[a] / raw[b])


def test_calc_prob_golden_small_vocabulary():
    p = calc_prob(np.linspace(0, 1, 16))
    expected = [0.00560083, 0.00684087, 0.00835546, 0.01020538, 0.01246488, 0.01522464, 0.01859542,
                0.0227125, 0.00954274, 0.01165553, 0.0142361, 0.01738801, 0.02123776, 0.02593986,
                0.3601328, 0.4398672]  # fmt: skip
    np.testing.assert_allclose(p, expected, atol=1e-8)


def test_ties_keep_equal_probability():
    np.testing.assert_array_equal(calc_prob(np.ones(4)), np.full(4, 0.25))
    p = calc_prob(np.array([2.0, 1, 1, 1, 0]))
    np.testing.assert_allclose(p, [0.8, 0.06332108, 0.06332108, 0.06332108, 0.01003676], atol=1e-8)
    np.testing.assert_allclose(tiered(np.array([0.5, 0.5])), [0.5, 0.5])


def test_sampling_is_iid_and_golden():
    p = calc_prob(np.linspace(0, 1, 16))
    assert sample(p, 8, np.random.default_rng(123456)) == [15, 14, 5, 15, 15, 14, 14, 15]
    draws = sample(p, 20_000, np.random.default_rng(1))
    freq = np.bincount(draws, minlength=16) / 20_000
    np.testing.assert_allclose(freq, p, atol=0.01)
