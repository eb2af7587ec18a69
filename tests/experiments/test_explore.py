"""Smoke test of the main job, ``ie-explore``, with a tiny budget on the generated web."""

from __future__ import annotations

import json

from ie_env.experiments.explore import main

WORDS = "words:circle,square,triangle,star,box,ring,red,blue,dog,car"


def test_explore_runs_every_iteration_and_logs_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "run"
    argv = ["--target", "gen-4", "--vocabulary", WORDS, "--iterations", "3", "--queries-per-iteration", "3"]
    argv += [
        "--results-per-query",
        "8",
        "--train-steps",
        "2",
        "--warmup-steps",
        "5",
        "--run-dir",
        str(run_dir),
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (run_dir / "iterations.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert 0.0 <= row["relevant_fraction"] <= 1.0 and 0.0 <= row["knn_accuracy"] <= 1.0
        assert row["images_kept"] >= 0 and row["loss"] is not None
    assert sum(row["images_kept"] for row in rows) > 0
    out = capsys.readouterr().out
    assert "k-NN accuracy before exploring" in out and "mean reward" in out


def test_explore_bad_target_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "home"))
    assert (
        main(["--target", "no-such-target", "--vocabulary", WORDS, "--run-dir", str(tmp_path / "run")]) == 2
    )
    err = capsys.readouterr().err
    assert "ocp-10" in err and "Traceback" not in err
