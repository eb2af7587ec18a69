"""Fixtures of the experiment tests: one cache dir per module, tiny gen-4 settings, subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WORDS = "words:circle,square,triangle,star,box,ring,red,blue,dog,car"
TINY = [
    "--target", "gen-4", "--vocabulary", WORDS, "--queries-per-iteration", "3", "--results-per-query", "8",
    "--train-steps", "2", "--warmup-steps", "5", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    """An ``IE_ENV_HOME`` shared by the experiment tests (and their subprocesses): one build of gen-4."""
    path = tmp_path_factory.mktemp("ie_env_home")
    old = os.environ.get("IE_ENV_HOME")
    os.environ["IE_ENV_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IE_ENV_HOME", None)
    else:
        os.environ["IE_ENV_HOME"] = old


def command(module: str, *args: str) -> list[str]:
    """The command line of an entry point run as a module of this interpreter."""
    return [sys.executable, "-m", f"ie_env.experiments.{module}", *args]


def run_cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``ie-explore``/``ie-compare`` in a subprocess and return its outcome."""
    return subprocess.run(command(module, *args), capture_output=True, text=True, timeout=timeout)
