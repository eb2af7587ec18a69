"""Checkpoints of a run at a step boundary: env, world (learner, dedup), agent, RNGs, and the store's extent.

A checkpoint is written atomically (``checkpoints/latest.pt``) after every iteration and when the user
interrupts. It holds:

* the env's episode state: query statistics, queried concepts, iteration, per-concept rewards, the
  running iteration totals, ``np_random`` and the descriptor stream;
* the world's: the learner's ``state_dict`` (weights, optimiser, replay buffer, RNGs), its iteration
  and images gathered since the last training phase (full env), or its deduplicator (frozen env);
* the agent's ``state_dict`` (its own generator included) and the actions it proposed but the run has
  not taken yet;
* the image store's extent: the largest image id and ``urls`` row id. On resume, rows written after
  the checkpoint (by a run killed mid-iteration) are deleted before the store is reopened, and the
  store's own repair removes their files, so nothing is counted twice and nothing is lost.

The env's attributes are read here rather than through an env API (``InternetExplorerEnv`` has no
``state_dict`` yet); this module is the one place that knows them.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "latest.pt"


def env_state(env: Any) -> dict[str, Any]:
    """The episode state of an Internet Explorer env (wrapped or not) and of its world."""
    base = env.unwrapped
    stats = base._stats
    world = base._world
    state: dict[str, Any] = {
        "stats": {
            "reward_sum": stats.reward_sum.copy(),
            "count": stats.count.copy(),
            "steps": stats.steps,
            "last_reward": stats.last_reward,
        },
        "queried": base.queried.copy(),
        "iteration": base.iteration,
        "concept_rewards": dict(base._concept_rewards),
        "iteration_totals": base._iteration_totals.state_dict(),
        "np_random": base.np_random.bit_generator.state,
        "descriptor_rng": base._descriptor_rng.bit_generator.state,
        "world": {},
    }
    if hasattr(world, "learner") and not base.config.frozen:
        state["world"] = {
            "learner": world.learner.state_dict(),
            "iteration": world.iteration,
            "pending": [
                (images.copy(), rewards.copy(), list(ids)) for images, rewards, ids in world._pending
            ],
        }
    elif hasattr(world, "dedup"):
        state["world"] = {"dedup": world.dedup}
    return state


def load_env_state(env: Any, state: dict[str, Any]) -> None:
    """Restore :func:`env_state` into an env that was just ``reset`` with the same config."""
    base = env.unwrapped
    stats = base._stats
    stats.reward_sum[:] = state["stats"]["reward_sum"]
    stats.count[:] = state["stats"]["count"]
    stats.steps = int(state["stats"]["steps"])
    stats.last_reward = float(state["stats"]["last_reward"])
    base.queried[:] = state["queried"]
    base.iteration = int(state["iteration"])
    base._concept_rewards = dict(state["concept_rewards"])
    base._iteration_totals.load_state_dict(state["iteration_totals"])
    base.np_random.bit_generator.state = state["np_random"]
    if "descriptor_rng" in state:  # descriptors draw from their own stream
        base._descriptor_rng.bit_generator.state = state["descriptor_rng"]
    world = base._world
    saved = state["world"]
    if "learner" in saved:
        world.learner.load_state_dict(saved["learner"])
        world.iteration = int(saved["iteration"])
        world._pending = [(np.asarray(i), np.asarray(r), list(d)) for i, r, d in saved["pending"]]
    elif "dedup" in saved:
        world.dedup = saved["dedup"]


def store_extent(store_root: Path) -> dict[str, int]:
    """The largest image id and ``urls`` row id of the SQLite store at ``store_root`` (0: none)."""
    db = store_root / "meta.sqlite"
    if not db.exists():
        return {"image_id": 0, "url_row": 0}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        image_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM images").fetchone()[0]
        url_row = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM urls").fetchone()[0]
    return {"image_id": int(image_id), "url_row": int(url_row)}


def roll_back_store(store_root: Path, extent: dict[str, int]) -> int:
    """Delete the store rows written after ``extent``; return how many images went.

    Their files become orphans, which :class:`~ie_env.download.store.ImageStore` removes when it opens.
    """
    db = store_root / "meta.sqlite"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        gone = conn.execute("DELETE FROM images WHERE id > ?", (extent["image_id"],)).rowcount
        conn.execute("DELETE FROM urls WHERE rowid > ?", (extent["url_row"],))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return int(gone)


def save(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``run_dir/checkpoints/latest.pt`` atomically (temp file, fsync, rename)."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT
    temp = folder / (CHECKPOINT + ".tmp")
    with open(temp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return path


def load(run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint of ``run_dir``, or None if it has none."""
    path = run_dir / "checkpoints" / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
