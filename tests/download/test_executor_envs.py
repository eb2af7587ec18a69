"""The parallel-environment recipes of docs/scaling.md, run exactly as written there.

Each ``# recipe: <name>`` code block of the document is executed with a small frozen-env
configuration as ``ENV_KWARGS``; the test then checks what the block left behind. They start
subprocesses or Ray actors that each build an env, so they are ``slow``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from env_support import env_home

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
ENV_KWARGS = {
    "target": "gen-4",
    "vocabulary": "words:circle,square,triangle,star,cross,ring,stripe,dot,red,green,blue,apple",
    "n_clusters": 3,
    "budget": 4,
    "queries_per_iteration": 2,
    "results_per_query": 8,
    "train_steps_per_iteration": 2,
    "learn_overrides": {"warmup_steps": 4, "batch_size": 16},
}


def recipe(name: str) -> str:
    """The code block of docs/scaling.md whose first line is ``# recipe: <name>``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(f"# recipe: {name}\n")]
    assert len(found) == 1, f"docs/scaling.md has {len(found)} blocks named {name!r}"
    return found[0]


def run(name: str) -> dict:
    scope = {"ENV_KWARGS": ENV_KWARGS}
    exec(compile(recipe(name), f"scaling.md:{name}", "exec"), scope)  # noqa: S102 - our own document
    return scope


@pytest.fixture(scope="module", autouse=True)
def env_cache(tmp_path_factory):
    """One cache dir for the module, inherited by subprocesses and Ray workers."""
    with env_home(tmp_path_factory.mktemp("ie_env_home")):
        yield


def test_every_recipe_is_found():
    for name in ("gymnasium-vector", "sb3-subproc", "ray-actors"):
        assert "ENV_KWARGS" in recipe(name)


@pytest.mark.slow
def test_gymnasium_vector_recipe():
    scope = run("gymnasium-vector")
    assert scope["rewards"].shape == (2,) and np.isfinite(scope["rewards"]).all()
    assert scope["obs"].shape[0] == 2


@pytest.mark.slow
def test_sb3_subproc_recipe():
    scope = run("sb3-subproc")
    assert scope["rewards"].shape == (2,) and np.isfinite(scope["rewards"]).all()
    assert len(scope["infos"]) == 2


@pytest.mark.slow
def test_ray_actors_recipe():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ie_env[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rollouts = run("ray-actors")["rollouts"]
    finally:
        ray.shutdown()
    assert [r["seed"] for r in rollouts] == [0, 1, 2, 3]
    assert all(r["steps"] == ENV_KWARGS["budget"] and np.isfinite(r["return"]) for r in rollouts)
