"""Benchmark the environment: frozen-env step rate and where a full-env iteration spends its time.

JSON keys:

* ``frozen_steps_per_s``: random-action steps per second of ``ie_env/InternetExplorerFrozen-v0`` made
  with ``gymnasium.make`` (so through its OrderEnforcing and PassiveEnvChecker wrappers), one torch
  thread, the full 146,347-concept vocabulary, median of repeats (target >= 2,000). One-time builds
  (precomputed search results and rewards, cached on disk) are excluded and reported separately as
  ``frozen_build_s``; ``frozen_unwrapped_steps_per_s`` is the same loop on ``env.unwrapped``.
* ``full_iteration_seconds``: seconds per stage of one iteration of ``ie_env/InternetExplorer-v0``
  (search, download, store, score summed over its queries; then train and eval), over real loopback
  HTTP, with ``total``.

``--quick`` uses the ``small`` vocabulary when the full one is not cached, and the generated corpus for
the full-env iteration.

    python benchmarks/env.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np


def measure_frozen(target: str, vocabulary: str, steps: int, repeats: int) -> dict:
    import gymnasium as gym

    import ie_env

    started = time.perf_counter()
    env = gym.make(ie_env.FROZEN_ENV_ID, target=target, vocabulary=vocabulary)
    build = time.perf_counter() - started
    n = env.action_space.n
    rng = np.random.default_rng(0)
    rates, raw_rates = [], []
    for _ in range(repeats):
        for target_env, out in ((env, rates), (env.unwrapped, raw_rates)):
            actions = rng.integers(n, size=steps)
            target_env.reset(seed=0)
            started = time.perf_counter()
            for action in actions:
                _, _, _, truncated, _ = target_env.step(int(action))
                if truncated:
                    target_env.reset()
            out.append(steps / (time.perf_counter() - started))
    env.close()
    return {
        "frozen_steps_per_s": statistics.median(rates),
        "frozen_unwrapped_steps_per_s": statistics.median(raw_rates),
        "frozen_runs": [round(r, 1) for r in rates],
        "frozen_build_s": round(build, 2),
        "frozen_concepts": int(n),
        "frozen_target": target,
    }


def measure_full_iteration(quick: bool) -> dict:
    import gymnasium as gym

    import ie_env

    if quick:
        kwargs = {
            "target": "gen-4",
            "vocabulary": "small",
            "queries_per_iteration": 8,
            "results_per_query": 20,
            "train_steps_per_iteration": 20,
        }
    else:
        kwargs = {
            "target": "ocp-10",
            "vocabulary": "full",
            "queries_per_iteration": 16,
            "results_per_query": 20,
            "train_steps_per_iteration": 40,
        }
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        env = gym.make(ie_env.ENV_ID, budget=kwargs["queries_per_iteration"], run_dir=run_dir, **kwargs)
        env.reset(seed=0)
        build = time.perf_counter() - started
        stages: dict[str, float] = {"search": 0.0, "download": 0.0, "store": 0.0, "score": 0.0}
        images = 0
        started = time.perf_counter()
        while True:
            _, _, _, truncated, info = env.step(env.action_space.sample())
            images += info["images_kept"]
            for stage in stages:
                stages[stage] += info["seconds"].get(stage, 0.0)
            if "train" in info:
                stages["train"] = info["train"].get("seconds", 0.0)
                stages["eval"] = info.get("eval", {}).get("seconds", 0.0)
                break
        stages["total"] = time.perf_counter() - started
        env.close()
    return {
        "full_iteration_seconds": {k: round(v, 3) for k, v in stages.items()},
        "full_env_build_s": round(build, 2),
        "full_iteration_images": images,
        "full_iteration_config": kwargs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--json", dest="json_path", default=None, help="write results to this JSON file")
    parser.add_argument("--target", default="ocp-10", help="frozen env target (default %(default)s)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ie_env.concepts.vocabulary import Vocabulary

    vocabulary = "full"
    if args.quick and not Vocabulary("full").embeddings_cached():
        vocabulary = "small"
    result = measure_frozen(
        args.target, vocabulary, steps=2000 if args.quick else 20000, repeats=3 if args.quick else 5
    )
    result.update(measure_full_iteration(args.quick))
    result["quick"] = args.quick

    print(f"{'metric':<32}{'value':>12}")
    print(
        f"{'frozen_steps_per_s':<32}{result['frozen_steps_per_s']:>12.0f}  ({result['frozen_concepts']:,} concepts)"
    )
    print(f"{'frozen_unwrapped_steps_per_s':<32}{result['frozen_unwrapped_steps_per_s']:>12.0f}")
    print(f"{'frozen_build_s':<32}{result['frozen_build_s']:>12.1f}")
    for stage, seconds in result["full_iteration_seconds"].items():
        print(f"{'full_iteration_seconds.' + stage:<32}{seconds:>12.2f}")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
