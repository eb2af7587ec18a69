"""What a run records: ``metrics.jsonl`` rows and TensorBoard events, with the same tags for every agent.

The x-axis is the env step (0: before the first query). Tags:

* per step: ``step/reward`` (the concept score), ``step/images_kept``, ``step/relevant_fraction``
  (where known), ``download/<status>`` (hits per download status), ``seconds/<stage>``;
* per iteration: ``iteration/mean_reward``, ``iteration/images_kept``, ``iteration/relevant_fraction``,
  ``train/ssl_loss``, ``train/images_per_s``, ``eval/knn_accuracy``, histograms
  ``iteration/image_rewards`` and (agents that expose ``probabilities()``) ``agent/concept_probabilities``,
  text ``agent/top_concepts``, and on the full env image grids ``images/top_rewards`` and
  ``images/bottom_rewards`` captioned with their queries;
* at the end: ``eval/linear_probe_accuracy``, ``eval/knn_accuracy`` and the run's hparams.

``metrics.jsonl`` holds one JSON object per line with a ``kind``: ``start`` (the starting encoder's
evaluation), ``step``, ``iteration`` (the env's ``info["iteration_end"]``) and ``final``. On resume the
file is cut back to the checkpoint's step and TensorBoard purges later events (``purge_step``).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

METRICS = "metrics.jsonl"
TOP_CONCEPTS = 10


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the rows of ``path`` up to env step ``step`` (a killed run's later rows are dropped)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if row.get("kind") == "final" or row.get("step", 0) > step:
            continue
        kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


class Tracker:
    """Writes ``metrics.jsonl`` and TensorBoard events for one run.

    Args:
        run_dir: the run's folder (events are written there).
        store_root: the full env's image store (for image grids), or None.
        purge_step: on resume, the first step the new events may have (later old ones are purged).
        image_grid: images per top/bottom grid (0: none).
        tensorboard: write TensorBoard events.
    """

    def __init__(
        self,
        run_dir: Path,
        store_root: Path | None = None,
        purge_step: int | None = None,
        image_grid: int = 8,
        tensorboard: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.store_root = store_root
        self.image_grid = image_grid
        self.log = open(run_dir / METRICS, "a", buffering=1)  # noqa: SIM115 - closed by close()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir), purge_step=purge_step, flush_secs=10)
        self.concept_rewards: dict[str, list[float]] = defaultdict(list)
        self.iteration_rewards: list[float] = []

    # -- rows -------------------------------------------------------------------------------------

    def row(self, kind: str, step: int, **fields: Any) -> dict[str, Any]:
        """Append one ``metrics.jsonl`` row."""
        row = {"kind": kind, "step": step, **fields}
        self.log.write(json.dumps(row, default=_plain) + "\n")
        return row

    def start(self, evaluation: dict[str, Any]) -> None:
        """The starting encoder's evaluation, at step 0."""
        self.row("start", 0, eval=evaluation)
        self._scalar("eval/knn_accuracy", evaluation.get("knn_accuracy"), 0)

    def step(self, step: int, action: int, reward: float, info: dict[str, Any]) -> dict[str, Any]:
        """Record one env step (``step``: steps taken so far, 1-based)."""
        self.concept_rewards[str(info.get("query", action))].append(float(reward))
        self.iteration_rewards.extend(float(r) for r in info.get("image_rewards", ()))
        row = self.row(
            "step",
            step,
            iteration=int(info.get("iteration", 0)),
            action=int(action),
            query=info.get("query"),
            reward=float(reward),
            status=info.get("status"),
            images_kept=int(info.get("images_kept", 0)),
            relevant_fraction=info.get("relevant_fraction"),
            download_counts=info.get("download_counts", {}),
            seconds=info.get("seconds", {}),
        )
        self._scalar("step/reward", reward, step)
        self._scalar("step/images_kept", row["images_kept"], step)
        self._scalar("step/relevant_fraction", row["relevant_fraction"], step)
        for status, count in row["download_counts"].items():
            self._scalar(f"download/{status}", count, step)
        for stage, seconds in row["seconds"].items():
            self._scalar(f"seconds/{stage}", seconds, step)
        return row

    def iteration(self, step: int, summary: dict[str, Any], agent: Any = None) -> dict[str, Any]:
        """Record the env's ``info["iteration_end"]`` summary and the agent's view."""
        row = self.row("iteration", step, **{k: v for k, v in summary.items() if k != "steps"})
        self._scalar("iteration/mean_reward", summary["mean_reward"], step)
        self._scalar("iteration/images_kept", summary["images_kept"], step)
        self._scalar("iteration/relevant_fraction", summary["relevant_fraction"], step)
        train = summary.get("train") or {}
        self._scalar("train/ssl_loss", train.get("loss"), step)
        self._scalar("train/images_per_s", train.get("images_per_s"), step)
        self._scalar("seconds/train", train.get("seconds"), step)
        evaluation = summary.get("eval") or {}
        self._scalar("eval/knn_accuracy", evaluation.get("knn_accuracy"), step)
        self._scalar("seconds/eval", evaluation.get("seconds"), step)
        if self.writer is not None:
            if self.iteration_rewards:
                self.writer.add_histogram("iteration/image_rewards", np.asarray(self.iteration_rewards), step)
            probabilities = getattr(agent, "probabilities", None)
            if callable(probabilities):
                self.writer.add_histogram("agent/concept_probabilities", np.asarray(probabilities()), step)
            self.writer.add_text("agent/top_concepts", self.top_concepts_markdown(), step)
            self._image_grids(summary["iteration"] - 1, step)
        self.iteration_rewards = []
        return row

    def final(self, step: int, evaluation: dict[str, Any], hparams: dict[str, Any]) -> None:
        """The final evaluation (k-NN and linear probe) and the run's hparams."""
        self.row("final", step, eval=evaluation, top_concepts=self.top_concepts())
        self._scalar("eval/knn_accuracy", evaluation.get("knn_accuracy"), step)
        self._scalar("eval/linear_probe_accuracy", evaluation.get("linear_probe_accuracy"), step)
        if self.writer is not None:
            metrics = {f"hparam/{k}": float(v) for k, v in evaluation.items() if isinstance(v, int | float)}
            clean = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()}
            self.writer.add_hparams(clean, metrics, run_name="hparams", global_step=step)

    def close(self) -> None:
        """Flush and close the files."""
        self.log.close()
        if self.writer is not None:
            self.writer.close()

    # -- helpers ----------------------------------------------------------------------------------

    def top_concepts(self, n: int = TOP_CONCEPTS) -> list[dict[str, Any]]:
        """The ``n`` queries with the best mean reward so far."""
        ranked = sorted(self.concept_rewards.items(), key=lambda item: -float(np.mean(item[1])))
        return [{"query": q, "mean_reward": float(np.mean(r)), "queries": len(r)} for q, r in ranked[:n]]

    def top_concepts_markdown(self) -> str:
        """The top concepts as a Markdown table."""
        lines = ["| query | mean reward | times queried |", "|---|---|---|"]
        lines += [f"| {c['query']} | {c['mean_reward']:.4f} | {c['queries']} |" for c in self.top_concepts()]
        return "\n".join(lines)

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if self.writer is not None and value is not None and np.isfinite(float(value)):
            self.writer.add_scalar(tag, float(value), step)

    def _image_grids(self, iteration: int, step: int) -> None:
        """Top- and bottom-reward images of the store's ``iteration``, captioned with their queries."""
        if self.store_root is None or self.image_grid <= 0:
            return
        db = self.store_root / "meta.sqlite"
        if not db.exists():
            return
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT path, query, reward FROM images WHERE iteration = ? AND reward IS NOT NULL"
                " ORDER BY reward DESC, id",
                (iteration,),
            ).fetchall()
        if not rows:
            return
        n = min(self.image_grid, len(rows))
        for tag, chosen in (("images/top_rewards", rows[:n]), ("images/bottom_rewards", rows[::-1][:n])):
            self.writer.add_figure(tag, _grid_figure(self.store_root, chosen), step)


def _grid_figure(root: Path, rows: list[tuple[str, str, float]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = min(4, len(rows))
    lines = (len(rows) + cols - 1) // cols
    figure, axes = plt.subplots(lines, cols, figsize=(2.2 * cols, 2.4 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (path, query, reward) in zip(axes.flat, rows, strict=False):
        with Image.open(root / path) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        ax.set_title(f"{(query or '')[:22]}\n{reward:.3f}", fontsize=7)
    figure.tight_layout()
    return figure


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
