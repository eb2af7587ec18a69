"""``ie-explore``: one agent on one Internet Explorer env, with live progress, TensorBoard and a report.

    ie-explore                                    # the best agent, full env, offline web, ocp-10
    ie-explore --env frozen --agent ucb --seed 1 --iterations 10
    ie-explore --config experiments/configs/explore_cpu.toml --agent-args smr=4
    ie-explore --resume runs/ocp-10-full__softmax_gp__0__20250101-120000

A run lives in ``<runs_root>/<target>-<env>__<agent>__<seed>__<time>/``: ``config.toml`` (the resolved
settings), ``checkpoints/latest.pt`` (after every iteration), ``store/`` (the full env's images),
``metrics.jsonl``, TensorBoard events (``tensorboard --logdir runs``) and, at the end, ``report.md``.
A folder that already holds files is refused unless ``--resume`` names it; a resumed run continues
from its last checkpoint and, on the frozen env, gives exactly the rows an uninterrupted run gives.
Ctrl-C finishes the current step, checkpoints and exits (status 130); ``--resume`` continues it.

The default schedule (5 iterations of 16 queries, 80 SSL steps each) takes a few minutes on 2 CPU
cores once the one-time builds (vocabulary embeddings, offline web, warm-up) are cached.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ie_env.experiments import checkpoint
from ie_env.experiments.config import ENV_IDS, ExploreConfig, parse_args
from ie_env.experiments.tracking import METRICS, Tracker, truncate_metrics


def run_dir_for(cfg: ExploreConfig) -> Path:
    """The run's folder: ``run_dir``, or a new ``<runs_root>/<target>-<env>__<agent>__<seed>__<time>``."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    target = cfg.target.replace("/", "_").replace(",", "+")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_root) / f"{target}-{cfg.env}__{cfg.agent}__{cfg.seed}__{stamp}"


def prepare_run_dir(cfg: ExploreConfig) -> Path:
    """Create (or, with ``resume``, check) the run folder; a used folder without resume is refused."""
    run_dir = run_dir_for(cfg)
    if cfg.resume:
        if not (run_dir / "config.toml").is_file():
            raise ValueError(f"--resume {str(run_dir)!r}: not an ie-explore run folder")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"run dir {str(run_dir)!r} is not empty; pass a new --run-dir or --resume it")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(cfg.to_toml())
    return run_dir


def make_env(cfg: ExploreConfig, run_dir: Path, resume: bool = False) -> Any:
    """The configured env (``gym.make``), its images under ``run_dir/store``."""
    import gymnasium as gym

    import ie_env  # noqa: F401  (registers the env ids)

    return gym.make(ENV_IDS[cfg.env], config=cfg.env_config(run_dir / "store", resume=resume))


def make_run_agent(cfg: ExploreConfig, env: Any) -> Any:
    """The configured agent; the privileged oracle on the full env reads a frozen twin's tables."""
    from ie_env.agents import make_agent

    kwargs = cfg.agent_kwargs()
    if cfg.agent == "oracle" and cfg.env == "full":
        from ie_env.agents.oracle import RelevanceOracle, privileged_relevance

        twin = make_env(dataclasses.replace(cfg, env="frozen", progress=False), Path("."))
        try:
            agent = RelevanceOracle(privileged_relevance(twin))
        finally:
            twin.close()
        agent.name = "oracle"
        return agent
    return make_agent(cfg.agent, env, label_set=cfg.label_set_setting, **kwargs)


class _Interrupt:
    """Turns the first Ctrl-C into a flag the loop checks after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.getsignal(signal.SIGINT)

    def __enter__(self) -> _Interrupt:
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\nie-explore: stopping after this step (Ctrl-C again to abort) ...", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _progress(cfg: ExploreConfig, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=cfg.budget, initial=initial, desc="ie-explore", unit="query", disable=not cfg.progress)


class Explorer:
    """One run: env, agent, tracker, checkpoints (see the module docstring)."""

    def __init__(self, cfg: ExploreConfig, env: Any = None, initial: dict[str, Any] | None = None) -> None:
        """Prepare the run folder, the env and the agent.

        Args:
            cfg: the run's settings.
            env: a frozen env built for the same settings (``ie-compare`` shares one across its
                cases); it is reset, reused and left open.
            initial: that env's known starting evaluation.
        """
        self.cfg = cfg
        self._own_env = env is None
        self._known_initial = initial
        self.run_dir = prepare_run_dir(cfg)
        state = checkpoint.load(self.run_dir) if cfg.resume else None
        if cfg.resume and state is None:
            raise ValueError(f"--resume {str(self.run_dir)!r}: no checkpoint yet; start the run again")
        if state is not None and state.get("complete"):
            raise ValueError(f"run {str(self.run_dir)!r} is complete; nothing to resume")
        store_root = self.run_dir / "store" / "episode-000"
        if state is not None:
            checkpoint.roll_back_store(store_root, state["store"])
            truncate_metrics(self.run_dir / METRICS, state["step"])
        if env is not None and (cfg.env != "frozen" or state is not None):
            raise ValueError("only a new frozen-env run can reuse an env")
        self.env = env if env is not None else make_env(cfg, self.run_dir, resume=state is not None)
        try:
            self.agent = make_run_agent(cfg, self.env)
        except BaseException:
            if self._own_env:
                self.env.close()
            raise
        self.store_root = store_root if cfg.env == "full" else None
        self.state = state
        self.step = 0
        self.pending: list[int] = []
        self.kept = 0

    def _start(self) -> Tracker:
        from ie_env.agents import ConceptSpace

        cfg = self.cfg
        self.agent.reset(ConceptSpace.from_env(self.env), np.random.default_rng(cfg.agent_rng_seed))
        self.env.reset(seed=cfg.seed)
        state = self.state
        if state is None:
            tracker = Tracker(self.run_dir, self.store_root, image_grid=cfg.image_grid)
            self.initial = self._known_initial or self.env.unwrapped.evaluate()
            tracker.start(self.initial)
            return tracker
        checkpoint.load_env_state(self.env, state["env"])
        self.agent.load_state_dict(state["agent"])
        self.pending = list(state["pending"])
        self.step = int(state["step"])
        self.kept = int(state["kept"])
        self.initial = state["initial"]
        tracker = Tracker(self.run_dir, self.store_root, purge_step=self.step + 1, image_grid=cfg.image_grid)
        tracker.concept_rewards.update({k: list(v) for k, v in state["concept_rewards"].items()})
        tracker.iteration_rewards = list(state["iteration_rewards"])
        return tracker

    def save(self, tracker: Tracker, complete: bool = False) -> None:
        """Checkpoint the run as it stands after ``self.step`` steps."""
        checkpoint.save(
            self.run_dir,
            {
                "step": self.step,
                "kept": self.kept,
                "complete": complete,
                "initial": self.initial,
                "pending": list(self.pending),
                "env": checkpoint.env_state(self.env),
                "agent": self.agent.state_dict(),
                "store": checkpoint.store_extent(self.run_dir / "store" / "episode-000"),
                "concept_rewards": dict(tracker.concept_rewards),
                "iteration_rewards": list(tracker.iteration_rewards),
            },
        )

    def run(self) -> int:
        """Run to the end of the budget (or a Ctrl-C); returns the exit code."""
        cfg = self.cfg
        tracker = self._start()
        bar = _progress(cfg, self.step)
        per_step = bool(getattr(self.agent, "per_step", False))
        try:
            with _Interrupt() as interrupt:
                done = self.step >= cfg.budget
                while not done:
                    if not self.pending:
                        self.pending = list(self.agent.propose(1 if per_step else cfg.queries_per_iteration))
                    action = int(self.pending.pop(0))
                    _, reward, terminated, truncated, info = self.env.step(action)
                    self.step += 1
                    self.kept += int(info.get("images_kept", 0))
                    self.agent.update(action, float(reward), info)
                    tracker.step(self.step, action, reward, info)
                    done = terminated or truncated
                    if "iteration_end" in info:
                        self.agent.end_iteration()
                        self.pending = []
                        tracker.iteration(self.step, info["iteration_end"], self.agent)
                        self._show(bar, info["iteration_end"], tracker)
                        self.save(tracker)
                    bar.update(1)
                    if interrupt.requested and not done:
                        self.save(tracker)
                        print(f"ie-explore: checkpointed at step {self.step}; continue with "
                              f"ie-explore --resume {self.run_dir}", file=sys.stderr)  # fmt: skip
                        return 130
            self.finish(tracker)
        finally:
            bar.close()
            tracker.close()
            if self._own_env:
                self.env.close()
        return 0

    def _show(self, bar: Any, summary: dict[str, Any], tracker: Tracker) -> None:
        knn = (summary.get("eval") or {}).get("knn_accuracy")
        top = ", ".join(c["query"] for c in tracker.top_concepts(3))
        bar.set_postfix_str(
            f"it {summary['iteration']}, kept {self.kept}, reward {summary['mean_reward']:.3f}, "
            f"k-NN {'-' if knn is None else f'{knn:.3f}'}, top: {top}"
        )

    def finish(self, tracker: Tracker) -> None:
        """Final evaluation, hparams, ``report.md`` and a checkpoint marked complete."""
        from ie_env.experiments.report import write_report

        # The frozen env's encoder is fixed: its final evaluation is its starting one.
        final = self.initial if self.cfg.env == "frozen" else self.env.unwrapped.evaluate()
        hparams = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in ("resume", "run_dir")}
        tracker.final(self.step, final, hparams)
        tracker.log.flush()
        self.save(tracker, complete=True)
        report = write_report(self.run_dir)
        print(f"ie-explore: k-NN accuracy {self.initial['knn_accuracy']:.3f} -> {final['knn_accuracy']:.3f}")
        print(f"ie-explore: report {report}; TensorBoard: tensorboard --logdir {self.run_dir.parent}")


def run(cfg: ExploreConfig, env: Any = None, initial: dict[str, Any] | None = None) -> Path:
    """Run ``cfg`` to completion; returns the run folder (raises on errors; see :func:`main`).

    ``env`` and ``initial``: see :class:`Explorer`.
    """
    explorer = Explorer(cfg, env, initial)
    code = explorer.run()
    if code:
        raise KeyboardInterrupt
    return explorer.run_dir


def main(argv: list[str] | None = None) -> int:
    """``ie-explore``; returns the exit code (2 with a one-line message for bad input, 130 on Ctrl-C)."""
    from ie_env.errors import SetupError

    try:
        try:
            cfg = parse_args(sys.argv[1:] if argv is None else argv)
        except SystemExit as exc:  # tyro has printed the bad flag or value and the allowed ones
            return int(exc.code or 0)
        from ie_env import runtime

        threads = runtime.use_threads(cfg.threads)  # this process runs alone: it owns the thread count
        print(f"ie-explore: {threads} torch thread(s), {runtime.precision_tag(runtime.default_device())} "
              "compute; building the env (target, web index, encoder warm-up: cached after the first run) ...",
              flush=True)  # fmt: skip
        explorer = Explorer(cfg)
        print(f"ie-explore: {cfg.agent} on {cfg.env} env, target {cfg.target}, {cfg.budget} queries, "
              f"run dir {explorer.run_dir}", flush=True)  # fmt: skip
        return explorer.run()
    except (SetupError, ValueError) as exc:  # bad target, vocabulary or config: say which
        print(f"ie-explore: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ie-explore: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
