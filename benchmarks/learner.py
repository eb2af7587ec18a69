"""Learner throughput: SSL training of our trainer vs a minimal plain torch loop, and reward scoring.

Both training loops use the same model (MoCo v3 over the configured backbone), batch size, optimiser and
batched augmentations (ie_env.learn.augment) in the same process, alternating, and the medians of the
repeats are compared: ``ratio = trainer / plain`` (target >= 0.95: our data pipeline does not starve
the model). The trainer's rate is its step loop (batch sampling from new + PCR x (buffer U target),
gathering, augmentation, forward, backward, step); the phase's fixed costs (resizing the new images,
re-embedding the target afterwards) are reported separately as ``trainer_phase_wall_images_per_s``.
On a CPU the headline training rates use process CPU time (robust to other tenants of a shared
machine); wall-clock rates are reported beside them. On CUDA they use wall time.
Reward throughput: image rewards of 25k candidate embeddings against 5k target embeddings (k = 15).

Precision (bfloat16 autocast where the CPU runs it natively, see ``ie_env.runtime``):

* ``train_bf16_ratio``: trainer images/s with bf16 allowed over float32 (``IE_ENV_BF16=0``), same
  run, alternating, medians of the repeats, process CPU time (target >= 1.7); 1.0 where bf16 is not
  native. ``train_bf16_images_per_s`` and ``train_fp32_images_per_s`` are the two rates.
* ``bf16_knn_delta``: bf16 minus float32 k-NN accuracy on ``--knn-target``'s test split after the same
  warm-up (``--knn-steps`` SSL steps on its train split, warm-up seeds 0, 1, 2, ...), median over
  ``--knn-seeds`` seeds (target >= -0.02); ``bf16_knn`` and ``fp32_knn`` list the accuracies per
  seed. ``--knn-seeds 0`` skips it. ``ocp-10``'s test split has 103 images, so one image is about
  one point and single seeds differ by up to 6 points either way: 8 seeds by default (3 with
  ``--quick``), about 4 minutes each on 2 cores.

    python benchmarks/learner.py --quick --json out.json
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from _common import finish, median, parser  # benchmarks/ is on sys.path when a benchmark runs

from ie_env import runtime
from ie_env.learn.augment import TwoViewAugment
from ie_env.learn.config import LearnConfig
from ie_env.learn.encoders import build_backbone
from ie_env.learn.moco import MoCoV3, build_optimizer
from ie_env.learn.reward import image_rewards
from ie_env.learn.trainer import Learner


def plain_loop(
    config: LearnConfig, data: torch.Tensor, steps: int, device: torch.device, seed: int
) -> tuple[float, float]:
    """(wall, CPU-time) images/s of the simplest MoCo v3 loop: random indices into a ready uint8 tensor.

    Same model layout (channels-last) and precision (``runtime.autocast``) as the trainer's.
    """
    torch.manual_seed(seed)
    backbone, dim = build_backbone(config)
    model = MoCoV3(backbone, dim, config).to(device, memory_format=torch.channels_last)  # as the learner
    opt = build_optimizer(model, config)
    aug = TwoViewAugment(config.image_size, config.min_crop_scale, config.augment_strength)
    gen = torch.Generator().manual_seed(seed)
    data = data.to(device)
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        idx = torch.randint(len(data), (config.batch_size,), generator=gen).to(device)
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in aug(data[idx], gen))
        model.update_momentum(config.momentum)
        with runtime.autocast(device):  # the same precision as the trainer's
            loss = model(x1, x2).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # the trainer reads the loss every step too (NaN check)
    n = steps * config.batch_size
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


def trainer_run(
    config: LearnConfig, target: np.ndarray, new: np.ndarray, steps: int, seed: int
) -> tuple[float, float, float]:
    """(loop wall images/s, loop CPU-time images/s, whole-phase wall images/s) of one ``Learner.train``."""
    learner = Learner(config, target, seed=seed)
    rewards = np.linspace(0, 1, len(new), dtype=np.float32)
    start = time.perf_counter()
    stats = learner.train(new, rewards, steps=steps)
    wall = time.perf_counter() - start
    return stats.images_per_s, stats.images / stats.cpu_seconds, stats.images / wall


def reward_rate(n_cand: int, n_target: int, dim: int, backend: str, repeats: int) -> float:
    """Candidates per second of ``image_rewards`` (k = 15) on random unit vectors, median of the repeats."""
    rng = np.random.default_rng(0)
    cands = rng.standard_normal((n_cand, dim)).astype(np.float32)
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    targets = rng.standard_normal((n_target, dim)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        image_rewards(cands, targets, k=15, backend=backend)
        times.append(time.perf_counter() - start)
    return n_cand / median(times)


def training_rates(
    config: LearnConfig, target: np.ndarray, new: np.ndarray, steps: int, repeats: int, device: torch.device
) -> tuple[list[float], ...]:
    """Alternate trainer and plain-loop runs; return their rates (trainer wall, CPU, phase; plain wall, CPU)."""
    data = Learner(config, target, seed=0, device="cpu")._target  # same prepared images for the plain loop
    # one untimed step of each to pay one-off costs (allocator, kernels) before measuring
    trainer_run(config, target, new, 1, seed=0)
    plain_loop(config, data, 1, device, seed=0)
    t_wall, t_cpu, t_phase, p_wall, p_cpu = [], [], [], [], []
    for r in range(repeats):
        loop_wall, loop_cpu, phase_wall = trainer_run(config, target, new, steps, seed=r)
        t_wall.append(loop_wall)
        t_cpu.append(loop_cpu)
        t_phase.append(phase_wall)
        wall, cpu = plain_loop(config, data, steps, device, seed=r)
        p_wall.append(wall)
        p_cpu.append(cpu)
    return t_wall, t_cpu, t_phase, p_wall, p_cpu


def precision_rates(
    config: LearnConfig, target: np.ndarray, new: np.ndarray, steps: int, repeats: int
) -> tuple[list[float], list[float]]:
    """Trainer CPU-time images/s with bf16 allowed and with float32, alternating (lists over repeats)."""
    bf16, fp32 = [], []
    for r in range(repeats):
        for allowed, out in ((True, bf16), (False, fp32)):
            with runtime.bf16_allowed(allowed):
                out.append(trainer_run(config, target, new, steps, seed=r)[1])
    return bf16, fp32


def knn_after_warmup(target_name: str, steps: int, seeds: int) -> dict:
    """k-NN accuracy on the target's test split after ``steps`` warm-up steps, bf16 and fp32, per seed."""
    from ie_env.web.targets import load_target

    target = load_target(target_name, progress=False)
    config = LearnConfig()
    train = target.train_images(config.image_size)
    test = target.test_images(config.image_size)
    accuracy: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(seeds):
        for allowed in (True, False):
            with runtime.bf16_allowed(allowed):
                learner = Learner(config, train, target_labels=target.train_labels, seed=seed, device="cpu")
                learner.warm_up(steps, cache=False, warmup_seed=seed)
                accuracy[allowed].append(float(learner.evaluate(test, target.test_labels).knn_accuracy))
            tag = runtime.precision_tag("cpu") if allowed else "fp32"
            print(
                f"k-NN after warm-up, seed {seed}, {tag}: {accuracy[allowed][-1]:.3f}",
                file=sys.stderr,
                flush=True,
            )
    deltas = [b - f for b, f in zip(accuracy[True], accuracy[False], strict=True)]
    return {
        "bf16_knn_delta": median(deltas),
        "bf16_knn": accuracy[True],
        "fp32_knn": accuracy[False],
        "knn_settings": {"target": target_name, "warmup_steps": steps, "seeds": seeds},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and write ``--json`` (see the module docstring)."""
    ap = parser(__doc__, quick_help="about a minute on 2 cores")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $IE_ENV_THREADS, else all cores)"
    )
    ap.add_argument(
        "--knn-target", default="ocp-10", help="target of the bf16 k-NN check (default %(default)s)"
    )
    ap.add_argument(
        "--knn-steps", type=int, default=None, help="warm-up steps of the k-NN check (default 300, quick 60)"
    )
    ap.add_argument(
        "--knn-seeds", type=int, default=None, help="seeds of the k-NN check; 0 skips it (default 8, quick 3)"
    )
    ap.add_argument("--encoder", default="convnet")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    threads = runtime.use_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch_size or (64 if args.quick else 128)
    steps = args.steps or (10 if args.quick else 30)
    repeats = args.repeats or (3 if args.quick else 5)
    config = LearnConfig(encoder=args.encoder, image_size=args.image_size, batch_size=batch)
    rng = np.random.default_rng(0)
    # images arrive at 64 px like the store's and are resized to the train size once per phase
    target = rng.integers(0, 256, (512, 64, 64, 3), dtype=np.uint8)
    new = rng.integers(0, 256, (max(256, batch * 4), 64, 64, 3), dtype=np.uint8)
    t_wall, t_cpu, t_phase, p_wall, p_cpu = training_rates(config, target, new, steps, repeats, device)
    bf16_rates, fp32_rates = precision_rates(config, target, new, steps, repeats)
    # On a CPU the rates come from process CPU time: other tenants of a shared machine change wall-clock
    # rates by 2-3x from one run to the next, but not the CPU seconds our single thread spends per image.
    # On CUDA (asynchronous work) wall time is the only meaningful clock.
    use_cpu_clock = device.type == "cpu"
    trainer, plain = (t_cpu, p_cpu) if use_cpu_clock else (t_wall, p_wall)
    feature_dim = build_backbone(config)[1]
    n_cand, n_target = 25_000, 5_000
    reward_repeats = 3 if args.quick else 5
    auto = reward_rate(n_cand, n_target, feature_dim, "auto", reward_repeats)
    torch_rate = reward_rate(n_cand, n_target, feature_dim, "torch", reward_repeats)
    try:
        faiss_rate: float | None = reward_rate(n_cand, n_target, feature_dim, "faiss", reward_repeats)
    except ImportError:
        faiss_rate = None

    result = {
        "trainer_images_per_s": median(trainer),
        "plain_images_per_s": median(plain),
        "ratio": median(trainer) / median(plain),
        "reward_images_per_s": auto,
        "clock": "process_cpu_time" if use_cpu_clock else "wall",
        "trainer_wall_images_per_s": median(t_wall),
        "plain_wall_images_per_s": median(p_wall),
        "trainer_phase_wall_images_per_s": median(t_phase),
        "reward_torch_images_per_s": torch_rate,
        "reward_faiss_images_per_s": faiss_rate,
        "train_bf16_ratio": median(bf16_rates) / median(fp32_rates),
        "train_bf16_images_per_s": median(bf16_rates),
        "train_fp32_images_per_s": median(fp32_rates),
        "precision": runtime.precision_tag(device),
        "trainer_runs": trainer,
        "plain_runs": plain,
        "settings": {
            "encoder": args.encoder,
            "image_size": args.image_size,
            "batch_size": batch,
            "steps": steps,
            "repeats": repeats,
            "threads": threads,
            "device": str(device),
            "reward_candidates": n_cand,
            "reward_targets": n_target,
            "feature_dim": feature_dim,
            "quick": args.quick,
        },
    }
    knn_seeds = args.knn_seeds if args.knn_seeds is not None else (3 if args.quick else 8)
    if knn_seeds > 0:
        knn_steps = args.knn_steps or (60 if args.quick else 300)
        result.update(knn_after_warmup(args.knn_target, knn_steps, knn_seeds))
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
