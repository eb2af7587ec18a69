"""Checkpoint files: atomic writes, a content digest, and loading that refuses anything damaged.

Layout: ``MAGIC`` + 32-byte SHA-256 of the payload + the payload (``torch.save`` of a dict of tensors,
numbers, strings, lists and dicts). Loading checks the magic, the digest and a format version, and
unpickles with ``weights_only=True`` (no arbitrary code), so a truncated, bit-flipped or foreign file
raises ``CheckpointError`` with the reason instead of yielding a half-restored learner.

Also here: the helpers that turn live training state into checkpointable values (CPU tensor copies of
state dicts, numpy generators as JSON text).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ie_env.paths import atomic_path

MAGIC = b"IE_ENV-LEARNER-CKPT\n"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not a learner checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (a crash leaves the old file intact). Returns the path."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    data = buf.getvalue()
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(MAGIC)
        handle.write(hashlib.sha256(data).digest())
        handle.write(data)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: the file is missing, truncated, altered, or of another format version.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    head = len(MAGIC) + 32
    if len(raw) < head or not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an ie_env learner checkpoint (bad header)")
    digest, data = raw[len(MAGIC) : head], raw[head:]
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupt (content digest mismatch); refusing to load it")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise CheckpointError(f"checkpoint {path} could not be decoded: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(f"checkpoint {path} has format version {version!r}, expected {FORMAT_VERSION}")
    return payload


def cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of a (nested) state dict with every tensor on the CPU."""

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(convert(v) for v in value)
        return copy.deepcopy(value)

    return convert(state)


def rng_to_text(rng: np.random.Generator) -> str:
    """Return the state of a numpy generator as JSON text (checkpoints hold no pickled objects)."""
    return json.dumps(rng.bit_generator.state)


def rng_from_text(text: str) -> np.random.Generator:
    """Rebuild the numpy generator whose state :func:`rng_to_text` wrote."""
    state = json.loads(text)
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    return np.random.Generator(bitgen)
