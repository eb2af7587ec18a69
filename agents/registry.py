"""Agents by name: ``make_agent("softmax_gp", env, length_scale=0.5)``.

Every agent has a frozen config dataclass whose fields are its keyword arguments, validated with the
project's ``ie_env.validate`` helpers; an unknown name or keyword raises ``ValueError`` naming the
allowed ones. Agents that need something from the env beyond the concept space (the target's class
names, the privileged relevance table, the env itself for PPO) get it from the ``env`` argument.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ie_env.agents.base import Agent, ConceptSpace

from ie_env.validate import check_bool, check_choice, check_int, check_number, check_text, fail


@dataclass(frozen=True)
class RandomConfig:
    """``random``: uniform i.i.d. concepts (no settings)."""


@dataclass(frozen=True)
class LabelsConfig:
    """``labels``: the target's class names only (``label_share=1``), or mixed with random queries.

    Attributes:
        label_share: share of each iteration's queries that are class-name concepts.
        class_names: override the target's class names (default: read from the env).
    """

    label_share: float = 1.0
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_number(self, "label_share", 0.0, 1.0, low_open=True)
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if not self.class_names:
                fail(self, "class_names", "name at least one class")
            for name in self.class_names:
                check_text(self, "class_names", value=name)


@dataclass(frozen=True)
class LabelsHalfConfig(LabelsConfig):
    """``labels_half``: half of every iteration from the class names, half uniform random."""

    label_share: float = 0.5


@dataclass(frozen=True)
class OracleConfig:
    """``oracle`` (PRIVILEGED): greedy on the env's ground-truth concept relevance (no settings)."""


@dataclass(frozen=True)
class GPAgentConfig:
    """Settings shared by the GP agents (see :class:`ie_env.agents.gp.GPConfig` for the GP's).

    Attributes:
        length_scale: RBF length-scale.
        noise: observation noise variance.
        signal_variance: GP prior variance.
        standardize: standardise rewards before the fit.
        skip_empty: ignore steps that returned no new image.
        rank: eigenpairs of the fast variance path.
        refine: concepts whose σ is recomputed exactly on the fast path.
        captions: also fit the GP on the captions of the images each step returned, at their text
            embeddings, with their image rewards (see :mod:`ie_env.agents.gp_agents`).
        max_similarity: UCB-style agents: an iteration's picks keep their text cosine below this
            (near-synonyms return the same images); 1.0: no limit.
        explore: UCB-style agents: this share of an iteration's picks (after the first iteration)
            are uniform unqueried concepts instead of the best-scoring ones. Off by default: for
            caption_zucb, 0.25 found the shop in more fmnist seeds but exploited it less (frozen
            env, 10 x 16 x 5, 16 seeds: relevant fraction 0.287 against 0.323; shop-3, 8 seeds:
            0.119 against 0.153).
        features: where the GP places each concept: ``"concept"`` (its concept-text embedding, the
            paper's) or ``"query"`` (the embedding of the query the env sends for it).
    """

    length_scale: float = 1.0
    noise: float = 0.01
    signal_variance: float = 1.0
    standardize: bool = False
    skip_empty: bool = False
    rank: int = 384
    refine: int = 2000
    captions: bool = False
    max_similarity: float = 1.0
    explore: float = 0.0
    features: str = "concept"

    def __post_init__(self) -> None:
        check_choice(self, "features", ("concept", "query"))
        for field in ("length_scale", "noise", "signal_variance"):
            check_number(self, field, 0.0, low_open=True)
        check_bool(self, "standardize")
        check_bool(self, "skip_empty")
        check_bool(self, "captions")
        check_number(self, "max_similarity", -1.0, 1.0)
        check_number(self, "explore", 0.0, 1.0)
        check_int(self, "rank", 1)
        check_int(self, "refine", 0)

    def gp_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the agent class."""
        from ie_env.agents.gp import GPConfig

        gp = GPConfig(
            length_scale=self.length_scale,
            noise=self.noise,
            signal_variance=self.signal_variance,
            standardize=self.standardize,
            rank=self.rank,
        )
        return {
            "gp": gp,
            "skip_empty": self.skip_empty,
            "refine": self.refine,
            "captions": self.captions,
            "max_similarity": self.max_similarity,
            "explore": self.explore,
            "features": self.features,
        }


@dataclass(frozen=True)
class SoftmaxGPConfig(GPAgentConfig):
    """``softmax_gp``: the paper's agent. ``smr``: softmax range; ``tiers``: apply tiering."""

    smr: float = 3.0
    tiers: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self, "smr", 0.0, low_open=True)
        check_bool(self, "tiers")


@dataclass(frozen=True)
class UCBConfig(GPAgentConfig):
    """``ucb``: GP-UCB with exploration weight ``beta``."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self, "beta", 0.0)


@dataclass(frozen=True)
class ZUCBConfig(UCBConfig):
    """``zucb``: GP-UCB on standardised rewards, ℓ = 0.5, β = 0.3, empty steps ignored."""

    length_scale: float = 0.5
    standardize: bool = True
    skip_empty: bool = True
    beta: float = 0.3


@dataclass(frozen=True)
class CaptionZUCBConfig(ZUCBConfig):
    """``caption_zucb``: ``zucb`` that also fits the GP on the returned images' captions.

    ℓ = 0.7, β = 1.0 and picks below cosine 0.8 to each other: the most robust of the settings tried
    on fmnist (frozen env, 10 x 16 queries x 5 results, 4 seeds: relevant fraction 0.48, worst seed
    0.39, against zucb's 0.40 and 0.02). The GP lives in query-embedding space (``features="query"``),
    where the captions' embeddings lie too: relevant fraction 0.421 against 0.328 with concept-text
    embeddings on fmnist (16 seeds), 0.284 against 0.124 on shop-3 and 0.076 against 0.062 on ocp-10
    (8 seeds each). With query features these did worse (seeds 0-7, fmnist / shop-3): ℓ = 0.5
    0.302 / 0.001, ℓ = 1.0 0.245 / 0.223, β = 0.5 0.173 / 0.080, β = 2 0.253 / 0.187, GP noise 0.1
    0.300 / 0.175 (against 0.368 / 0.284).
    """

    captions: bool = True
    length_scale: float = 0.7
    beta: float = 1.0
    max_similarity: float = 0.8
    features: str = "query"


SEARCH_FIELDS = (
    "beta",
    "gate",
    "pair_gate",
    "pair_second",
    "step_gate",
    "min_images",
    "min_steps",
    "confirm",
)


@dataclass(frozen=True)
class SearchZUCBConfig(CaptionZUCBConfig):
    """``search_zucb``: uniform search until a step's images stand out, then ``caption_zucb``.

    Attributes:
        gate: robust z (against the search's own image rewards) of one image that ends the search.
        pair_gate: robust z of the better of two images of one step that, with the other at
            ``pair_second``, ends it (None, or from the command line a z no image reaches such as
            1e9: off).
        pair_second: see ``pair_gate``.
        step_gate: robust z of a step's reward (against the search's steps) that ends it (None: off,
            the default: with a null of ``min_steps`` values it fired early and kept confirming
            false leads).
        min_images: search images before an image may end the search.
        min_steps: search steps before a step may end it.
        confirm: back to search after a climbing iteration where nothing stood out.
    """

    gate: float = 3.0
    pair_gate: float | None = 2.5
    pair_second: float = 2.0
    step_gate: float | None = None
    min_images: int = 40
    min_steps: int = 8
    confirm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self, "gate", 0.0, low_open=True)
        check_number(self, "pair_gate", 0.0, low_open=True, optional=True)
        check_number(self, "pair_second", 0.0, low_open=True)
        check_number(self, "step_gate", 0.0, low_open=True, optional=True)
        check_int(self, "min_images", 1)
        check_int(self, "min_steps", 1)
        check_bool(self, "confirm")


@dataclass(frozen=True)
class ThompsonConfig(GPAgentConfig):
    """``thompson``: Thompson sampling from the GP's marginal posteriors."""


@dataclass(frozen=True)
class EpsilonGreedyConfig(GPAgentConfig):
    """``epsilon_greedy``: exploration probability ``epsilon`` over the GP mean."""

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self, "epsilon", 0.0, 1.0)


@dataclass(frozen=True)
class PPOConfig:
    """``ppo``: stable-baselines3 PPO on the env through an action wrapper (needs the ``rl`` extra).

    Attributes:
        actions: ``"cluster"`` (``ClusterActions``: pick a k-means cluster) or ``"embedding"``
            (``EmbeddingActions``: a point in text-embedding space).
        n_steps: env steps per rollout (small: steps are expensive in the full env).
        batch_size: minibatch size (at most ``n_steps``).
        n_epochs: optimisation epochs per rollout.
        learning_rate: Adam step size.
        ent_coef: entropy bonus.
        gamma: discount.
        hidden: width of the two hidden layers of the policy and value nets.
        seed: the agent's seed (network init, action sampling), separate from the env's.
        tensorboard_log: folder for SB3's TensorBoard logs (None: none).
    """

    actions: str = "cluster"
    n_steps: int = 32
    batch_size: int = 16
    n_epochs: int = 4
    # 1e-3 rather than SB3's 3e-4: over 30 frozen-env episodes (160 steps each) PPO's relevant
    # fraction on fmnist rose to 0.08-0.14 at 1e-3 (3 seeds) and stayed at random's 0.02 at 3e-4.
    learning_rate: float = 1e-3
    ent_coef: float = 0.01
    gamma: float = 0.9
    hidden: int = 64
    seed: int = 0
    tensorboard_log: str | None = None

    def __post_init__(self) -> None:
        check_choice(self, "actions", ("cluster", "embedding"))
        check_int(self, "n_steps", 2)
        check_int(self, "batch_size", 2, self.n_steps)
        check_int(self, "n_epochs", 1)
        check_number(self, "learning_rate", 0.0, low_open=True)
        check_number(self, "ent_coef", 0.0)
        check_number(self, "gamma", 0.0, 1.0)
        check_int(self, "hidden", 1)
        check_int(self, "seed", 0)
        if self.tensorboard_log is not None:
            check_text(self, "tensorboard_log")


@dataclass(frozen=True)
class AgentSpec:
    """A registered agent: its config class and how to build it."""

    name: str
    config: type
    build: Callable[[Any, Any], Any]
    description: str
    privileged: bool = False
    needs_env: bool = False


_REGISTRY: dict[str, AgentSpec] = {}


def register(spec: AgentSpec) -> AgentSpec:
    """Add an agent to the registry (a name may be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"agent {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def agent_names() -> tuple[str, ...]:
    """Registered agent names, sorted."""
    return tuple(sorted(_REGISTRY))


def concept_space_agents() -> tuple[str, ...]:
    """Agents that see only the concept space (no env): the ones the label-set setting can wrap."""
    return tuple(n for n in agent_names() if not _REGISTRY[n].needs_env)


def agent_spec(name: str) -> AgentSpec:
    """The spec of ``name``; ``ValueError`` naming the registered agents otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; registered agents: {', '.join(agent_names())}") from None


def make_config(name: str, **kwargs: Any) -> Any:
    """The validated config of agent ``name`` from keyword arguments."""
    spec = agent_spec(name)
    allowed = [f.name for f in dataclasses.fields(spec.config)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"agent {name!r} has no argument(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) if allowed else '(none)'}"
        )
    return spec.config(**kwargs)


def make_agent(name: str, env: Any = None, *, label_set: Any = None, **kwargs: Any) -> Any:
    """Build agent ``name`` with validated keyword arguments; ``env`` for agents that need it.

    Args:
        name: a registered agent.
        env: the env (needed by agents that read more than the concept space, and by ``label_set``).
        label_set: the label-set setting (:mod:`ie_env.agents.labelset`): ``True``, a dict of
            :class:`~ie_env.concepts.labelset.LabelSetConfig` fields (``class_query_share``,
            ``fraction``, ``category``, ``class_names``) or such a config; None or False: off. Open to
            every agent that sees only the concept space (random and the GP agents).
        **kwargs: the agent's settings (its config's fields).
    """
    spec = agent_spec(name)
    config = make_config(name, **kwargs)
    if spec.needs_env and env is None:
        raise ValueError(f"agent {name!r} needs the env: make_agent({name!r}, env, ...)")
    if label_set not in (None, False):
        if spec.needs_env:
            raise ValueError(
                f"label_set works with agents that see only the concept space "
                f"({', '.join(concept_space_agents())}); {name!r} is not one"
            )
        if env is None:
            raise ValueError(f"label_set needs the env: make_agent({name!r}, env, label_set=...)")
    agent = spec.build(config, env)
    agent.name = name
    if label_set not in (None, False):
        from ie_env.agents.labelset import wrap_in_label_set

        agent = wrap_in_label_set(agent, env, label_set)
    return agent


def report_name(name: str) -> str:
    """The name to show in tables and logs: privileged agents are marked ``(privileged)``."""
    return f"{name} (privileged)" if agent_spec(name).privileged else name


# -- the built-in agents ------------------------------------------------------------------------


def _labels(config: LabelsConfig, env: Any) -> Agent:
    from ie_env.agents.baselines import LabelsAgent, label_positions, target_class_names

    names = config.class_names or target_class_names(env)
    return LabelsAgent(label_positions(ConceptSpace.from_env(env), names), config.label_share)


def _oracle(config: OracleConfig, env: Any) -> Agent:
    from ie_env.agents.oracle import RelevanceOracle, privileged_relevance

    return RelevanceOracle(privileged_relevance(env))


def _gp(cls_name: str, *extra: str, module: str = "gp_agents") -> Callable[[Any, Any], Agent]:
    def build(config: GPAgentConfig, env: Any) -> Agent:
        agents = importlib.import_module(f"ie_env.agents.{module}")
        return getattr(agents, cls_name)(
            **config.gp_kwargs(), **{field: getattr(config, field) for field in extra}
        )

    return build


def _random(config: RandomConfig, env: Any) -> Agent:
    from ie_env.agents.baselines import RandomAgent

    return RandomAgent()


def _ppo(config: Any, env: Any) -> Any:
    from ie_env.agents.ppo import PPOAgent

    return PPOAgent(env, config)


# The default of ie-explore and the learning benchmark: the exploring agent with the highest mean oracle
# gap closed on the frozen env (10 x 16 queries x 5 results) on 96 seeds no setting was chosen on
# (48-79, 112-175): search_zucb, relevant fraction on fmnist 0.480 against caption_zucb's 0.403, on
# shop-3 0.290 against 0.263, on ocp-10 (seeds 112-127) both at random's level. Before it, caption_zucb.
BEST_AGENT = "search_zucb"

register(AgentSpec("random", RandomConfig, _random, "uniform i.i.d. concepts"))
register(AgentSpec("labels", LabelsConfig, _labels, "the target's class names only", needs_env=True))
register(AgentSpec("labels_half", LabelsHalfConfig, _labels, "half class names, half random", needs_env=True))
register(
    AgentSpec("oracle", OracleConfig, _oracle, "PRIVILEGED greedy on true relevance", True, needs_env=True)
)
register(AgentSpec("softmax_gp", SoftmaxGPConfig, _gp("SoftmaxGPAgent", "smr", "tiers"), "the paper's agent"))
register(AgentSpec("ucb", UCBConfig, _gp("UCBAgent", "beta"), "GP-UCB"))
register(AgentSpec("thompson", ThompsonConfig, _gp("ThompsonAgent"), "Thompson sampling over the GP"))
register(
    AgentSpec("epsilon_greedy", EpsilonGreedyConfig, _gp("EpsilonGreedyAgent", "epsilon"), "ε-greedy on μ")
)
register(AgentSpec("zucb", ZUCBConfig, _gp("UCBAgent", "beta"), "standardised GP-UCB (beyond the paper)"))
register(
    AgentSpec(
        "caption_zucb", CaptionZUCBConfig, _gp("UCBAgent", "beta"), "zucb that also learns from captions"
    )
)
register(
    AgentSpec(
        "search_zucb",
        SearchZUCBConfig,
        _gp("SearchThenClimbAgent", *SEARCH_FIELDS, module="search"),
        "uniform search until an image stands out, then caption_zucb",
    )
)
register(AgentSpec("ppo", PPOConfig, _ppo, "stable-baselines3 PPO (wrapped actions)", needs_env=True))
