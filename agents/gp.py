"""Gaussian-process regression over concept text embeddings (the paper's reward predictor).

The kernel is the RBF ``k(a, b) = s² exp(-‖a − b‖² / (2ℓ²))`` with signal variance ``s²`` and
length-scale ``ℓ``; the observations carry Gaussian noise of variance ``noise / count`` (an observation
that averages ``count`` repeats is that much more certain). The prior mean is 0, or the observations'
mean with ``standardize=True`` (then ``y`` is also scaled to unit variance before the fit and the
prediction is scaled back).

Two prediction paths:

* :meth:`GaussianProcess.predict` with ``method="exact"``: Cholesky of the ``m × m`` kernel matrix in
  float64, mean ``K*ᵀ α`` and variance ``s² − ‖L⁻¹ K*‖²``, chunked over the test points. This matches
  scikit-learn's ``GaussianProcessRegressor`` (mean and std within 1e-6 on small problems).
* ``method="fast"``: for every concept of the full vocabulary (146,347) against thousands of
  observations. The mean is still exact (``K* α`` in float32 torch matrix products, chunked; the
  exponent of each kernel block is one matrix product of augmented inputs). The variance uses the top
  ``rank`` eigenpairs ``(λᵢ, uᵢ)`` of the noise-free kernel matrix (randomised eigensolver) and treats
  the remaining directions as one isotropic block with the first discarded eigenvalue ``λ̄``::

      k*ᵀ (K + N)⁻¹ k* ≈ Σᵢ (uᵢᵀ k*)² / (λᵢ + σ̄²) + (‖k*‖² − ‖Uᵀ k*‖²) / (λ̄ + σ̄²)

  where ``σ̄²`` is the mean noise variance. Measured on the full vocabulary with 5,000 observations
  (2 cores): rank 256 ranks μ + σ with Spearman 0.955 against the exact GP, rank 384 0.993, rank
  1,024 0.999. The variance ``s² − k*ᵀ (K + N)⁻¹ k*`` is a difference of nearly equal numbers, so
  the products stay in float32: bfloat16 dot products dropped that Spearman to 0.14. GPyTorch's fast
  predictive variances (LOVE, Lanczos root 100 or 400) were slower on the same problem (12–14 s
  against 7 s) and less accurate (Spearman 0.81–0.91).
  ``method="auto"`` picks ``fast`` when ``m × n`` exceeds ``exact_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from ie_env.validate import check_choice, check_int, check_number


@dataclass(frozen=True)
class GPConfig:
    """Hyperparameters of :class:`GaussianProcess`.

    Attributes:
        length_scale: RBF length-scale ℓ (unit vectors are at most 2 apart).
        noise: observation noise variance of a single observation.
        signal_variance: prior variance s² of the latent function.
        standardize: centre and scale ``y`` to unit variance before fitting (the paper's GP does not).
        chunk: test points per chunk of the exact prediction.
        fast_chunk: test points per chunk of the fast prediction (small blocks stay in cache).
        rank: eigenpairs kept by the fast variance.
        exact_limit: ``method="auto"`` uses the exact path while ``m × n`` is at most this.
    """

    length_scale: float = 1.0
    noise: float = 0.01
    signal_variance: float = 1.0
    standardize: bool = False
    chunk: int = 16384
    fast_chunk: int = 1024
    rank: int = 384
    exact_limit: int = 20_000_000

    def __post_init__(self) -> None:
        check_number(self, "length_scale", 0.0, low_open=True)
        check_number(self, "noise", 0.0, low_open=True)
        check_number(self, "signal_variance", 0.0, low_open=True)
        check_choice(self, "standardize", (True, False))
        check_int(self, "chunk", 1)
        check_int(self, "fast_chunk", 1)
        check_int(self, "rank", 1)
        check_int(self, "exact_limit", 0)


def rbf(a: np.ndarray, b: np.ndarray, length_scale: float, signal_variance: float) -> np.ndarray:
    """The RBF kernel matrix between rows of ``a`` and ``b`` (float64)."""
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    with torch.inference_mode():
        exponent = _augmented(a, length_scale) @ _augmented(b, length_scale, right=True).T
        return exponent.clamp_max_(0.0).exp_().mul_(signal_variance).numpy()


def _augmented(x: torch.Tensor, length_scale: float, right: bool = False) -> torch.Tensor:
    """Rows ``[x, −γ‖x‖², 1]`` (or ``[2γx, 1, −γ‖x‖²]`` with ``right``), γ = 1 / (2ℓ²).

    One product of a left and a right block is the kernel exponent ``−γ‖a − b‖²``.
    """
    gamma = 1.0 / (2.0 * length_scale**2)
    sq = (x * x).sum(1, keepdim=True).mul_(-gamma)
    ones = torch.ones_like(sq)
    if right:
        return torch.cat([x * (2.0 * gamma), ones, sq], 1)
    return torch.cat([x, sq, ones], 1)


class GaussianProcess:
    """GP regression with fixed hyperparameters; see the module docstring.

    Args:
        config: the hyperparameters (default :class:`GPConfig`).
        seed: seed of the randomised eigensolver of the fast path (deterministic given the data).
    """

    def __init__(self, config: GPConfig | None = None, seed: int = 0) -> None:
        self.config = config or GPConfig()
        self.seed = seed
        self.x: np.ndarray | None = None
        self._fast: tuple[torch.Tensor, ...] | None = None

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, x: np.ndarray, y: np.ndarray, counts: np.ndarray | None = None) -> GaussianProcess:
        """Condition on observations ``y`` (m,) at inputs ``x`` (m, d); ``counts`` repeats averaged."""
        cfg = self.config
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
            raise ValueError(f"fit needs x (m, d) and y (m,) with m >= 1, got {x.shape} and {y.shape}")
        counts = np.ones(len(y)) if counts is None else np.asarray(counts, dtype=np.float64).reshape(-1)
        if counts.shape != y.shape or (counts <= 0).any():
            raise ValueError("counts must be positive, one per observation")
        self.offset, self.scale = 0.0, 1.0
        if cfg.standardize:
            self.offset = float(y.mean())
            spread = float(y.std())
            self.scale = spread if spread > 1e-12 else 1.0
        self.x = x
        self.noise = cfg.noise / counts
        target = (y - self.offset) / self.scale
        kernel = rbf(x, x, cfg.length_scale, cfg.signal_variance)
        self._kernel = kernel.copy()
        kernel[np.diag_indices_from(kernel)] += self.noise
        chol = torch.linalg.cholesky(torch.from_numpy(kernel))
        self._chol = chol.numpy()
        self.alpha = torch.cholesky_solve(torch.from_numpy(target)[:, None], chol)[:, 0].numpy()
        self._fast = None
        return self

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has been called."""
        return self.x is not None

    # -- prediction --------------------------------------------------------------------------

    def predict(self, x: np.ndarray, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``x`` (n, d), float64 arrays (n,).

        Without observations this is the prior: mean ``offset`` (0) and std ``s``.
        """
        cfg = self.config
        x = np.asarray(x)
        if not self.fitted:
            n = len(x)
            return np.zeros(n), np.full(n, np.sqrt(cfg.signal_variance))
        if method == "auto":
            method = "fast" if len(self.x) * len(x) > cfg.exact_limit else "exact"
        if method == "exact":
            mean, var = self._predict_exact(x)
        elif method == "fast":
            mean, var = self._predict_fast(x)
        else:
            raise ValueError(f"method must be 'auto', 'exact' or 'fast', got {method!r}")
        std = np.sqrt(np.clip(var, 0.0, None)) * self.scale
        return mean * self.scale + self.offset, std

    def _predict_exact(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        mean = np.empty(len(x))
        var = np.empty(len(x))
        for lo in range(0, len(x), cfg.chunk):
            cross = rbf(x[lo : lo + cfg.chunk], self.x, cfg.length_scale, cfg.signal_variance)
            mean[lo : lo + len(cross)] = cross @ self.alpha
            solved = scipy.linalg.solve_triangular(self._chol, cross.T, lower=True)
            var[lo : lo + len(cross)] = cfg.signal_variance - (solved * solved).sum(0)
        return mean, var

    def _prepare_fast(self) -> tuple[torch.Tensor, ...]:
        if self._fast is not None:
            return self._fast
        cfg = self.config
        m = len(self.x)
        kernel = torch.from_numpy(self._kernel).float()
        rank = min(cfg.rank, m)
        if rank + 16 >= m:
            values, vectors = torch.linalg.eigh(kernel.double())
            values, vectors = values.float(), vectors.float()
        else:  # randomised range finder with power iterations (Halko, Martinsson, Tropp 2011)
            gen = torch.Generator().manual_seed(self.seed)
            basis = kernel @ torch.randn(m, rank + 16, generator=gen)
            for _ in range(2):
                basis, _ = torch.linalg.qr(basis)
                basis = kernel @ basis
            basis, _ = torch.linalg.qr(basis)
            small_values, small_vectors = torch.linalg.eigh((basis.T @ kernel @ basis).double())
            values, vectors = small_values.float(), basis @ small_vectors.float()
        order = torch.argsort(values, descending=True)
        values, vectors = values[order].clamp_min(0.0), vectors[:, order]
        # The discarded directions are treated as having the first discarded eigenvalue.
        rest = float(values[rank]) if rank < len(values) else 0.0
        values, vectors = values[:rank], vectors[:, :rank].contiguous()
        noise = float(np.mean(self.noise))
        train = torch.from_numpy(self.x)
        self._fast = (
            _augmented(train, cfg.length_scale, right=True).float().T.contiguous(),
            torch.from_numpy(self.alpha).float(),
            vectors,
            (1.0 / (values + noise)).float(),
            torch.tensor(1.0 / (rest + noise)),
        )
        return self._fast

    def _predict_fast(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        right, alpha, vectors, inv_values, inv_rest = self._prepare_fast()
        mean = torch.empty(len(x))
        reduction = torch.empty(len(x))
        with torch.inference_mode():
            for lo in range(0, len(x), cfg.fast_chunk):
                block = torch.from_numpy(np.asarray(x[lo : lo + cfg.fast_chunk], dtype=np.float64))
                left = _augmented(block, cfg.length_scale).float()
                cross = (left @ right).clamp_max_(0.0).exp_()
                if cfg.signal_variance != 1.0:
                    cross.mul_(cfg.signal_variance)
                projected = (cross @ vectors).square_()
                total = torch.linalg.vector_norm(cross, dim=1).square_()
                hi = lo + len(block)
                mean[lo:hi] = cross @ alpha
                reduction[lo:hi] = projected @ inv_values + (total - projected.sum(1)) * inv_rest
        var = cfg.signal_variance - reduction.double()
        return mean.double().numpy(), var.numpy()
