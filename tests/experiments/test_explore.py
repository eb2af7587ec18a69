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
        assert 0.0 < row["knn_accuracy"] <= 1.0 and row["loss"] is not None
        if row["images_kept"]:  # the offline web knows every image's category
            assert row["relevant_fraction"] is not None and 0.0 <= row["relevant_fraction"] <= 1.0
        else:
            assert row["relevant_fraction"] is None
    # Every image the log counts as kept is in the run's SQLite store, and nothing else is.
    from ie_env.download.store import ImageStore

    store = ImageStore(run_dir / "store" / "episode-000")
    assert store.count() == sum(row["images_kept"] for row in rows) > 0
    store.close()
    captured = capsys.readouterr()
    assert "k-NN accuracy before exploring" in captured.out and "mean reward" in captured.out
    assert "warming up the convnet encoder" in captured.err  # long steps say what they do


def test_explore_refuses_a_used_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "iterations.jsonl").write_text("{}\n")
    assert main(["--target", "gen-4", "--vocabulary", WORDS, "--run-dir", str(run_dir)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (run_dir / "iterations.jsonl").read_text() == "{}\n"  # nothing lost


def test_explore_bad_target_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "home"))
    assert (
        main(["--target", "no-such-target", "--vocabulary", WORDS, "--run-dir", str(tmp_path / "run")]) == 2
    )
    err = capsys.readouterr().err
    assert "ocp-10" in err and "Traceback" not in err
