"""A run's ``report.md``: settings, start and final evaluation, the iteration table, top concepts, curves."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from ie_env.experiments.tracking import METRICS


def read_metrics(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``run_dir/metrics.jsonl`` grouped by ``kind``."""
    rows: dict[str, list[dict[str, Any]]] = {"start": [], "step": [], "iteration": [], "final": []}
    path = Path(run_dir) / METRICS
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["kind"], []).append(row)
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_run(rows: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Mean reward, relevant fraction and k-NN accuracy per iteration (x: env steps) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = rows["iteration"]
    steps = [r["step"] for r in iterations]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(steps, [r["mean_reward"] for r in iterations], marker="o")
    axes[0].set_title("mean concept score")
    axes[1].plot(steps, [r["relevant_fraction"] or 0.0 for r in iterations], marker="o")
    axes[1].set_title("relevant fraction of downloads")
    knn = [(0, rows["start"][0]["eval"]["knn_accuracy"])] if rows["start"] else []
    knn += [(r["step"], r["eval"]["knn_accuracy"]) for r in iterations if r.get("eval")]
    if rows["final"]:
        knn.append((rows["final"][0]["step"], rows["final"][0]["eval"]["knn_accuracy"]))
    axes[2].plot([s for s, _ in knn], [100 * a for _, a in knn], marker="o")
    axes[2].set_title("k-NN accuracy (%)")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` (and ``curves.png``) from the run's files; returns its path."""
    run_dir = Path(run_dir)
    config = tomllib.loads((run_dir / "config.toml").read_text())
    rows = read_metrics(run_dir)
    plot_run(rows, run_dir / "curves.png")
    start = rows["start"][0]["eval"] if rows["start"] else {}
    final = rows["final"][-1] if rows["final"] else {"eval": {}, "top_concepts": []}
    kept = sum(r["images_kept"] for r in rows["step"])
    lines = [
        f"# ie-explore: {config['agent']} on the {config['env']} env, target {config['target']}",
        "",
        f"Seed {config['seed']}, {config['iterations']} iterations x {config['queries_per_iteration']} "
        f"queries, {config['results_per_query']} results per query, vocabulary `{config['vocabulary']}`.",
        "",
        "| | start | final |",
        "|---|---|---|",
        f"| k-NN accuracy | {_fmt(start.get('knn_accuracy'))} | {_fmt(final['eval'].get('knn_accuracy'))} |",
        f"| linear probe | {_fmt(start.get('linear_probe_accuracy'))} | "
        f"{_fmt(final['eval'].get('linear_probe_accuracy'))} |",
        "",
        f"Images kept: {kept}. Settings: `config.toml`; per-step rows: `{METRICS}`; "
        "TensorBoard: `tensorboard --logdir` this folder's parent.",
        "",
        "![reward, relevant fraction and k-NN accuracy per iteration](curves.png)",
        "",
        "| iteration | steps | mean reward | relevant fraction | images kept | SSL loss | k-NN accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows["iteration"]:
        loss = (r.get("train") or {}).get("loss")
        knn = (r.get("eval") or {}).get("knn_accuracy")
        lines.append(
            f"| {r['iteration']} | {r['step']} | {r['mean_reward']:.4f} | {_fmt(r['relevant_fraction'])} | "
            f"{r['images_kept']} | {_fmt(loss)} | {_fmt(knn)} |"
        )
    lines += ["", "## Top concepts", "", "| query | mean reward | times queried |", "|---|---|---|"]
    lines += [f"| {c['query']} | {c['mean_reward']:.4f} | {c['queries']} |" for c in final["top_concepts"]]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
