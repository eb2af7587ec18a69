"""``ie-compare``: a sweep file, bad sweeps refused up front, and a tiny comparison in subprocesses."""

from __future__ import annotations

import csv

import pytest
from ie_env.experiments.compare import load_sweep, main, parse_args
from ie_env.experiments.stats import bootstrap_ci
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.experiments.conftest import run_cli

SWEEP = "experiments/configs/gen4_tiny.toml"


def test_sweep_is_data_and_flags_override_it():
    sweep = load_sweep(parse_args(["--config", SWEEP, "--seeds", "4,5", "--set", "iterations=2"]))
    cases = sweep.cases()
    assert [(c.agent, c.seed, c.iterations) for c in cases] == [
        ("random", 4, 2), ("random", 5, 2), ("softmax_gp", 4, 2), ("softmax_gp", 5, 2)
    ]  # fmt: skip
    assert len({c.run_dir for c in cases}) == 4 and all(c.env == "frozen" for c in cases)


def test_each_frozen_world_is_made_once_per_worker_and_prepared_once(monkeypatch, tmp_path):
    import ie_env.experiments.compare as compare
    import ie_env.experiments.explore as explore
    import torch

    made = []

    class Env:
        unwrapped = type("Unwrapped", (), {"evaluate": lambda self: {"knn_accuracy": 0.0}})()

    monkeypatch.setattr(explore, "make_env", lambda cfg, run_dir: made.append(cfg.target) or Env())
    monkeypatch.setattr(compare, "_FROZEN_ENVS", {})
    argv = ["--config", SWEEP, "--out", str(tmp_path / "cmp")]
    cases = load_sweep(parse_args([*argv, "--seeds", "0,1,2"])).cases()  # 2 agents x 3 seeds, one world
    worlds = compare._distinct_frozen_worlds(cases)
    assert worlds == [cases[0]]
    threads = torch.get_num_threads()
    try:
        compare._prepare_frozen_world(worlds[0])
    finally:
        torch.set_num_threads(threads)
    assert [compare._frozen_env(cfg)[1] for cfg in cases] == [{"knn_accuracy": 0.0}] * len(cases)
    assert made == [cases[0].target]  # the prepared env serves every case of that worker
    assert not any((tmp_path / "cmp").glob("*/*"))  # the case folders stay empty for their runs
    full = load_sweep(parse_args([*argv, "--set", "env='full'"])).cases()
    assert compare._distinct_frozen_worlds(full) == []  # full-env cases build their own world


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--agents", "random,nope"], "registered agents"),
        (["--set", "iteratons=2"], "queries_per_iteration"),
        (["--set", "env='half'"], "frozen"),
    ],
)
def test_bad_sweeps_stop_before_any_work(tmp_path, capsys, argv, named):
    out = tmp_path / "cmp"
    assert main(["--config", SWEEP, "--out", str(out), *argv]) == 2
    assert named in capsys.readouterr().err and not out.exists()


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [1.0, 2.0, 4.0, 8.0]
    mean, low, high = bootstrap_ci(values)
    assert mean == pytest.approx(3.75) and low < mean < high
    assert bootstrap_ci(values) == (mean, low, high)
    assert bootstrap_ci([5.0]) == (5.0, 5.0, 5.0)


@pytest.mark.slow
def test_tiny_comparison_writes_csv_report_plots_and_per_case_events(home, tmp_path):
    out = tmp_path / "cmp"
    done = run_cli("compare", "--config", SWEEP, "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["agent"], r["seed"]) for r in rows) == [
        ("random", "0"), ("random", "1"), ("softmax_gp", "0"), ("softmax_gp", "1")
    ]  # fmt: skip
    assert all(0 <= float(r["relevant_fraction"]) <= 1 and int(r["images_downloaded"]) > 0 for r in rows)
    report = (out / "report.md").read_text()
    assert "learning_curves.png" in report and "relevant_mass.png" in report and "| softmax_gp |" in report
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "relevant_mass.png").stat().st_size > 0
    tags = set()
    for case in out.glob("gen-4-frozen__*"):
        events = EventAccumulator(str(case))
        events.Reload()
        tags.add(frozenset(events.Tags()["scalars"]))
    assert len(tags) == 1  # the same scalar tags for every agent
