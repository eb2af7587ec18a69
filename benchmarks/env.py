"""Benchmark the environment: the frozen env's speed, build time and signal, parity with the full env.

JSON keys:

* ``frozen_steps_per_s``: random-action steps per second of ``ie_env/InternetExplorerFrozen-v0`` made
  with ``gymnasium.make`` (so through its OrderEnforcing and PassiveEnvChecker wrappers), the full 146,347-concept vocabulary, median of repeats (target >= 2,000);
  ``frozen_unwrapped_steps_per_s`` is the same loop on ``env.unwrapped``.
* ``frozen_build_s``: seconds to build the frozen world from a cold cache (a temporary
  ``IE_ENV_HOME`` holding only the vocabulary embeddings and the offline web, linked from the real
  cache), in a fresh process with the same thread count: caption index, warm-up, corpus embedding,
  every query's results (target <= 60 on 2 cores); ``frozen_build_stages`` gives the seconds from
  the start of the build at which each announced stage began. The offline web holds the web-wide
  table of every concept's results when ``ie-web build --vocabulary full`` made it (as ``make demo``
  does); then a target's results are that table less the target's images.
  ``frozen_build_web_table`` says whether it was there.
* ``duplicate_queries``: actions of the full vocabulary whose query text another action also sends
  (target 0).
* ``concept_reward_auc``: on the frozen env (``--target``, full vocabulary), the AUC of the concept
  reward for "at least half of the concept's results are target images" against every other
  concept with results, with the group sizes and mean rewards.
* ``frozen_full_parity``: the largest |reward difference| over 20 concepts between the frozen and
  the full env with the same encoder and no training (target <= 1e-3), and whether their hits and
  dedup outcomes were identical.
* ``full_iteration_seconds``: seconds per stage of one iteration of ``ie_env/InternetExplorer-v0``
  (16 queries x 20 results, 80 SSL steps; search, download, store, score summed over its queries;
  then train and eval), over real loopback HTTP, with ``total``.

Torch threads: ``--threads``, else ``$IE_ENV_THREADS``, else every core (``ie_env.runtime``);
``threads`` and ``precision`` (bf16 or fp32) are reported.

``--quick`` uses the ``small`` vocabulary when the full one is not cached, and the generated corpus
(``gen-4``) for the full-env measurements.

    python benchmarks/env.py [--quick] [--json out.json]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import finish, median, parser

CONCEPTS_COMPARED = 20


def measure_frozen(target: str, vocabulary: str, steps: int, repeats: int) -> dict:
    """Step rate of the frozen env, and the AUC of its concept reward."""
    import gymnasium as gym

    import ie_env
    from ie_env.worlds.signal import concept_reward_auc

    started = time.perf_counter()
    env = gym.make(ie_env.FROZEN_ENV_ID, target=target, vocabulary=vocabulary)
    warm_build = time.perf_counter() - started
    world = env.unwrapped._world
    signal = concept_reward_auc(world.results, world.row_rewards, world.relevant, world.concept_top)
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
        "frozen_steps_per_s": median(rates),
        "frozen_unwrapped_steps_per_s": median(raw_rates),
        "frozen_runs": [round(r, 1) for r in rates],
        "frozen_open_s": round(warm_build, 2),
        "frozen_concepts": int(n),
        "frozen_target": target,
        "concept_reward_auc": round(signal["auc"], 4),
        "concept_reward_signal": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in signal.items()},
    }


def measure_cold_frozen_build(target: str, vocabulary: str, threads: int) -> tuple[float, dict[str, float]]:
    """Seconds to build the frozen world in a fresh process on a cold cache (embeddings and web linked in).

    Also returns when (seconds from the start) each stage the build announces on stderr began.
    """
    from ie_env.paths import cache_dir

    real = cache_dir()
    with tempfile.TemporaryDirectory() as home:
        for name in ("embeddings", "vocabulary", "web"):
            if (real / name).exists():
                os.symlink(real / name, Path(home) / name)
        code = (
            "import sys, time; t = time.perf_counter(); import gymnasium as gym, ie_env; "
            "from ie_env import runtime; runtime.use_threads()\n"
            "class Stamp:\n"
            "    def __init__(self, f): self.f = f\n"
            "    def write(self, x):\n"
            "        if x.startswith('ie_env: '): print(f'STAGE {time.perf_counter() - t:.1f} {x[8:].strip()}')\n"
            "        return self.f.write(x)\n"
            "    def __getattr__(self, name): return getattr(self.f, name)\n"
            "sys.stderr = Stamp(sys.stderr)\n"
            f"env = gym.make(ie_env.FROZEN_ENV_ID, target={target!r}, vocabulary={vocabulary!r})\n"
            "print(f'BUILD {time.perf_counter() - t}')"
        )
        env = {**os.environ, "IE_ENV_HOME": home, "IE_ENV_THREADS": str(threads)}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        stages, seconds = {}, float("nan")
        for line in done.stdout.splitlines():
            if line.startswith("STAGE "):
                _, at, what = line.split(" ", 2)
                stages[what.removesuffix(" ...")] = float(at)
            elif line.startswith("BUILD "):
                seconds = float(line.split()[1])
        return seconds, stages


def web_table_cached() -> bool:
    """Whether ``ie-web build --vocabulary ...`` left a web-wide concept-results table in the cache."""
    from ie_env.paths import cache_dir

    return any((cache_dir() / "web" / "concept-results").glob("*.npy"))


def count_duplicate_queries() -> int:
    """Actions of the full vocabulary whose query text (in the server's normalised form) is not unique."""
    from ie_env.concepts.queries import normalize_text
    from ie_env.concepts.vocabulary import Vocabulary

    keys = [normalize_text(q) for q in Vocabulary("full").query_texts]
    return len(keys) - len(set(keys))


def measure_parity(target: str, vocabulary: str) -> dict:
    """Frozen vs full env with the same (warm-up) encoder, no training: hits, dedup and rewards."""
    import gymnasium as gym

    import ie_env

    common = {
        "target": target,
        "vocabulary": vocabulary,
        "budget": CONCEPTS_COMPARED,
        "queries_per_iteration": CONCEPTS_COMPARED,
        "results_per_query": 20,
        "progress": False,
    }
    with tempfile.TemporaryDirectory() as run_dir:
        frozen = gym.make(ie_env.FROZEN_ENV_ID, **common)
        full = gym.make(ie_env.ENV_ID, run_dir=run_dir + "/run", **common)
        frozen.reset(seed=0)
        full.reset(seed=0)
        rng = np.random.default_rng(0)
        positions = rng.choice(frozen.action_space.n, size=CONCEPTS_COMPARED, replace=False)
        worst, same_hits, same_dedup, images = 0.0, True, True, 0
        for position in positions:
            _, r_frozen, _, _, a = frozen.step(int(position))
            _, r_full, _, _, b = full.step(int(position))
            same_hits &= a["hit_ids"] == b["hit_ids"]
            same_dedup &= a["image_statuses"] == b["image_statuses"]
            worst = max(worst, abs(r_frozen - r_full))
            if len(a["image_rewards"]) == len(b["image_rewards"]) and a["image_rewards"]:
                diff = np.abs(np.asarray(a["image_rewards"]) - np.asarray(b["image_rewards"])).max()
                worst = max(worst, float(diff))
            images += len(b["image_rewards"])
        frozen.close()
        full.close()
    return {
        "frozen_full_parity": worst,
        "frozen_full_same_hits": bool(same_hits),
        "frozen_full_same_dedup": bool(same_dedup),
        "frozen_full_images_compared": images,
    }


def measure_full_iteration(quick: bool) -> dict:
    """Seconds per stage of one full-env iteration."""
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
            "train_steps_per_iteration": 80,
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
    """Run the benchmark; prints the table and writes ``--json``."""
    args_parser = parser(__doc__.split("\n\n")[0])
    args_parser.add_argument("--target", default="ocp-10", help="frozen env target (default %(default)s)")
    args_parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $IE_ENV_THREADS, else every core)"
    )
    args = args_parser.parse_args(argv)

    from ie_env import runtime

    threads = runtime.use_threads(args.threads)
    from ie_env.concepts.vocabulary import Vocabulary

    vocabulary = "full"
    if args.quick and not Vocabulary("full").embeddings_cached():
        vocabulary = "small"
    result = measure_frozen(
        args.target, vocabulary, steps=2000 if args.quick else 20000, repeats=3 if args.quick else 5
    )
    result["frozen_build_web_table"] = web_table_cached()
    build_s, build_stages = measure_cold_frozen_build(args.target, vocabulary, threads)
    result["frozen_build_s"] = round(build_s, 1)
    result["frozen_build_stages"] = build_stages
    result["duplicate_queries"] = count_duplicate_queries()
    parity_target, parity_vocabulary = ("gen-4", "small") if args.quick else (args.target, vocabulary)
    result.update(measure_parity(parity_target, parity_vocabulary))
    result.update(measure_full_iteration(args.quick))
    result["quick"] = args.quick
    result["threads"] = threads
    result["precision"] = runtime.precision_tag(runtime.default_device())
    return finish(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
