"""Evaluation of frozen features on a labeled split: weighted k-NN accuracy and a linear probe.

Both are deterministic given their inputs and ``seed``. Features should be L2-normalised (the k-NN
classifier uses cosine similarity). Labels are arbitrary integers; a test label never seen in training
counts as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class EvalResult:
    """Accuracies in [0, 1] on the test split."""

    knn_accuracy: float
    linear_probe_accuracy: float
    n_train: int
    n_test: int


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 2048,
) -> float:
    """Weighted k-NN accuracy (cosine, votes weighted by ``exp(sim / temperature)``, as InstDisc/DINO).

    Args:
        train_features: Shape: (n_train, dim), L2-normalised.
        train_labels: integer labels. Shape: (n_train,).
        test_features: Shape: (n_test, dim), L2-normalised.
        test_labels: Shape: (n_test,).
        k: neighbours (uses all training points if fewer).
        temperature: vote temperature.
        chunk_size: test points per similarity matmul (bounds memory).
    """
    classes, train_y = np.unique(np.asarray(train_labels), return_inverse=True)
    test_y = _encode(classes, np.asarray(test_labels))
    if len(test_y) == 0:
        raise ValueError("knn_accuracy needs at least one test example")
    train = torch.as_tensor(np.asarray(train_features, dtype=np.float32))
    test = torch.as_tensor(np.asarray(test_features, dtype=np.float32))
    ty = torch.as_tensor(train_y)
    k = min(k, train.shape[0])
    preds = []
    for start in range(0, test.shape[0], chunk_size):
        sims = test[start : start + chunk_size] @ train.t()
        top_sim, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(sims.shape[0], len(classes))
        votes.scatter_add_(1, ty[top_idx], torch.exp(top_sim / temperature))
        preds.append(votes.argmax(dim=1))
    pred = torch.cat(preds).numpy()
    return float(np.mean(pred == test_y))


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    seed: int = 0,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Multinomial logistic regression on frozen, standardised features (full-batch L-BFGS).

    Args:
        train_features: Shape: (n_train, dim).
        train_labels: integer labels. Shape: (n_train,).
        test_features: Shape: (n_test, dim).
        test_labels: integer labels. Shape: (n_test,).
        seed: seeds the weight initialisation.
        weight_decay: L2 penalty on the weights (mean-loss scale).
        max_iter: L-BFGS iterations.
    """
    classes, train_y = np.unique(np.asarray(train_labels), return_inverse=True)
    test_y = _encode(classes, np.asarray(test_labels))
    if len(test_y) == 0:
        raise ValueError("linear_probe_accuracy needs at least one test example")
    x = torch.as_tensor(np.asarray(train_features, dtype=np.float64))
    xt = torch.as_tensor(np.asarray(test_features, dtype=np.float64))
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-6)
    x, xt = (x - mean) / std, (xt - mean) / std
    y = torch.as_tensor(train_y)
    gen = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(x.shape[1], len(classes), generator=gen, dtype=torch.float64)).requires_grad_()
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xt @ w + b).argmax(dim=1).numpy()
    return float(np.mean(pred == test_y))


def evaluate_features(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int = 20,
    seed: int = 0,
) -> EvalResult:
    """Both metrics at once."""
    return EvalResult(
        knn_accuracy=knn_accuracy(train_features, train_labels, test_features, test_labels, k=k),
        linear_probe_accuracy=linear_probe_accuracy(
            train_features, train_labels, test_features, test_labels, seed=seed
        ),
        n_train=len(train_labels),
        n_test=len(test_labels),
    )


def _encode(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Map labels to indices into ``classes``; unseen labels become -1 (always wrong)."""
    idx = np.searchsorted(classes, labels)
    idx = np.clip(idx, 0, len(classes) - 1)
    return np.where(classes[idx] == labels, idx, -1)
