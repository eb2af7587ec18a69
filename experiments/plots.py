"""The comparison's PNG plots: learning curves and relevant mass per iteration, with bootstrap bands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ie_env.experiments.stats import bootstrap_ci


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax: Any, x: np.ndarray, series: list[list[float]], label: str) -> None:
    """Mean line and 95 % bootstrap band of equally long ``series`` (one per seed)."""
    length = min(len(s) for s in series)
    values = np.asarray([[np.nan if v is None else v for v in s[:length]] for s in series], dtype=np.float64)
    stats = [bootstrap_ci(list(values[:, i])) for i in range(length)]
    mean = np.asarray([m for m, _, _ in stats])
    (line,) = ax.plot(x[:length], mean, marker="o", markersize=3, label=label)
    ax.fill_between(x[:length], [lo for _, lo, _ in stats], [hi for _, _, hi in stats],
                    color=line.get_color(), alpha=0.2)  # fmt: skip


def _by_agent(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["agent"], []).append(row)
    return groups


def _save(plt: Any, figure: Any, ax: Any, path: Path) -> Path:
    """Grid, legend, tight layout; write ``path`` and close the figure."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_curves(rows: list[dict[str, Any]], path: Path, frozen: bool = False) -> Path:
    """k-NN accuracy over env steps per agent (frozen env: the running mean reward per iteration)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    for agent, mine in _by_agent(rows).items():
        if frozen:
            series = [r["reward_by_iteration"] for r in mine]
            _band(ax, np.arange(1, len(series[0]) + 1, dtype=np.float64), series, agent)
        else:
            series = [[a for _, a in r["knn_curve"]] for r in mine]
            steps = np.asarray([s for s, _ in mine[0]["knn_curve"]], dtype=np.float64)
            _band(ax, steps, [[100 * a for a in s] for s in series], agent)
    ax.set_xlabel("iteration" if frozen else "env steps")
    ax.set_ylabel("mean concept score" if frozen else "k-NN accuracy (%)")
    return _save(plt, figure, ax, path)


def plot_relevant(rows: list[dict[str, Any]], path: Path) -> Path:
    """Share of each iteration's downloads in target categories, per agent (cf. the paper's Fig. 6)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    for agent, mine in _by_agent(rows).items():
        series = [r["relevant_by_iteration"] for r in mine]
        _band(ax, np.arange(1, len(series[0]) + 1, dtype=np.float64), series, agent)
    ax.set_xlabel("iteration")
    ax.set_ylabel("relevant fraction of downloads")
    ax.set_ylim(0, 1)
    return _save(plt, figure, ax, path)
