"""``ie-explore``'s configuration: one validated dataclass, loadable from TOML, overridable by flags.

A run's settings come, in this order, from the defaults below, a TOML file (``--config FILE``, keys are
the field names, an optional ``[agent_args]`` table holds the agent's settings) and command-line flags
(``--queries-per-iteration 8``, ``--no-progress``, ``--web-url None``, ``--agent-args smr=4 tiers=false``).
A bad key or value stops before any work, naming it and the allowed values; the resolved configuration
is saved as ``config.toml`` beside the run and is what ``--resume`` reads back.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ie_env.validate import check_bool, check_choice, check_int, check_number, check_text, fail

VARIANTS = ("full", "frozen")
ENV_IDS = {"full": "ie_env/InternetExplorer-v0", "frozen": "ie_env/InternetExplorerFrozen-v0"}
FALLBACK_AGENT = "softmax_gp"
SELF_DRIVEN = ("ppo",)  # registered agents that are not propose/update policies


def default_agent() -> str:
    """The registry's best agent (``BEST_AGENT``/``DEFAULT_AGENT`` if it names one), else ``softmax_gp``."""
    from ie_env.agents import registry

    for attribute in ("BEST_AGENT", "DEFAULT_AGENT"):
        name = getattr(registry, attribute, None)
        if isinstance(name, str) and name in registry.agent_names():
            return name
    return FALLBACK_AGENT


@dataclass(frozen=True)
class ExploreConfig:
    """One agent on one env.

    Attributes:
        env: ``full`` (real search, downloads and training on the offline web) or ``frozen``
            (fixed encoder, table lookups; milliseconds per step).
        target: target preset (``ocp-10``, ``ocp-30``, ``fmnist``, ``gen-4``), a folder of images, or
            comma-separated web categories.
        vocabulary: ``full``, ``small``, ``words:a,b,c`` or a word-list file.
        agent: registered agent name (default: the registry's best agent).
        agent_args: the agent's settings as ``KEY=VALUE`` (values parsed as TOML: ``0.5``, ``true``,
            ``"text"``).
        seed: env seed (its reset, the learner's sampling).
        agent_seed: the agent's own seed (None: ``seed``).
        iterations: iterations to run (the query budget is ``iterations * queries_per_iteration``).
        queries_per_iteration: queries between two training phases.
        results_per_query: images requested per query.
        train_steps: SSL optimiser steps per iteration.
        warmup_steps: SSL steps on the target alone before the first query (cached).
        encoder: learner backbone.
        image_size: training and scoring resolution.
        reward: the image reward variant (``knn``, the paper's; ``knn_centered``, ...; see the README).
        frozen_encoder: the frozen env's fixed encoder: ``warmup`` (the full env's warm-up convnet),
            ``pretrained`` (ImageNet EfficientNet-Lite0), ``finetuned`` or a learner checkpoint path.
        eval_every: k-NN evaluation every this many iterations (0: only at the start and the end).
        threads: torch CPU threads of this process (None: ``$IE_ENV_THREADS``, else every core).
        web_url: an already running ``ie-web serve`` (None: the env starts one).
        descriptors: query descriptors: ``none``, ``wordnet`` or ``llm`` (``$IE_ENV_LLM_URL``, ...).
        label_set: the label-set setting: the target's class names are known, the agent searches the
            10 % of the vocabulary nearest them and spends ``class_query_share`` of its queries on
            the class names (random and the GP agents).
        class_query_share: share of queries spent on class names with ``label_set`` (paper: 0.5).
        target_only: the no-download baseline (full env): the same schedule, training on the target
            alone (the agent's queries are not sent).
        executor: the full env's download back end, ``local`` or ``ray``.
        ray_address: an existing Ray cluster (None: a local one) for ``executor="ray"``.
        runs_root: parent of new run folders.
        run_dir: this run's folder (None: ``<runs_root>/<env>__<agent>__<seed>__<time>``).
        resume: the folder of a run to continue from its last checkpoint (its saved config is used).
        image_grid: top and bottom images logged per iteration to TensorBoard (full env; 0: none).
        progress: live progress bar and build messages on stderr.
    """

    env: str = "full"
    target: str = "ocp-10"
    vocabulary: str = "full"
    agent: str = ""
    agent_args: tuple[str, ...] = ()
    seed: int = 0
    agent_seed: int | None = None
    iterations: int = 5
    queries_per_iteration: int = 16
    results_per_query: int = 20
    train_steps: int = 80
    warmup_steps: int = 300
    encoder: str = "convnet"
    image_size: int = 32
    reward: str = "knn"
    frozen_encoder: str = "warmup"
    eval_every: int = 1
    threads: int | None = None
    web_url: str | None = None
    descriptors: str = "none"
    label_set: bool = False
    class_query_share: float = 0.5
    target_only: bool = False
    executor: str = "local"
    ray_address: str | None = None
    runs_root: str = "runs"
    run_dir: str | None = None
    resume: str | None = None
    image_grid: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice(self, "env", VARIANTS)
        if not self.agent:
            object.__setattr__(self, "agent", default_agent())
        object.__setattr__(self, "agent_args", tuple(self.agent_args))
        for name in ("iterations", "queries_per_iteration", "train_steps", "image_size"):
            check_int(self, name, 1 if name != "train_steps" else 0)
        check_int(self, "threads", 1, optional=True)
        check_choice(self, "descriptors", ("none", "wordnet", "llm"))
        check_choice(self, "executor", ("local", "ray"))
        for name in ("seed", "warmup_steps", "eval_every", "image_grid"):
            check_int(self, name, 0)
        check_int(self, "agent_seed", 0, optional=True)
        check_bool(self, "progress")
        check_bool(self, "label_set")
        check_bool(self, "target_only")
        if self.target_only and self.env != "full":
            fail(self, "target_only", "come with env='full' (the frozen env's encoder never trains)", True)
        check_number(self, "class_query_share", 0.0, 1.0)
        for name in ("target", "vocabulary", "runs_root"):
            check_text(self, name)
        self.agent_kwargs()  # a bad agent name or setting stops here, naming the allowed ones
        if self.agent in SELF_DRIVEN:
            fail(self, "agent", f"be an ie_env.agents.Agent policy ({self.agent} drives the env itself through "
                 "stable-baselines3: see ie_env.agents.ppo)")  # fmt: skip
        if self.label_set:
            from ie_env.agents.registry import concept_space_agents

            if self.agent not in concept_space_agents():
                fail(
                    self,
                    "agent",
                    f"see only the concept space with label_set ({', '.join(concept_space_agents())})",
                )

    @property
    def label_set_setting(self) -> dict[str, Any] | None:
        """The agent's ``label_set`` argument (None: off)."""
        return {"class_query_share": self.class_query_share} if self.label_set else None

    @property
    def budget(self) -> int:
        """Queries in the episode."""
        return self.iterations * self.queries_per_iteration

    @property
    def agent_rng_seed(self) -> int:
        """The agent's seed."""
        return self.seed if self.agent_seed is None else self.agent_seed

    def agent_kwargs(self) -> dict[str, Any]:
        """The agent's settings as keyword arguments, validated by the registry."""
        from ie_env.agents import make_config

        kwargs: dict[str, Any] = {}
        for item in self.agent_args:
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                fail(self, "agent_args", "hold KEY=VALUE items", item)
            kwargs[key.strip()] = parse_value(text)
        make_config(self.agent, **kwargs)
        return kwargs

    def env_config(self, store_dir: Path | None, resume: bool = False) -> Any:
        """The :class:`~ie_env.config.EnvConfig` of this run (validated)."""
        from ie_env.config import EnvConfig

        return EnvConfig(
            target=self.target,
            vocabulary=self.vocabulary,
            frozen=self.env == "frozen",
            web_url=self.web_url,
            budget=self.budget,
            queries_per_iteration=self.queries_per_iteration,
            results_per_query=self.results_per_query,
            encoder=self.encoder,
            image_size=self.image_size,
            reward=self.reward,
            frozen_encoder=self.frozen_encoder,
            train_steps_per_iteration=self.train_steps,
            eval_every=self.eval_every,
            threads=None,  # the entry point already applied the thread policy to the process
            descriptors=self.descriptors,
            executor=self.executor,
            ray_address=self.ray_address,
            run_dir=None if store_dir is None or self.env == "frozen" else str(store_dir),
            resume=resume and self.env == "full",
            progress=self.progress,
            target_only=self.target_only,
            learn_overrides={"warmup_steps": self.warmup_steps},
        )

    def to_toml(self) -> str:
        """The configuration as TOML (``agent_args`` as a table; ``None`` values left out)."""
        lines = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("agent_args", "resume") or value is None:
                continue
            lines.append(f"{spec.name} = {toml_value(value)}")
        lines.append("\n[agent_args]")
        lines += [f"{key} = {toml_value(value)}" for key, value in self.agent_kwargs().items()]
        return "\n".join(lines) + "\n"


def parse_value(text: str) -> Any:
    """A ``KEY=VALUE`` setting's value read as TOML (``0.5``, ``true``, ``"text"``); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (booleans, numbers, strings, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def from_mapping(
    data: dict[str, Any], base: ExploreConfig | None = None, source: str = "config"
) -> ExploreConfig:
    """An :class:`ExploreConfig` from a TOML-like mapping (unknown keys named with the allowed ones)."""
    data = dict(data)
    table = data.pop("agent_args", None)
    if isinstance(table, dict):
        data["agent_args"] = tuple(f"{key}={toml_value(value)}" for key, value in table.items())
    elif table is not None:
        data["agent_args"] = tuple(table)
    allowed = [spec.name for spec in dataclasses.fields(ExploreConfig)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    base = base or ExploreConfig()
    return dataclasses.replace(base, **data)


def load_toml(path: str | Path, base: ExploreConfig | None = None) -> ExploreConfig:
    """Read a TOML file of :class:`ExploreConfig` keys (an ``[explore]`` table, or top-level keys)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config {str(path)!r}: {exc}") from None
    return from_mapping(data.get("explore", data), base, source=str(path))


def parse_args(argv: list[str] | None = None) -> ExploreConfig:
    """Parse ``ie-explore``'s command line: ``--config FILE`` first (if any), then flags over it."""
    import tyro

    argv = list(argv or [])
    base = ExploreConfig()
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise ValueError("--config needs a TOML file")
        base = load_toml(argv[at + 1], base)
        del argv[at : at + 2]
    if "--resume" in argv:  # a resumed run takes its saved config; only --resume and --progress apply
        at = argv.index("--resume")
        if at + 1 >= len(argv):
            raise ValueError("--resume needs a run folder")
        run_dir = Path(argv[at + 1])
        saved = run_dir / "config.toml"
        if not saved.is_file():
            raise ValueError(f"--resume {str(run_dir)!r}: no config.toml there (not an ie-explore run)")
        base = dataclasses.replace(load_toml(saved), run_dir=str(run_dir), resume=str(run_dir))
        rest = argv[:at] + argv[at + 2 :]
        if any(arg not in ("--progress", "--no-progress") for arg in rest):
            raise ValueError("--resume continues a run with its saved config; other flags are refused")
        return dataclasses.replace(base, progress="--no-progress" not in rest)
    return tyro.cli(
        ExploreConfig, default=base, args=argv, prog="ie-explore", description=__doc__.split("\n\n")[0]
    )
