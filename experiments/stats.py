"""Per-run summary numbers and seeded bootstrap intervals for ``ie-compare`` and the learning benchmark.

The interval is a percentile bootstrap of the mean over seeds (``rliable``'s stratified bootstrap
reduces to this with one task; ``rliable`` itself is not used because its current release does not
import with current ``arch``/``pandas``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESAMPLES = 2000


def bootstrap_ci(values: list[float], level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean and the ``level`` percentile-bootstrap interval of the mean (seeded; one value: no width)."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(data) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(data.mean())
    if len(data) == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = data[rng.integers(len(data), size=(RESAMPLES, len(data)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(low), float(high)


def knn_curve(rows: dict[str, list[dict[str, Any]]]) -> list[tuple[int, float]]:
    """(env step, k-NN accuracy) from the start, every evaluated iteration and the end."""
    curve = [(0, rows["start"][0]["eval"]["knn_accuracy"])] if rows["start"] else []
    curve += [(r["step"], r["eval"]["knn_accuracy"]) for r in rows["iteration"] if r.get("eval")]
    if rows["final"] and (not curve or curve[-1][0] != rows["final"][-1]["step"]):
        curve.append((rows["final"][-1]["step"], rows["final"][-1]["eval"]["knn_accuracy"]))
    return curve


def summarize(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One run's numbers (k-NN figures in accuracy points).

    ``knn_auc`` is the area under the k-NN accuracy curve over env steps divided by the steps (the
    mean accuracy over the run); ``relevant_fraction`` is over all kept images (weighted by images).
    """
    curve = knn_curve(rows)
    steps = np.asarray([s for s, _ in curve], dtype=np.float64)
    accuracy = 100 * np.asarray([a for _, a in curve], dtype=np.float64)
    span = steps[-1] - steps[0] if len(steps) > 1 else 0.0
    auc = float(np.trapezoid(accuracy, steps) / span) if span > 0 else float(accuracy[-1])
    known = [r for r in rows["step"] if r["relevant_fraction"] is not None and r["images_kept"]]
    kept_known = sum(r["images_kept"] for r in known)
    relevant = (
        sum(r["relevant_fraction"] * r["images_kept"] for r in known) / kept_known if kept_known else None
    )
    trained_on: dict[str, int] = {}  # training images drawn per source over the run's phases
    for row in rows["iteration"]:
        for pool, count in ((row.get("train") or {}).get("trained_on") or {}).items():
            trained_on[pool] = trained_on.get(pool, 0) + int(count)
    return {
        "knn_start": float(accuracy[0]),
        "knn_final": float(accuracy[-1]),
        "knn_gain": float(accuracy[-1] - accuracy[0]),
        "knn_auc": auc,
        "relevant_fraction": relevant,
        "images_downloaded": int(sum(r["images_kept"] for r in rows["step"])),
        "mean_reward": float(np.mean([r["reward"] for r in rows["step"]])) if rows["step"] else 0.0,
        "relevant_by_iteration": [r["relevant_fraction"] for r in rows["iteration"]],
        "reward_by_iteration": [r["mean_reward"] for r in rows["iteration"]],
        "knn_curve": curve,
        "trained_on": trained_on,
    }
