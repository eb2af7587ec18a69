"""Benchmark the reward: how far each (encoder, reward) variant points at the target.

Measured on the frozen world's own tables (full vocabulary; every concept's search results, the
downloader's dedup rule on the served bytes' hashes, ``too_small`` images skipped), per target:

* ``image_auc``: AUC of the image reward for "is a target-category image", over searchable web images;
* ``concept_auc``: AUC of the fresh concept reward (top-10 mean) for "at least half of its results are
  target images", at 5 results per query (``concept_auc_20``: at 20), see
  :func:`ie_env.worlds.signal.concept_reward_auc`;
* ``ceiling_5`` / ``ceiling_20``: the share of the random -> oracle gap closed by a greedy agent that
  knows the true concept score of every concept's *new* images (the env's reward) and always takes
  the best, at 5 and 20 results per query: the most any reward-maximiser can do. The metric is the
  relevant-image fraction of the episode's new non-duplicate downloads (10 iterations x 16 queries);
  random is averaged over ``--seeds`` seeds (>= 5), the oracle (greedy on the privileged ground-truth
  relevance of each concept's results) over the same seeds.

JSON keys: ``variants`` (``encoder/reward`` -> target -> {``image_auc``, ``concept_auc``,
``concept_auc_20``, ``ceiling_5``, ``ceiling_20``}), ``default_variant`` (the frozen env's default
encoder and reward), ``best_variant`` (highest ``ceiling_5`` on the first target), ``build_seconds``
(variant -> target -> seconds to build that frozen world's encoder side now: corpus embedding, or
its cache load, plus the rewards), ``baselines`` (target -> {``random_5``,
``oracle_5``, ``random_20``, ``oracle_20``}), ``setup``.

Image embeddings are shared by every reward variant of an encoder (the rewards are functions of
them) and cached with the frozen world's corpus embeddings, so the first run embeds the 70,922 web
images once per encoder (minutes on a CPU) and later runs take seconds per variant.
Encoders: ``warmup-convnet-32`` (the default) and ``pretrained-64`` unless ``--encoders`` names others
(``pretrained-96``, ``pretrained-128``, ``finetuned-64``). ``--quick``: the default encoder, ``ocp-10``
and the shop target only, 5 seeds.

    python benchmarks/reward.py [--quick] [--json out.json] [--targets ocp-10,shop-3] [--encoders pretrained-64]
        [--background-size 16384]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, parser  # noqa: E402
from _reward_sim import Tables, ceiling_gap, greedy_fraction, oracle_fraction, random_fraction  # noqa: E402

from ie_env.worlds.common import BACKGROUND_SAMPLE  # noqa: E402

ENCODERS = {  # name -> EnvConfig fields of the frozen env with that encoder
    "pretrained-64": {"frozen_encoder": "pretrained", "image_size": 64},
    "pretrained-96": {"frozen_encoder": "pretrained", "image_size": 96},
    "pretrained-128": {"frozen_encoder": "pretrained", "image_size": 128},
    "finetuned-64": {"frozen_encoder": "finetuned", "image_size": 64},
    "warmup-convnet-32": {"frozen_encoder": "warmup", "image_size": 32},
}
ENCODER_NAMES = {(v["frozen_encoder"], v["image_size"]): k for k, v in ENCODERS.items()}
TARGETS = ("ocp-10", "ocp-30", "fmnist", "shop-3")
BUDGET = {"budget": 160, "queries_per_iteration": 16}


def encoder_side(
    target: str, encoder: str, background_size: int = BACKGROUND_SAMPLE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(corpus embeddings, target-train embeddings, background rows, seconds) of a frozen world."""
    from ie_env.config import EnvConfig
    from ie_env.worlds.common import background_rows, corpus_embeddings, make_learner, open_target

    started = time.perf_counter()
    config = EnvConfig(target=target, frozen=True, progress=False, **ENCODERS[encoder])
    opened = open_target(config, progress=False)
    learner = make_learner(config, opened, progress=False)
    web = corpus_embeddings(learner, opened.corpus, progress=True)
    targets = learner.target_embeddings
    rows = background_rows(opened, np.random.default_rng(0), size=background_size)
    return web, targets, rows, time.perf_counter() - started


def measure_variant(tables: dict[int, Tables], rewards: np.ndarray, seeds: int) -> dict[str, float]:
    """The AUCs and the ceilings of one reward on one target."""
    from ie_env.worlds.signal import auc, concept_reward_auc

    t5 = tables[5]
    out = {
        "image_auc": auc(rewards[t5.searchable], t5.relevant[t5.searchable]),
        "concept_auc": concept_reward_auc(t5.results, rewards, t5.relevant)["auc"],
        "concept_auc_20": concept_reward_auc(tables[20].results, rewards, t5.relevant)["auc"],
    }
    for n, tab in tables.items():
        ceiling = np.mean([greedy_fraction(tab, rewards, BUDGET["budget"], seed) for seed in range(2)])
        out[f"ceiling_{n}"] = ceiling_gap(ceiling, tab.baseline)
        out[f"ceiling_fraction_{n}"] = float(ceiling)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    from ie_env.config import EnvConfig
    from ie_env.learn.config import REWARDS
    from ie_env.learn.reward import image_rewards
    from ie_env.runtime import default_threads, use_threads

    args_parser = parser(
        __doc__, quick_help="one encoder, ocp-10 and shop-3 (minutes with cached embeddings)"
    )
    args_parser.add_argument("--targets", default=None, help="comma-separated targets")
    args_parser.add_argument("--encoders", default=None, help=f"comma-separated, of {', '.join(ENCODERS)}")
    args_parser.add_argument("--rewards", default=",".join(REWARDS), help="comma-separated reward variants")
    args_parser.add_argument("--seeds", type=int, default=5, help="seeds of the random and oracle baselines")
    args_parser.add_argument(
        "--background-size",
        type=int,
        default=BACKGROUND_SAMPLE,
        help="web images in the background variants' sample (default: the env's, %(default)s)",
    )
    args = args_parser.parse_args(argv)
    use_threads(default_threads())
    targets = args.targets.split(",") if args.targets else (["ocp-10", "shop-3"] if args.quick else TARGETS)
    default_encoders = ["warmup-convnet-32"] if args.quick else ["warmup-convnet-32", "pretrained-64"]
    encoders = args.encoders.split(",") if args.encoders else default_encoders
    variants: dict[str, dict] = {}
    build: dict[str, dict] = {}
    baselines: dict[str, dict] = {}
    for target in targets:
        tables = {n: Tables.build(target, n, image_size=ENCODERS[encoders[0]]["image_size"]) for n in (5, 20)}
        baselines[target] = {}
        for n, tab in tables.items():
            tab.baseline = (
                np.mean([random_fraction(tab, BUDGET["budget"], s) for s in range(args.seeds)]),
                np.mean([oracle_fraction(tab, BUDGET["budget"], s) for s in range(args.seeds)]),
            )
            baselines[target].update({f"random_{n}": tab.baseline[0], f"oracle_{n}": tab.baseline[1]})
        print(f"{target}: baselines {baselines[target]}", flush=True)
        for encoder in encoders:
            web, target_emb, bg_rows, seconds = encoder_side(target, encoder, args.background_size)
            for reward in args.rewards.split(","):
                started = time.perf_counter()
                rewards = image_rewards(
                    web, target_emb, variant=reward, background=web[bg_rows], backend="torch"
                )
                name = f"{encoder}/{reward}"
                build.setdefault(name, {})[target] = seconds + time.perf_counter() - started
                variants.setdefault(name, {})[target] = measure_variant(tables, rewards, args.seeds)
                print(f"  {target:8s} {name:34s} {variants[name][target]}", flush=True)
    first = targets[0]
    best = max(variants, key=lambda v: variants[v][first]["ceiling_5"])
    defaults = EnvConfig(frozen=True)
    default = (
        f"{ENCODER_NAMES.get((defaults.frozen_encoder, defaults.image_size), 'other')}/{defaults.reward}"
    )
    result = {
        "variants": variants,
        "default_variant": default,
        "best_variant": best,
        "build_seconds": build,
        "baselines": baselines,
        "setup": {
            "targets": targets,
            "encoders": encoders,
            "seeds": args.seeds,
            "background_size": args.background_size,
            **BUDGET,
            "vocabulary": "full",
        },
    }
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
