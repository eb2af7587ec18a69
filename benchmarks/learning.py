"""Learning benchmark: the paper's central ablation on the offline web (full env, equal tight budgets).

Per target and seed, every agent gets the same query budget (iterations x queries x results per query)
on the full env (real search, downloads and MoCo v3 training): target-only (no downloads: the same
training phases on the target and the replay buffer alone), random, labels, softmax_gp, the registry's
best agent, and the PRIVILEGED relevance oracle (greedy on ground-truth concept relevance, read from the
frozen env's tables). Reported per agent, mean over seeds: k-NN accuracy at the start and the end and
the gain (accuracy points), the relevant fraction of downloads and the images downloaded.

    python benchmarks/learning.py --quick --json out.json     # fmnist, 2 seeds, 3 x 8 queries
    python benchmarks/learning.py --json out.json             # fmnist, shop-3, ocp-10; 3 seeds, 5 x 16

JSON: ``{"targets": {TARGET: {"agents": {NAME: {"knn_start", "knn_final", "knn_gain",
"relevant_fraction", "images_downloaded"}}, "best_agent": NAME}}, "seeds": N}``. Cases run in up to
``--workers`` processes (default: the cores, each with one torch thread).
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, parser  # noqa: E402
from ie_env.experiments.config import ExploreConfig, default_agent  # noqa: E402

TARGET_ONLY = "target_only"
KEYS = ("knn_start", "knn_final", "knn_gain", "relevant_fraction", "images_downloaded")


def schedule(quick: bool) -> dict[str, Any]:
    """The shared budget: tight downloads (10 results per query), equal for every agent."""
    if quick:
        return {"iterations": 3, "queries_per_iteration": 8, "results_per_query": 10, "train_steps": 60}
    return {"iterations": 5, "queries_per_iteration": 16, "results_per_query": 10, "train_steps": 80}


def target_only(cfg: ExploreConfig) -> dict[str, Any]:
    """The same training phases with no downloads: the learner sees the target (and buffer) only."""
    from ie_env.runtime import use_threads
    from ie_env.worlds.common import evaluate_learner, make_learner, open_target

    use_threads(cfg.threads)
    env_cfg = cfg.env_config(None)
    target = open_target(env_cfg, progress=False)
    learner = make_learner(env_cfg, target, progress=False)
    learner.reseed(np.random.default_rng(cfg.seed))
    test = target.test_images(cfg.image_size)
    start = evaluate_learner(learner, test, target.test_labels)["knn_accuracy"]
    size = cfg.image_size
    for _ in range(cfg.iterations):
        learner.train(
            np.zeros((0, size, size, 3), dtype=np.uint8), np.zeros(0, np.float32), steps=cfg.train_steps
        )
    final = evaluate_learner(learner, test, target.test_labels)["knn_accuracy"]
    return {"knn_start": 100 * start, "knn_final": 100 * final, "knn_gain": 100 * (final - start),
            "relevant_fraction": None, "images_downloaded": 0}  # fmt: skip


def run_case(agent: str, cfg: ExploreConfig) -> dict[str, Any]:
    """One (target, agent, seed): an ``ie-explore`` run in a temp folder, summarised."""
    if agent == TARGET_ONLY:
        return target_only(cfg)
    from ie_env.experiments.explore import run
    from ie_env.experiments.report import read_metrics
    from ie_env.experiments.stats import summarize

    from ie_env.runtime import use_threads

    use_threads(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="ie-learning-") as folder:
        run_dir = run(dataclasses.replace(cfg, run_dir=str(Path(folder) / "run"), image_grid=0))
        summary = summarize(read_metrics(run_dir))
    return {key: summary[key] for key in KEYS}


def cases(
    targets: list[str], agents: list[str], seeds: int, quick: bool
) -> list[tuple[str, str, ExploreConfig]]:
    """Every (target, agent, seed) with its ``ExploreConfig`` (``target_only``: the base config's schedule)."""
    out = []
    for target in targets:
        for agent in agents:
            for seed in range(seeds):
                base = ExploreConfig(env="full", target=target, seed=seed, progress=False, **schedule(quick))
                out.append(
                    (target, agent, base if agent == TARGET_ONLY else dataclasses.replace(base, agent=agent))
                )
    return out


def aggregate(results: list[tuple[str, str, dict[str, Any]]], best: str) -> dict[str, Any]:
    """Means over seeds per target and agent."""
    targets: dict[str, Any] = {}
    for target, agent, numbers in results:
        targets.setdefault(target, {"agents": {}, "best_agent": best})["agents"].setdefault(agent, []).append(
            numbers
        )
    for entry in targets.values():
        for agent, runs in entry["agents"].items():
            means = {}
            for key in KEYS:
                values = [r[key] for r in runs if r[key] is not None]
                means[key] = float(np.mean(values)) if values else None
            entry["agents"][agent] = means
    return targets


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and write the JSON."""
    args_parser = parser(__doc__.split("\n\n")[0], quick_help="fmnist only, 2 seeds, 3 x 8 queries")
    args_parser.add_argument("--targets", help="comma-separated targets (default: fmnist,shop-3,ocp-10)")
    args_parser.add_argument("--seeds", type=int, default=None, help="seeds per case (default 3; quick 2)")
    args_parser.add_argument("--workers", type=int, default=0, help="parallel processes (0: the cores)")
    args = args_parser.parse_args(argv)
    targets = (args.targets or ("fmnist" if args.quick else "fmnist,shop-3,ocp-10")).split(",")
    seeds = args.seeds or (2 if args.quick else 3)
    best = default_agent()
    agents = list(dict.fromkeys([TARGET_ONLY, "random", "labels", "softmax_gp", best, "oracle"]))
    todo = cases(targets, agents, seeds, args.quick)
    workers = min(args.workers or os.cpu_count() or 1, len(todo))
    started = time.perf_counter()
    results = []
    with futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {pool.submit(run_case, agent, cfg): (target, agent) for target, agent, cfg in todo}
        for job in futures.as_completed(jobs):
            target, agent = jobs[job]
            results.append((target, agent, job.result()))
            print(f"learning: {len(results)}/{len(todo)} ({target}, {agent})", file=sys.stderr, flush=True)
    result = {"targets": aggregate(results, best), "seeds": seeds, "seconds": time.perf_counter() - started}
    return finish(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
