"""What downloaded data is worth to the learner, with search taken out of the picture.

The learning benchmark runs agents end to end; this one asks the question underneath: at an equal
number of SSL steps, does the learner gain more from *relevant* web images than from *random* web
images or from no images at all? Per seed, one learner (the env's: warmed up and cached, same
schedule) trains ``iterations`` phases of ``steps`` steps, each phase on ``new`` fresh images drawn
from the web corpus (through ``Learner.train``: new + PCR x sample(buffer U target), the replay buffer
updated as in the env):

* ``target_only``: no new images (the phase trains on the target-train set and the buffer);
* ``relevant``: images of the target's own categories that stay on the web (what a perfect agent finds);
* ``random``: images drawn uniformly from the whole web corpus.

JSON keys: ``conditions.<name>.knn_gain`` (median over seeds, accuracy points) and ``.knn_gain_by_seed``,
``.curves`` (k-NN accuracy after each phase, per seed); ``relevant_minus_target_only`` and
``relevant_minus_random`` (medians of the per-seed differences); ``schedule``; ``seconds``.

    python benchmarks/data_value.py --quick --json out.json       # fmnist, 1 seed, 1 x 40 steps
    python benchmarks/data_value.py --warmup-steps 1500 --json out.json   # 3 seeds, 5 x 80 steps
    python benchmarks/data_value.py --encoder efficientnet_lite0 --image-size 64 --warmup-steps 100 \
        --base-lr 0.8 --batch-size 64 --json out.json   # the pretrained start
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, median, parser  # noqa: E402

CONDITIONS = ("target_only", "relevant", "random")


def run_condition(
    learner: Any, pool: np.ndarray | None, web: np.ndarray, test: Any, cfg: dict, seed: int
) -> list:
    """k-NN accuracy before and after each phase of one condition (``pool``: corpus rows to draw from)."""
    from ie_env.worlds.common import evaluate_learner

    images, labels = test
    rng = np.random.default_rng(1000 + seed)
    size = web.shape[1]
    curve = [evaluate_learner(learner, images, labels)["knn_accuracy"]]
    for _ in range(cfg["iterations"]):
        if pool is None:
            new = np.zeros((0, size, size, 3), dtype=np.uint8)
        else:
            new = np.ascontiguousarray(web[np.sort(rng.choice(pool, cfg["new"], replace=False))])
        learner.train(new, None if len(new) else np.zeros(0, np.float32), steps=cfg["steps"])
        curve.append(evaluate_learner(learner, images, labels)["knn_accuracy"])
    return curve


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args_parser = parser(__doc__.split("\n\n")[0], quick_help="1 seed, 1 phase of 40 steps on 160 images")
    args_parser.add_argument("--target", default="fmnist", help="a target preset with web images of its own")
    args_parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3; quick 1)")
    args_parser.add_argument("--iterations", type=int, default=None, help="training phases (default 5)")
    args_parser.add_argument("--steps", type=int, default=None, help="SSL steps per phase (default 80)")
    args_parser.add_argument("--new", type=int, default=None, help="new images per phase (default 320)")
    args_parser.add_argument("--warmup-steps", type=int, default=300, help="the env's warm-up (cached)")
    args_parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args_parser.add_argument(
        "--encoder",
        default="convnet",
        help="the learner's backbone (efficientnet_lite0: ImageNet-pretrained)",
    )
    args_parser.add_argument("--image-size", type=int, default=32, help="training resolution in px")
    args_parser.add_argument(
        "--base-lr", type=float, default=None, help="LARS base rate (default: the learner's)"
    )
    args_parser.add_argument(
        "--batch-size", type=int, default=None, help="SSL batch (default: the learner's)"
    )
    args = args_parser.parse_args(argv)
    from ie_env.config import EnvConfig
    from ie_env.runtime import use_threads
    from ie_env.worlds.common import make_learner, open_target

    use_threads(args.threads)
    cfg = {
        "iterations": args.iterations or (1 if args.quick else 5),
        "steps": args.steps or (40 if args.quick else 80),
        "new": args.new or (160 if args.quick else 320),
        "warmup_steps": args.warmup_steps,
    }
    seeds = args.seeds or (1 if args.quick else 3)
    overrides: dict[str, Any] = {"warmup_steps": args.warmup_steps}
    overrides.update({k: v for k, v in (("base_lr", args.base_lr), ("batch_size", args.batch_size)) if v})
    env_cfg = EnvConfig(
        target=args.target,
        progress=False,
        encoder=args.encoder,
        image_size=args.image_size,
        learn_overrides=overrides,
    )
    target = open_target(env_cfg, progress=False)
    web = target.corpus.load_images(None, env_cfg.image_size, progress=True)
    relevant = np.flatnonzero(np.asarray(target.relevant_mask))
    if len(relevant) < cfg["new"]:
        raise SystemExit(f"target {args.target!r} has {len(relevant)} relevant web images; need {cfg['new']}")
    pools = {"target_only": None, "relevant": relevant, "random": np.arange(len(web))}
    test = (target.test_images(env_cfg.image_size), target.test_labels)
    started = time.perf_counter()
    curves: dict[str, list[list[float]]] = {name: [] for name in CONDITIONS}
    for seed in range(seeds):
        for name in CONDITIONS:
            learner = make_learner(env_cfg, target, seed=seed, progress=False)
            learner.reseed(np.random.default_rng(seed))
            curves[name].append(run_condition(learner, pools[name], web, test, cfg, seed))
            gain = 100 * (curves[name][-1][-1] - curves[name][-1][0])
            print(f"  seed {seed} {name:12s} gain {gain:+.1f} pts", file=sys.stderr, flush=True)
    gains = {name: [100 * (c[-1] - c[0]) for c in curves[name]] for name in CONDITIONS}
    result = {
        "conditions": {
            name: {"knn_gain": median(gains[name]), "knn_gain_by_seed": gains[name], "curves": curves[name]}
            for name in CONDITIONS
        },
        "relevant_minus_target_only": median(
            r - t for r, t in zip(gains["relevant"], gains["target_only"], strict=True)
        ),
        "relevant_minus_random": median(
            r - t for r, t in zip(gains["relevant"], gains["random"], strict=True)
        ),
        "schedule": {
            **cfg,
            "target": args.target,
            "seeds": seeds,
            "encoder": args.encoder,
            "image_size": args.image_size,
            "learn_overrides": overrides,
        },
        "seconds": time.perf_counter() - started,
    }
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
