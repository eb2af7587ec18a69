"""Resume: a run SIGKILLed mid-iteration continues from its last checkpoint with nothing lost or doubled."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.experiments.conftest import TINY, command, run_cli

VOLATILE = ("seconds",)


def rows(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key in VOLATILE:
            row.pop(key, None)
        for key in ("eval", "train"):
            if isinstance(row.get(key), dict):
                row[key] = {k: v for k, v in row[key].items() if k not in ("seconds", "images_per_s")}
        out.append(row)
    return out


def kill_mid_run(args, run_dir, after_rows, timeout=300.0, signum=signal.SIGKILL, code=-signal.SIGKILL):
    """Start ie-explore, signal it once metrics.jsonl holds ``after_rows`` rows; return the rows seen."""
    process = subprocess.Popen(command("explore", *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.jsonl"
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= after_rows:
                process.send_signal(signum)
                break
            time.sleep(0.005)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, process.stderr.read().decode()[-2000:]
    return len(metrics.read_text().splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["softmax_gp", "random", "search_zucb"])
def test_frozen_resume_after_sigkill_equals_an_uninterrupted_run(home, tmp_path, agent):
    args = [*TINY, "--env", "frozen", "--agent", agent, "--iterations", "150", "--seed", "3"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli("explore", *args, "--run-dir", str(whole))
    assert done.returncode == 0, done.stderr
    seen = kill_mid_run([*args, "--run-dir", str(broken)], broken, after_rows=40)
    assert not (broken / "report.md").exists() and seen < len(rows(whole))
    done = run_cli("explore", "--resume", str(broken), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert rows(broken) == rows(whole)
    events = EventAccumulator(str(broken), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("step/reward")]
    assert steps == list(range(1, 451))  # purged and rewritten: no step twice, none missing
    again = run_cli("explore", "--resume", str(broken), "--no-progress")
    assert again.returncode == 2 and "complete" in again.stderr


@pytest.mark.slow
def test_full_resume_after_sigkill_loses_and_doubles_nothing(home, tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "--agent", "random", "--iterations", "4", "--run-dir", str(run_dir)]
    kill_mid_run(args, run_dir, after_rows=1 + 3 + 1 + 2)  # start, iteration 1, 2 steps into iteration 2
    done = run_cli("explore", "--resume", str(run_dir), "--no-progress")
    assert done.returncode == 0, done.stderr
    table = rows(run_dir)
    steps = [r for r in table if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert [r["iteration"] for r in table if r["kind"] == "iteration"] == [1, 2, 3, 4]
    from ie_env.download.store import ImageStore

    with ImageStore(run_dir / "store" / "episode-000") as store:
        records = store.records()
        assert len(records) == sum(r["images_kept"] for r in steps) > 0
        assert len({r.sha256 for r in records}) == len(records)


@pytest.mark.slow
def test_ctrl_c_finishes_the_step_checkpoints_and_resumes_exactly(home, tmp_path):
    args = [*TINY, "--env", "frozen", "--agent", "softmax_gp", "--iterations", "150", "--seed", "4"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run_cli("explore", *args, "--run-dir", str(whole)).returncode == 0
    kill_mid_run([*args, "--run-dir", str(stopped)], stopped, 40, signum=signal.SIGINT, code=130)
    import torch

    saved = torch.load(stopped / "checkpoints" / "latest.pt", weights_only=False)
    last = json.loads((stopped / "metrics.jsonl").read_text().splitlines()[-1])
    assert saved["step"] == last["step"] and not saved["complete"]  # checkpointed at the step it stopped
    done = run_cli("explore", "--resume", str(stopped), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert rows(stopped) == rows(whole)
