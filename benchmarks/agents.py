"""Benchmark the agents: the GP's speed and accuracy, and every agent's relevant-image fraction.

JSON keys:

* ``gp_seconds``: refit + posterior mean and std for every concept of the full vocabulary (146,347;
  its cached text embeddings, else clustered random unit vectors of that size) from 5,000
  observations, with the agents' fast path (target <= 5 s on 2 cores); ``gp_exact_seconds_per_1k``:
  the exact path's cost per 1,000 concepts, for comparison.
* ``gp_spearman``: rank correlation of the fast path's μ + σ with the exact GP's, on a random
  sample of 20,000 concepts (the exact GP over all of them takes minutes).
* ``relevant_fraction``, ``oracle_gap_closed``, ``ceiling_gap_closed``: objects target → agent →
  value, on the frozen env with the tight budget (10 iterations × 16 queries × 5 results), averaged
  over seeds. The relevant fraction is the share of new (non-duplicate) downloads in a target
  category; oracle gap closed = (agent − random) / (oracle − random); ceiling gap closed = (agent −
  random) / (ceiling − random). ``oracle (privileged)`` reads the true relevance of every concept;
  ``ceiling (privileged)`` is greedy on the true score of every concept's new images under the env's
  reward (computed here from the frozen world's tables). Both are research yardsticks, not agents.
  Variants ``<agent>+descriptors`` (offline WordNet descriptors before every query, on an env made
  with ``descriptors="wordnet"``) and ``<agent>+labels`` (the label-set setting: the 10 % of the
  vocabulary nearest the target's class names, half of the queries on class names) are measured for
  ``softmax_gp`` and the target's best plain learning agent
  (the GP agents).
* ``relevant_images``: target → agent → relevant new images per episode (mean over seeds), to read
  next to the fraction: a policy that keeps few images can have a high fraction and fewer relevant
  images than random.
* ``ppo_fraction``: target → PPO's relevant fraction in its first and last training episode (mean over
  seeds, ``--ppo-episodes`` each; ``relevant_fraction.<target>.ppo`` is the last 3) and ``best_agent``:
  the exploring agent (not the class-name baselines, not PPO) with the highest mean oracle gap closed.

Targets: ``ocp-10`` and ``fmnist`` with the full vocabulary when the offline web is built, else
``gen-4`` with the ``small`` vocabulary. ``--quick``: 2 seeds, a 20,000 × 1,000 GP problem, no PPO.

    python benchmarks/agents.py [--quick] [--json out.json] [--targets ocp-10,fmnist] [--seeds 3]
        [--env-args frozen_encoder=pretrained,image_size=64,reward=knn_centered]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, parser  # noqa: E402

AGENTS = (
    "random", "labels", "labels_half", "softmax_gp", "ucb", "thompson", "epsilon_greedy", "zucb", "caption_zucb",
    "search_zucb",
)  # fmt: skip
VARIANTS = ("descriptors", "labels")
BUDGET = {"budget": 160, "queries_per_iteration": 16, "results_per_query": 5}
# The generated test corpus is a smoke check: a short encoder warm-up, as in the test suite.
TEST_LEARN = {"warmup_steps": 10, "batch_size": 32}


def concept_embeddings(n: int) -> tuple[np.ndarray, str]:
    """The full vocabulary's cached embeddings (first ``n``), else clustered random unit vectors."""
    try:
        from ie_env.concepts.vocabulary import Vocabulary

        vectors = Vocabulary("full").embeddings(build=False)
        if vectors is not None and len(vectors) >= n:
            return np.asarray(vectors[:n], dtype=np.float32), "full vocabulary"
    except Exception:  # no WordNet: synthetic stand-in
        pass
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 384))[rng.integers(64, size=n)] + 0.6 * rng.normal(size=(n, 384))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), "synthetic"


def measure_gp(n: int, m: int, sample: int = 20_000) -> dict:
    """Time the fast path and compare its ranking with the exact GP's."""
    from ie_env.agents.gp import GaussianProcess, GPConfig
    from scipy.stats import spearmanr

    x, source = concept_embeddings(n)
    rng = np.random.default_rng(0)
    obs = rng.choice(n, m, replace=False)
    y = 0.5 + 0.05 * np.tanh(x[obs] @ rng.normal(size=x.shape[1])) + 0.01 * rng.normal(size=m)
    gp = GaussianProcess(GPConfig())
    started = time.perf_counter()
    gp.fit(x[obs], y)
    mean, std = gp.predict(x, method="fast")
    seconds = time.perf_counter() - started
    subset = rng.choice(n, min(sample, n), replace=False)
    started = time.perf_counter()
    exact_mean, exact_std = gp.predict(x[subset], method="exact")
    exact_seconds = time.perf_counter() - started
    return {
        "gp_seconds": seconds,
        "gp_exact_seconds_per_1k": exact_seconds / len(subset) * 1000,
        "gp_spearman": float(spearmanr(mean[subset] + std[subset], exact_mean + exact_std)[0]),
        "gp_spearman_std": float(spearmanr(std[subset], exact_std)[0]),
        "gp_mean_max_error": float(np.abs(mean[subset] - exact_mean).max()),
        "gp_problem": f"{n} concepts x {m} observations ({source})",
    }


def ceiling_scores(env) -> callable:
    """PRIVILEGED: the env's true concept score of every concept's not-yet-obtained images.

    Follows the frozen world's dedup (its ``Deduplicator``: an image is a duplicate when its
    perceptual hash is within the threshold of one already obtained this episode; exact copies have
    distance 0) and its ``too_small`` rule. Duplicates *within* one query's results are not
    discounted (a slight overestimate of such queries).
    """
    from ie_env.download.dedup import hamming

    world = env.unwrapped._world
    results = np.asarray(world.results)
    valid = results >= 0
    rows = np.where(valid, results, 0)
    unique = np.unique(rows[valid])
    phashes = np.asarray(world.row_phash, dtype=np.uint64)[unique]
    rewards = np.asarray(world.row_rewards, dtype=np.float64)[rows]
    usable = valid & ~np.asarray(world.too_small)[rows]
    top = int(world.concept_top)
    state = {"dedup": None, "done": 0, "blocked": None}

    def scores() -> np.ndarray:
        dedup = world.dedup
        if state["dedup"] is not dedup:  # a new episode
            state.update(dedup=dedup, done=0, blocked=np.zeros(len(world.row_rewards), dtype=bool))
        blocked = state["blocked"]
        for h in dedup.phashes[state["done"] :]:  # images obtained since last call
            blocked[unique[hamming(phashes, int(h)) <= dedup.threshold]] = True
        state["done"] = len(dedup.phashes)
        values = np.where(usable & ~blocked[rows], rewards, -np.inf)
        values = -np.sort(-values, axis=1)[:, :top]
        kept = np.isfinite(values)
        return np.where(kept, values, 0.0).sum(1) / np.maximum(kept.sum(1), 1)

    return scores


def measure_agents(
    target: str,
    vocabulary: str,
    seeds: int,
    ppo_episodes: int,
    agents: tuple[str, ...] = AGENTS,
    env_args: dict | None = None,
) -> dict:
    """Relevant fraction of every agent (mean over seeds) on one target (``env_args``: more EnvConfig fields)."""
    import gymnasium as gym
    from ie_env.agents import make_agent, relevant_fraction, relevant_images, run_episode
    from ie_env.agents.oracle import CeilingAgent
    from ie_env.agents.registry import concept_space_agents

    import ie_env

    extra = {"learn_overrides": TEST_LEARN} if target.startswith("gen-") else {}
    extra.update(env_args or {})
    env = gym.make(ie_env.FROZEN_ENV_ID, target=target, vocabulary=vocabulary, **BUDGET, **extra)
    described = None  # the same env with WordNet descriptors, made when a variant needs it
    fractions: dict[str, float] = {}
    counts: dict[str, float] = {}  # relevant new images per episode, to read next to the fraction

    def measure(name: str) -> None:
        nonlocal described
        agent_name, _, variant = name.partition("+")
        on = env
        if variant == "descriptors":
            if described is None:
                described = gym.make(ie_env.FROZEN_ENV_ID, target=target, vocabulary=vocabulary,
                                     descriptors="wordnet", **BUDGET, **extra)  # fmt: skip
            on = described
        values, images = [], []
        for seed in range(seeds):
            if name == "ceiling":
                agent = CeilingAgent(ceiling_scores(env))
            else:
                agent = make_agent(agent_name, on, label_set=variant == "labels" or None)
            records = run_episode(agent, on, agent_seed=seed, env_seed=seed)
            values.append(relevant_fraction(records))
            images.append(relevant_images(records))
        label = f"{name} (privileged)" if name in ("oracle", "ceiling") else name
        fractions[label] = float(np.mean(values))
        counts[label] = float(np.mean(images))
        print(f"  {target:8s} {label:26s} {fractions[label]:.4f}", flush=True)

    for name in (*dict.fromkeys(("random", *agents)), "oracle", "ceiling"):
        measure(name)
    plain = gaps(fractions, "oracle (privileged)")
    # the best learning agent (not the labels baselines)
    learners = [a for a in agents if a != "random" and a in concept_space_agents()]
    best = max(learners, key=lambda a: plain[a]) if learners else None
    for agent_name in dict.fromkeys(a for a in ("softmax_gp", best) if a in fractions):
        for variant in VARIANTS:
            measure(f"{agent_name}+{variant}")
    if described is not None:
        described.close()
    ppo = {}
    if ppo_episodes:  # one PPO run per seed; each episode's fraction is averaged over the seeds
        runs = []
        for seed in range(seeds):
            agent = make_agent("ppo", env, n_steps=32, batch_size=16, seed=seed)
            agent.learn(ppo_episodes * BUDGET["budget"], env_seed=seed)
            runs.append([
                relevant_fraction(agent.history[i : i + BUDGET["budget"]])
                for i in range(0, len(agent.history), BUDGET["budget"])
            ])  # fmt: skip
        per_episode = [float(v) for v in np.mean(runs, axis=0)]
        ppo = {"first": per_episode[0], "last": per_episode[-1], "episodes": per_episode}
        fractions["ppo"] = float(np.mean(per_episode[-3:]))
        print(f"  {target:8s} {'ppo (last 3 episodes)':26s} {fractions['ppo']:.4f}", flush=True)
    env.close()
    return {"fractions": fractions, "images": counts, "ppo": ppo, "best": best}


def gaps(fractions: dict[str, float], top: str) -> dict[str, float]:
    """(agent − random) / (top − random) for every agent."""
    base, best = fractions["random"], fractions[top]
    span = best - base
    return {k: (v - base) / span if span > 0 else float("nan") for k, v in fractions.items()}


def parse_env_args(text: str) -> dict:
    """``key=value,...`` into EnvConfig fields (values read as TOML); a bad field is named by EnvConfig."""
    from ie_env.experiments.config import parse_value

    from ie_env.config import EnvConfig

    fields: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env-args: {item!r} is not key=value")
        fields[key.strip()] = parse_value(value)
    EnvConfig(frozen=True, **fields)  # validate before any work
    return fields


def web_targets() -> list[str]:
    """``ocp-10`` and ``fmnist`` when the offline web is built."""
    from ie_env.paths import cache_dir

    return ["ocp-10", "fmnist"] if any((cache_dir() / "web").glob("*/*")) else []


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args_parser = parser(__doc__)
    args_parser.add_argument("--targets", default=None, help="comma-separated targets")
    args_parser.add_argument("--seeds", type=int, default=None)
    args_parser.add_argument("--vocabulary", default=None, help="vocabulary subset (default: full)")
    args_parser.add_argument("--skip-gp", action="store_true")
    args_parser.add_argument(
        "--ppo-episodes", type=int, default=30, help="PPO training episodes per seed (0: no PPO; quick: 0)"
    )
    args_parser.add_argument("--agents", default=None, help="comma-separated agents (random always runs)")
    args_parser.add_argument(
        "--env-args",
        default="",
        help="frozen env fields, e.g. frozen_encoder=pretrained,image_size=64,reward=knn_centered",
    )
    args = args_parser.parse_args(argv)
    env_args = parse_env_args(args.env_args)
    seeds = args.seeds or (2 if args.quick else 3)
    result: dict = {}
    if not args.skip_gp:
        result.update(measure_gp(20_000, 1000) if args.quick else measure_gp(146_347, 5000))
    targets = args.targets.split(",") if args.targets else web_targets()
    vocabulary = args.vocabulary or "full"
    if not targets:
        targets, vocabulary = ["gen-4"], args.vocabulary or "small"
    fractions, images, oracle_gap, ceiling_gap, ppo = {}, {}, {}, {}, {}
    for target in targets:
        agents = tuple(args.agents.split(",")) if args.agents else AGENTS
        ppo_episodes = 0 if args.quick else args.ppo_episodes
        measured = measure_agents(target, vocabulary, seeds, ppo_episodes, agents, env_args)
        fractions[target] = measured["fractions"]
        images[target] = measured["images"]
        oracle_gap[target] = gaps(measured["fractions"], "oracle (privileged)")
        ceiling_gap[target] = gaps(measured["fractions"], "ceiling (privileged)")
        if measured["ppo"]:
            ppo[target] = {k: v for k, v in measured["ppo"].items() if k != "episodes"}
    from ie_env.agents.registry import concept_space_agents

    # the best exploring agent: not the class-name baselines (or PPO), which read the env
    names = [a for a in fractions[targets[0]] if a != "random" and a in concept_space_agents()]
    result["relevant_fraction"] = fractions
    result["relevant_images"] = images
    result["oracle_gap_closed"] = oracle_gap
    result["ceiling_gap_closed"] = ceiling_gap
    if ppo:
        result["ppo_fraction"] = ppo
    result["best_agent"] = (
        max(names, key=lambda a: np.nanmean([oracle_gap[t][a] for t in targets])) if names else None
    )
    result["setup"] = {
        "targets": targets,
        "vocabulary": vocabulary,
        "seeds": seeds,
        **BUDGET,
        "env_args": env_args,
    }
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
