"""``ie-explore``: config parsing and refusals in process; full runs, TensorBoard tags in subprocesses."""

from __future__ import annotations

import json

import pytest
from ie_env.experiments.config import ExploreConfig, load_toml, parse_args
from ie_env.experiments.explore import main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.experiments.conftest import TINY, WORDS, run_cli


def test_flags_override_toml_and_parse_booleans_and_optionals(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'env = "frozen"\nagent = "softmax_gp"\niterations = 7\nweb_url = "http://127.0.0.1:1"\n[agent_args]\nsmr = 4.0\n'
    )
    cfg = parse_args(["--config", str(path), "--iterations", "2", "--no-progress", "--web-url", "None"])
    assert (cfg.env, cfg.iterations, cfg.progress, cfg.web_url) == ("frozen", 2, False, None)
    assert cfg.agent_kwargs() == {"smr": 4.0}
    smr = parse_args(["--agent", "softmax_gp", "--agent-args", "tiers=false", "smr=2"])
    assert smr.agent_kwargs() == {"tiers": False, "smr": 2}
    assert load_toml(path).to_toml() == ExploreConfig(**{**cfg.__dict__, "iterations": 7, "progress": True,
                                                         "web_url": "http://127.0.0.1:1"}).to_toml()  # fmt: skip


def test_label_set_flags_reach_the_agent(home, tmp_path):
    cfg = parse_args(["--label-set", "--class-query-share", "0.25"])
    assert cfg.label_set_setting == {"class_query_share": 0.25}
    assert parse_args([]).label_set_setting is None
    assert "label_set = true" in cfg.to_toml()
    run_dir = tmp_path / "run"
    argv = [*TINY, "--env", "frozen", "--iterations", "2", "--agent", "random", "--label-set"]
    assert main([*argv, "--run-dir", str(run_dir)]) == 0
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    queries = {row["query"] for row in steps if row["kind"] == "step"}
    classes = {"circle", "square", "triangle", "star"}  # gen-4's class names
    assert queries & classes and len(queries - classes) <= 1  # the top 10 % of 10 words: one concept


def test_the_frozen_encoder_reaches_the_env_and_every_shipped_sweep_parses():
    from pathlib import Path

    from ie_env.experiments.compare import load_sweep
    from ie_env.experiments.compare import parse_args as compare_args

    cfg = parse_args(["--env", "frozen", "--frozen-encoder", "pretrained", "--image-size", "64"])
    env = cfg.env_config(None)
    assert (env.frozen_encoder, env.image_size) == ("pretrained", 64)
    assert parse_args([]).env_config(None).frozen_encoder == "warmup"
    for path in sorted(Path("experiments/configs").glob("*.toml")):
        if "[compare]" in path.read_text():
            load_sweep(compare_args(["--config", str(path)]))
        else:
            load_toml(path)
    sweep = load_sweep(compare_args(["--config", "experiments/configs/frozen_pretrained_5x3.toml"]))
    world = sweep.base.env_config(None)
    assert (world.frozen, world.frozen_encoder, world.image_size, world.reward) == (
        True, "pretrained", 64, "knn_centered"
    )  # fmt: skip


def test_default_agent_is_a_registered_one():
    from ie_env.agents import agent_names

    assert ExploreConfig().agent in agent_names()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--agent", "nope"], "softmax_gp"),  # the registered agents are listed
        (["--agent", "softmax_gp", "--agent-args", "smr=-1"], "smr"),
        (["--agent-args", "bogus=1"], "allowed"),
        (["--env", "half"], "frozen"),
        (["--iterations", "0"], "iterations"),
        (["--agent", "ppo"], "stable-baselines3"),
        (["--label-set", "--agent", "labels"], "label_set"),
        (["--label-set", "--class-query-share", "1.5"], "class_query_share"),
        (["--target-only", "--env", "frozen"], "target_only"),
    ],
)
def test_bad_values_stop_before_any_work_naming_them(tmp_path, capsys, argv, named):
    run_dir = tmp_path / "run"
    assert main([*argv, "--run-dir", str(run_dir)]) == 2
    assert named in capsys.readouterr().err
    assert not run_dir.exists()


def test_bad_toml_key_names_the_allowed_keys(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("iteratons = 3\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "iteratons" in err and "queries_per_iteration" in err


def test_a_used_run_dir_is_refused_and_left_alone(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("{}\n")
    assert main([*TINY, "--run-dir", str(run_dir)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_text() == "{}\n"


def test_resume_of_a_folder_that_is_no_run_is_refused(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 2
    assert "config.toml" in capsys.readouterr().err


def test_bad_target_is_a_clear_error(home, tmp_path, capsys):
    assert main(["--target", "no-such-target", "--vocabulary", WORDS, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "ocp-10" in err and "Traceback" not in err


def tags(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    return events.Reload()


@pytest.mark.slow
def test_frozen_run_writes_every_file_and_the_same_tags(home, tmp_path):
    run_dir = tmp_path / "run"
    argv = [*TINY, "--env", "frozen", "--agent", "softmax_gp", "--iterations", "2", "--run-dir", str(run_dir)]
    done = run_cli("explore", *argv)
    assert done.returncode == 0, done.stderr
    for name in ("config.toml", "checkpoints/latest.pt", "metrics.jsonl", "report.md", "curves.png"):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["start"] + ["step"] * 3 + ["iteration"] + ["step"] * 3 + [
        "iteration",
        "final",
    ]
    events = tags(run_dir)
    scalars = set(events.Tags()["scalars"])
    assert {"step/reward", "step/relevant_fraction", "download/ok", "iteration/mean_reward",
            "eval/knn_accuracy", "eval/linear_probe_accuracy"} <= scalars  # fmt: skip
    assert [e.step for e in events.Scalars("step/reward")] == list(range(1, 7))
    assert {"iteration/image_rewards", "agent/concept_probabilities"} <= set(events.Tags()["histograms"])
    assert "agent/top_concepts/text_summary" in events.Tags()["tensors"]
    report = (run_dir / "report.md").read_text()
    assert "![" in report and "curves.png" in report and "| 2 | 6 |" in report


@pytest.mark.slow
def test_full_run_logs_training_images_and_matches_its_store(home, tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("explore", *TINY, "--agent", "random", "--iterations", "2", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    iterations = [r for r in rows if r["kind"] == "iteration"]
    assert [r["iteration"] for r in iterations] == [1, 2]
    assert all(r["train"]["loss"] is not None and 0 < r["eval"]["knn_accuracy"] <= 1 for r in iterations)
    from ie_env.download.store import ImageStore

    with ImageStore(run_dir / "store" / "episode-000") as store:
        assert store.count() == sum(r["images_kept"] for r in rows if r["kind"] == "step") > 0
    events = tags(run_dir)
    assert {"train/ssl_loss", "seconds/search", "seconds/download", "eval/knn_accuracy"} <= set(
        events.Tags()["scalars"]
    )
    assert {"images/top_rewards", "images/bottom_rewards"} <= set(events.Tags()["images"])
