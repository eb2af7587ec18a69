"""``ie-explore``: run the full Internet Explorer env on the offline web and report each iteration.

The first main job: uniform random queries (agents come later), 5 iterations of 16 queries by default,
about 6 minutes on 2 CPU cores once the one-time builds (vocabulary embeddings, offline web, target
warm-up) are cached; each build says what it does and shows a progress bar. Per iteration it prints the
mean reward, the relevant-image fraction (share of kept downloads whose ground-truth category is a
target category; ``-`` where the engine cannot know it), images kept, and k-NN accuracy on the target's
labeled test split; the same rows go to ``<run_dir>/iterations.jsonl`` as they happen. A run dir that
already holds files is refused (resuming comes later).

    ie-explore --target ocp-10 --iterations 4 --queries-per-iteration 16 --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Args:
    """Arguments of one exploration run."""

    target: str = field(
        default="ocp-10",
        metadata={
            "help": "target preset (ocp-10, ocp-30, fmnist, gen-4), a folder of images, or comma-separated "
            "web categories (openclipart/animals/birds,openclipart/food/fruit)"
        },
    )
    vocabulary: str = field(
        default="full", metadata={"help": "vocabulary subset: full, small, words:a,b,c or a word-list file"}
    )
    iterations: int = field(
        default=5,
        metadata={"help": "iterations to run (each: queries, then a training phase and an evaluation)"},
    )
    queries_per_iteration: int = field(default=16, metadata={"help": "queries per iteration"})
    results_per_query: int = field(default=20, metadata={"help": "images requested per query"})
    train_steps: int = field(default=80, metadata={"help": "SSL optimiser steps per iteration"})
    warmup_steps: int = field(
        default=300,
        metadata={
            "help": "SSL steps on the target alone before the first query (cached per target and encoder)"
        },
    )
    encoder: str = field(default="convnet", metadata={"help": "learner backbone"})
    image_size: int = field(default=32, metadata={"help": "training and scoring resolution"})
    reward: str = field(
        default="knn",
        metadata={"help": "image reward: knn (the paper's) or knn_centered (hubness-corrected)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the env (query sampling, training order)"})
    threads: int = field(
        default=int(os.environ.get("IE_ENV_THREADS", "1")), metadata={"help": "torch CPU threads"}
    )
    web_url: str | None = field(
        default=None, metadata={"help": "an already running `ie-web serve` (default: the env starts one)"}
    )
    run_dir: str | None = field(
        default=None,
        metadata={
            "help": "where to write the store and the iteration log (default runs/explore-<target>-<seed>-<time>)"
        },
    )


def parse_args(argv: list[str] | None = None) -> Args:
    """Parse ``ie-explore``'s command line into :class:`Args`."""
    parser = argparse.ArgumentParser(prog="ie-explore", description=__doc__.split("\n\n")[0])
    defaults = Args()
    for spec in dataclasses.fields(Args):
        default = getattr(defaults, spec.name)
        kind = type(default) if default is not None else str
        parser.add_argument(
            "--" + spec.name.replace("_", "-"),
            type=kind,
            default=default,
            help=f"{spec.metadata['help']} (default: %(default)s)",
        )
    return Args(**vars(parser.parse_args(argv)))


def run(args: Args) -> list[dict]:
    """Run the exploration; returns one summary row per iteration."""
    import gymnasium as gym

    import ie_env  # noqa: F401  (registers the env ids)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(
        args.run_dir or f"runs/explore-{args.target.replace('/', '_').replace(',', '+')}-{args.seed}-{stamp}"
    )
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"run dir {str(run_dir)!r} is not empty; pass a new --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=1))
    budget = args.iterations * args.queries_per_iteration
    print(
        f"ie-explore: target {args.target}, vocabulary {args.vocabulary}, {budget} random queries, run dir {run_dir}"
    )
    started = time.perf_counter()
    env = gym.make(
        "ie_env/InternetExplorer-v0",
        target=args.target,
        vocabulary=args.vocabulary,
        budget=budget,
        queries_per_iteration=args.queries_per_iteration,
        results_per_query=args.results_per_query,
        train_steps_per_iteration=args.train_steps,
        encoder=args.encoder,
        image_size=args.image_size,
        reward=args.reward,
        threads=args.threads,
        web_url=args.web_url,
        run_dir=str(run_dir / "store"),
        learn_overrides={"warmup_steps": args.warmup_steps},
    )
    rows: list[dict] = []
    try:
        env.reset(seed=args.seed)
        base = env.unwrapped
        print(f"env ready in {time.perf_counter() - started:.0f} s: {base.action_space.n:,} concepts")
        print("evaluating the starting encoder (k-NN on the target's test split) ...", flush=True)
        initial = base.evaluate()
        print(f"k-NN accuracy before exploring: {initial['knn_accuracy']:.3f}")
        header = f"{'iter':>4} {'mean reward':>11} {'relevant':>8} {'kept':>5} {'k-NN acc':>8} {'loss':>7} {'seconds':>7}"
        print(header)
        with open(run_dir / "iterations.jsonl", "a", buffering=1) as log:
            rewards, relevant, kept = [], [], 0
            iteration_started = time.perf_counter()
            done = False
            while not done:
                action = int(base.np_random.integers(base.action_space.n))
                _, reward, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                rewards.append(reward)
                kept += info["images_kept"]
                if info["relevant_fraction"] is not None:
                    relevant.extend([info["relevant_fraction"]] * info["images_kept"])
                if "train" in info or done:
                    row = {
                        "iteration": info["iteration"],
                        "mean_reward": float(np.mean(rewards)),
                        "relevant_fraction": float(np.mean(relevant)) if relevant else None,
                        "images_kept": kept,
                        "knn_accuracy": info.get("eval", {}).get("knn_accuracy"),
                        "loss": info.get("train", {}).get("loss"),
                        "seconds": time.perf_counter() - iteration_started,
                    }
                    rows.append(row)
                    log.write(json.dumps(row) + "\n")
                    acc = "-" if row["knn_accuracy"] is None else f"{row['knn_accuracy']:.3f}"
                    loss = "-" if row["loss"] is None else f"{row['loss']:.3f}"
                    rel = "-" if row["relevant_fraction"] is None else f"{row['relevant_fraction']:.3f}"
                    print(
                        f"{row['iteration']:>4} {row['mean_reward']:>11.4f} {rel:>8} "
                        f"{kept:>5} {acc:>8} {loss:>7} {row['seconds']:>7.1f}"
                    )
                    rewards, relevant, kept = [], [], 0
                    iteration_started = time.perf_counter()
    finally:
        env.close()
    print(f"done in {time.perf_counter() - started:.0f} s; iteration log: {run_dir / 'iterations.jsonl'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run ``ie-explore``; returns the exit code (2 with a one-line message for bad input)."""
    from ie_env.errors import SetupError

    args = parse_args(argv)
    try:
        run(args)
    except SetupError as exc:
        print(f"ie-explore: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad target, vocabulary or config values: say which, no traceback
        print(f"ie-explore: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
