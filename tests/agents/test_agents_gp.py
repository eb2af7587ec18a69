import numpy as np
import pytest
from ie_env.agents.gp import GaussianProcess, GPConfig
from scipy.stats import spearmanr


def clustered_unit_vectors(n, d=384, centres=40, spread=0.6, seed=0):
    """Unit vectors around random centres: a cheap stand-in for sentence embeddings."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    x = c[rng.integers(centres, size=n)] + spread * rng.normal(size=(n, d)) * np.sqrt(1.0 / 1.0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("length_scale", "noise", "standardize"), [(1.0, 0.01, False), (0.5, 0.1, True), (0.7, 0.001, False)]
)
def test_gp_matches_scikit_learn(length_scale, noise, standardize):
    sklearn_gp = pytest.importorskip("sklearn.gaussian_process")
    kernels = pytest.importorskip("sklearn.gaussian_process.kernels")
    x = clustered_unit_vectors(300, d=32, centres=6, seed=1)
    rng = np.random.default_rng(2)
    obs = rng.choice(300, 60, replace=False)
    y = np.sin(3 * x[obs, 0]) * 0.05 + 0.5 + 0.01 * rng.normal(size=60)
    counts = rng.integers(1, 4, size=60)
    ours = GaussianProcess(GPConfig(length_scale=length_scale, noise=noise, standardize=standardize))
    mean, std = ours.fit(x[obs], y, counts).predict(x, method="exact")
    kernel = kernels.ConstantKernel(1.0, "fixed") * kernels.RBF(length_scale, "fixed")
    reference = sklearn_gp.GaussianProcessRegressor(
        kernel, alpha=noise / counts, optimizer=None, normalize_y=standardize
    ).fit(x[obs].astype(np.float64), y)
    ref_mean, ref_std = reference.predict(x.astype(np.float64), return_std=True)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-4)
    np.testing.assert_allclose(std, ref_std, atol=1e-4)


def test_prior_without_observations_and_bad_input():
    gp = GaussianProcess(GPConfig(signal_variance=4.0))
    mean, std = gp.predict(np.eye(3))
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_array_equal(std, 2.0)
    with pytest.raises(ValueError):
        gp.fit(np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match="GPConfig.length_scale"):
        GPConfig(length_scale=0.0)


def _fast_vs_exact(n, m, seed=0, sample=None):
    """Exact and fast posteriors; the exact one on a random ``sample`` of the concepts if given."""
    x = clustered_unit_vectors(n, seed=seed)
    rng = np.random.default_rng(seed)
    obs = rng.choice(n, m, replace=False)
    w = rng.normal(size=x.shape[1])
    y = np.tanh(x[obs] @ w) * 0.05 + 0.5 + 0.01 * rng.normal(size=m)
    gp = GaussianProcess(GPConfig()).fit(x[obs], y)
    subset = np.arange(n) if sample is None else rng.choice(n, sample, replace=False)
    exact = gp.predict(x[subset], method="exact")
    fast_mean, fast_std = gp.predict(x, method="fast")
    return exact, (fast_mean[subset], fast_std[subset])


def test_fast_path_ranks_like_the_exact_gp():
    (mean, std), (fast_mean, fast_std) = _fast_vs_exact(4000, 600)
    np.testing.assert_allclose(fast_mean, mean, atol=1e-4)
    assert spearmanr(mean + std, fast_mean + fast_std)[0] >= 0.99
    assert spearmanr(std, fast_std)[0] >= 0.99


@pytest.mark.slow
def test_fast_path_full_vocabulary_size():
    (mean, std), (fast_mean, fast_std) = _fast_vs_exact(146_347, 5000, sample=20_000)
    assert spearmanr(mean + std, fast_mean + fast_std)[0] >= 0.99
