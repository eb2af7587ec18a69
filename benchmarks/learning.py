"""Learning benchmark: the paper's central ablation on the offline web (full env, equal tight budgets).

Per target and seed, every agent gets the same query budget (iterations x queries x results per query)
on the full env (real search, downloads and MoCo v3 training): target-only (no downloads: the same
training phases on the target and the replay buffer alone), random, labels, softmax_gp, the registry's
best agent, and the PRIVILEGED relevance oracle (greedy on ground-truth concept relevance, read from the
frozen env's tables). Variants ``<agent>+descriptors`` (offline WordNet descriptors before every
query) and ``<agent>+labels`` (the label-set setting: the 10 % of the vocabulary nearest the class
names, half of the queries on class names) run for ``softmax_gp`` and the best agent. Reported per agent, mean over seeds: k-NN accuracy at the start and the end and
the gain (accuracy points), the relevant fraction of downloads and the images downloaded.

    python benchmarks/learning.py --quick --json out.json     # fmnist, 2 seeds, 3 x 8 queries
    python benchmarks/learning.py --quick --agents random,softmax_gp,softmax_gp+labels
    python benchmarks/learning.py --json out.json             # fmnist, shop-3, ocp-10; 3 seeds, 5 x 16

JSON: ``{"targets": {TARGET: {"agents": {NAME: {"knn_start", "knn_final", "knn_gain",
"relevant_fraction", "images_downloaded", "knn_gain_by_seed", "trained_on"}}, "best_agent": NAME,
"seconds_per_seed"}}, "budget": {"queries", "results_per_query", "ssl_steps"}, "seeds": N}``;
``trained_on`` counts the training images drawn from the new downloads, the target-train set and
the replay buffer over the run (mean over seeds), ``seconds_per_seed`` is the summed run time of
one seed of every agent. ``target_only`` is the env's no-download baseline (``target_only=True``). Cases run in up to
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


def variant_config(cfg: ExploreConfig, name: str) -> ExploreConfig:
    """``cfg`` running ``agent``, ``agent+descriptors`` (WordNet descriptors) or ``agent+labels``."""
    agent, _, variant = name.partition("+")
    if name == TARGET_ONLY:  # the env's no-download baseline; the agent's queries are never sent
        return dataclasses.replace(cfg, agent="random", target_only=True)
    settings = {"descriptors": {"descriptors": "wordnet"}, "labels": {"label_set": True}, "": {}}
    if variant not in settings:
        raise ValueError(f"unknown variant {variant!r} of {name!r}; known: +descriptors, +labels")
    return dataclasses.replace(cfg, agent=agent, **settings[variant])


def run_case(agent: str, cfg: ExploreConfig) -> dict[str, Any]:
    """One (target, agent, seed): an ``ie-explore`` run in a temp folder, summarised."""
    from ie_env.experiments.explore import run
    from ie_env.experiments.report import read_metrics
    from ie_env.experiments.stats import summarize

    from ie_env.runtime import use_threads

    use_threads(cfg.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ie-learning-") as folder:
        run_dir = run(dataclasses.replace(cfg, run_dir=str(Path(folder) / "run"), image_grid=0))
        summary = summarize(read_metrics(run_dir))
    return {**{key: summary[key] for key in KEYS}, "trained_on": summary["trained_on"],
            "seconds": time.perf_counter() - started}  # fmt: skip


def cases(
    targets: list[str], agents: list[str], seeds: int, quick: bool
) -> list[tuple[str, str, ExploreConfig]]:
    """Every (target, agent, seed) with its ``ExploreConfig`` (``target_only``: the base config's schedule)."""
    out = []
    for target in targets:
        for agent in agents:
            for seed in range(seeds):
                base = ExploreConfig(env="full", target=target, seed=seed, progress=False, **schedule(quick))
                out.append((target, agent, variant_config(base, agent)))
    return out


def aggregate(results: list[tuple[str, str, dict[str, Any]]], best: str, seeds: int) -> dict[str, Any]:
    """Means over seeds per target and agent, and the seconds one seed of every agent takes."""
    runs_by_target: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for target, agent, numbers in results:
        runs_by_target.setdefault(target, {}).setdefault(agent, []).append(numbers)
    targets: dict[str, Any] = {}
    for target, by_agent in runs_by_target.items():
        agents: dict[str, Any] = {}
        for agent, runs in by_agent.items():
            means: dict[str, Any] = {}
            for key in KEYS:
                values = [r[key] for r in runs if r[key] is not None]
                means[key] = float(np.mean(values)) if values else None
            means["knn_gain_by_seed"] = [r["knn_gain"] for r in runs]
            pools = sorted({pool for r in runs for pool in r["trained_on"]})
            means["trained_on"] = {
                p: float(np.mean([r["trained_on"].get(p, 0) for r in runs])) for p in pools
            }
            agents[agent] = means
        seconds = sum(r["seconds"] for runs in by_agent.values() for r in runs)
        # every agent's run for one seed, one after another in one process
        targets[target] = {"agents": agents, "best_agent": best, "seconds_per_seed": seconds / seeds}
    return targets


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and write the JSON."""
    args_parser = parser(__doc__.split("\n\n")[0], quick_help="fmnist only, 2 seeds, 3 x 8 queries")
    args_parser.add_argument("--targets", help="comma-separated targets (default: fmnist,shop-3,ocp-10)")
    args_parser.add_argument("--seeds", type=int, default=None, help="seeds per case (default 3; quick 2)")
    args_parser.add_argument("--workers", type=int, default=0, help="parallel processes (0: the cores)")
    args_parser.add_argument("--agents", help="comma-separated agents and variants (default: all of them)")
    args = args_parser.parse_args(argv)
    targets = (args.targets or ("fmnist" if args.quick else "fmnist,shop-3,ocp-10")).split(",")
    seeds = args.seeds or (2 if args.quick else 3)
    best = default_agent()
    variants = [f"{a}+{v}" for a in dict.fromkeys(["softmax_gp", best]) for v in ("descriptors", "labels")]
    agents = list(dict.fromkeys([TARGET_ONLY, "random", "labels", "softmax_gp", best, *variants, "oracle"]))
    if args.agents:
        agents = args.agents.split(",")
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
    budget = schedule(args.quick)
    result = {
        "targets": aggregate(results, best, seeds),
        "budget": {
            "queries": budget["iterations"] * budget["queries_per_iteration"],
            "results_per_query": budget["results_per_query"],
            "ssl_steps": budget["iterations"] * budget["train_steps"],
        },  # fmt: skip
        "seeds": seeds,
        "seconds": time.perf_counter() - started,
    }
    return finish(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
