r"""``ie-compare``: agents x seeds on one env and target, in parallel processes, with a report.

    ie-compare --config experiments/configs/frozen_5x3.toml
    ie-compare --agents random,softmax_gp --seeds 0,1 --set env=\\"frozen\\" --set iterations=4

A sweep is data: a TOML file with a ``[compare]`` table (``agents``, ``seeds``, ``workers``, ``out``),
an ``[explore]`` table of ``ie-explore`` settings shared by every case, and optional
``[agent_args.<agent>]`` tables. Every case is one ``ie-explore`` run (its own folder, metrics,
TensorBoard events and report) under ``<out>/``; cases run in up to ``workers`` processes (default:
the CPU cores). The comparison writes ``results.csv`` (one row per case) and ``report.md``: per
agent the mean and 95 % bootstrap interval over seeds of the final k-NN accuracy, its gain over the
starting encoder, the area under the accuracy curve (mean accuracy over the run), the relevant
fraction of downloads and the images downloaded, with PNG plots (learning curves with interval
bands; share of downloads in target categories per iteration, the paper's Fig. 6 analogue).
On the frozen env the encoder is fixed, so k-NN figures do not move; compare rewards and relevance.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import csv
import dataclasses
import multiprocessing
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from ie_env.experiments.config import ExploreConfig, from_mapping, parse_value, toml_value
from ie_env.experiments.stats import bootstrap_ci, summarize

COMPARE_KEYS = ("agents", "seeds", "workers", "out")
COLUMNS = ("knn_final", "knn_gain", "knn_auc", "relevant_fraction", "images_downloaded", "mean_reward")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The cases of a comparison: every agent with every seed, on one base ``ie-explore`` config."""

    base: ExploreConfig
    agents: tuple[str, ...]
    seeds: tuple[int, ...]
    agent_args: dict[str, dict[str, Any]]
    workers: int
    out: Path

    def cases(self) -> list[ExploreConfig]:
        """One validated :class:`ExploreConfig` per (agent, seed), each with its own run folder."""
        out = []
        for agent in self.agents:
            args = tuple(f"{k}={toml_value(v)}" for k, v in self.agent_args.get(agent, {}).items())
            for seed in self.seeds:
                name = f"{self.base.target.replace('/', '_')}-{self.base.env}__{agent}__{seed}"
                out.append(dataclasses.replace(
                    self.base, agent=agent, agent_args=args, seed=seed, progress=False,
                    run_dir=str(self.out / name),
                ))  # fmt: skip
        return out


def load_sweep(args: argparse.Namespace) -> Sweep:
    """The sweep from ``--config`` and the flags over it (bad keys and values named, before any work)."""
    data: dict[str, Any] = {}
    if args.config:
        try:
            data = tomllib.loads(Path(args.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read sweep {args.config!r}: {exc}") from None
    unknown = sorted(set(data) - {"compare", "explore", "agent_args"})
    if unknown:
        raise ValueError(
            f"sweep: unknown table(s) {', '.join(unknown)}; allowed: compare, explore, agent_args"
        )
    compare = dict(data.get("compare", {}))
    bad = sorted(set(compare) - set(COMPARE_KEYS))
    if bad:
        raise ValueError(f"[compare]: unknown key(s) {', '.join(bad)}; allowed: {', '.join(COMPARE_KEYS)}")
    explore = dict(data.get("explore", {}))
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
        explore[key.strip()] = parse_value(text)
    agents = args.agents.split(",") if args.agents else compare.get("agents", ["random", "softmax_gp"])
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else compare.get("seeds", [0, 1, 2])
    base = from_mapping({"progress": False, **explore}, source="[explore]")
    agent_args = data.get("agent_args", {})
    workers = args.workers if args.workers is not None else int(compare.get("workers", 0))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    default_out = Path(base.runs_root) / f"compare__{base.target.replace('/', '_')}-{base.env}__{stamp}"
    out = Path(args.out or compare.get("out") or default_out)
    sweep = Sweep(base, tuple(agents), tuple(seeds), agent_args, workers, out)
    sweep.cases()
    return sweep


_FROZEN_ENVS: dict[str, tuple[Any, dict[str, Any]]] = {}  # per worker process: env and its evaluation


def _world_key(cfg: ExploreConfig) -> str:
    """What identifies the env a case runs on (cases with one key share a frozen env)."""
    return repr(cfg.env_config(None))


def _frozen_env(cfg: ExploreConfig) -> tuple[Any, dict[str, Any]]:
    """This worker's env of ``cfg``'s frozen world and its evaluation, made on first use."""
    from ie_env.experiments.explore import make_env

    key = _world_key(cfg)
    if key not in _FROZEN_ENVS:
        env = make_env(cfg, Path(cfg.run_dir))  # a frozen env writes nothing to its run folder
        _FROZEN_ENVS[key] = (env, env.unwrapped.evaluate())
    return _FROZEN_ENVS[key]


def _prepare_frozen_world(cfg: ExploreConfig) -> None:
    """In a worker, before any case runs: build (or load) ``cfg``'s frozen world on every core.

    The cases run one thread each; on a cold cache each worker would otherwise build the same world
    (warm-up, web image embeddings, ranked results) at the same time on a fraction of the machine.
    The world's tables are cached on disk, so the other workers then only load them, and this worker
    keeps its env for its own cases.
    """
    from ie_env.runtime import use_threads

    use_threads(cfg.threads)  # the other workers are idle meanwhile; each case sets its own count
    _frozen_env(cfg)


def _run_case(cfg: ExploreConfig) -> str:
    """One case in a worker; frozen-env cases of a worker share one env (reset per case)."""
    from ie_env.experiments.explore import run

    from ie_env.runtime import use_threads

    use_threads(cfg.threads or 1)  # cases run in parallel, one per core: one thread each unless told
    if cfg.env != "frozen":
        return str(run(cfg))
    env, initial = _frozen_env(cfg)
    return str(run(cfg, env=env, initial=initial))


def _distinct_frozen_worlds(cases: list[ExploreConfig]) -> list[ExploreConfig]:
    """The first case of each distinct frozen world among ``cases``."""
    first: dict[str, ExploreConfig] = {}
    for cfg in cases:
        if cfg.env == "frozen":
            first.setdefault(_world_key(cfg), cfg)
    return list(first.values())


def run_cases(sweep: Sweep) -> list[Path]:
    """Run every case, ``workers`` processes at a time (bounded by the cores); their run folders."""
    cases = sweep.cases()
    workers = min(sweep.workers or os.cpu_count() or 1, os.cpu_count() or 1, len(cases))
    context = multiprocessing.get_context("spawn")
    done: list[Path] = []
    with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        for cfg in _distinct_frozen_worlds(cases) if workers > 1 else []:
            pool.submit(_prepare_frozen_world, cfg).result()
        jobs = {pool.submit(_run_case, cfg): cfg for cfg in cases}
        for job in futures.as_completed(jobs):
            cfg = jobs[job]
            done.append(Path(job.result()))
            print(f"ie-compare: {len(done)}/{len(cases)} done ({cfg.agent}, seed {cfg.seed})", flush=True)
    return [Path(cfg.run_dir) for cfg in cases]


def collect(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One summary row per case (agent, seed and :func:`~ie_env.experiments.stats.summarize`)."""
    from ie_env.experiments.report import read_metrics

    rows = []
    for run_dir in run_dirs:
        config = tomllib.loads((run_dir / "config.toml").read_text())
        rows.append({"agent": config["agent"], "seed": config["seed"], **summarize(read_metrics(run_dir))})
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """``results.csv``: agent, seed, knn_start and :data:`COLUMNS`."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["agent", "seed", "knn_start", *COLUMNS])
        for row in rows:
            writer.writerow([row["agent"], row["seed"], row["knn_start"], *(row[c] for c in COLUMNS)])
    return path


def agent_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per agent, per column: mean and 95 % bootstrap interval over seeds."""
    table: dict[str, dict[str, tuple[float, float, float]]] = {}
    for agent in dict.fromkeys(r["agent"] for r in rows):
        mine = [r for r in rows if r["agent"] == agent]
        table[agent] = {c: bootstrap_ci([r[c] for r in mine]) for c in COLUMNS}
    return table


def write_report(sweep: Sweep, rows: list[dict[str, Any]]) -> Path:
    """``report.md`` with the table and the embedded plots."""
    from ie_env.agents import report_name
    from ie_env.experiments.plots import plot_curves, plot_relevant

    out = sweep.out
    plot_curves(rows, out / "learning_curves.png", frozen=sweep.base.env == "frozen")
    plot_relevant(rows, out / "relevant_mass.png")
    table = agent_table(rows)

    def cell(value: tuple[float, float, float], digits: int = 2) -> str:
        mean, low, high = value
        return "-" if mean != mean else f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

    b = sweep.base
    lines = [
        f"# ie-compare: {len(sweep.agents)} agents x {len(sweep.seeds)} seeds, {b.env} env, target {b.target}",
        "",
        f"{b.iterations} iterations x {b.queries_per_iteration} queries, {b.results_per_query} results per "
        f"query, vocabulary `{b.vocabulary}`. Mean over seeds and 95 % percentile-bootstrap interval; k-NN in "
        "accuracy points; AUC: mean k-NN accuracy over the run. Per case: `results.csv` and its run folder.",
        "",
        "| agent | final k-NN | gain | AUC | relevant fraction | images downloaded | mean reward |",
        "|---|---|---|---|---|---|---|",
    ]
    for agent, values in table.items():
        lines.append(
            f"| {report_name(agent)} | {cell(values['knn_final'])} | {cell(values['knn_gain'])} | "
            f"{cell(values['knn_auc'])} | {cell(values['relevant_fraction'], 3)} | "
            f"{cell(values['images_downloaded'], 0)} | {cell(values['mean_reward'], 4)} |"
        )
    if b.env == "frozen":
        lines += ["", "The frozen env's encoder is fixed: k-NN figures are the starting encoder's."]
    lines += ["", "![learning curves](learning_curves.png)", "", "![relevant mass](relevant_mass.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``ie-compare``'s flags."""
    parser = argparse.ArgumentParser(prog="ie-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="sweep TOML file ([compare], [explore], [agent_args.NAME])")
    parser.add_argument("--agents", help="comma-separated agent names (overrides the sweep's)")
    parser.add_argument("--seeds", help="comma-separated seeds (overrides the sweep's)")
    parser.add_argument("--workers", type=int, help="parallel processes (0: the CPU cores)")
    parser.add_argument("--out", help="comparison folder (default runs/compare__<target>-<env>__<time>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an ie-explore setting for every case, VALUE in TOML (--set iterations=4)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``ie-compare``; returns the exit code (2 with a one-line message for bad input)."""
    try:
        sweep = load_sweep(parse_args(argv))
        if sweep.out.exists() and any(sweep.out.iterdir()):
            raise ValueError(f"comparison folder {str(sweep.out)!r} is not empty; pass a new --out")
        sweep.out.mkdir(parents=True, exist_ok=True)
    except ValueError as exc:
        print(f"ie-compare: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    cases = len(sweep.agents) * len(sweep.seeds)
    print(f"ie-compare: {cases} cases ({', '.join(sweep.agents)} x seeds {list(sweep.seeds)}) in {sweep.out}")
    rows = collect(run_cases(sweep))
    write_csv(rows, sweep.out / "results.csv")
    report = write_report(sweep, rows)
    print(f"ie-compare: done in {time.perf_counter() - started:.0f} s; report {report}; "
          f"TensorBoard: tensorboard --logdir {sweep.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
