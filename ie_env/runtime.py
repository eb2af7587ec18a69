"""How this process uses its hardware: bfloat16 where it is native, and the thread-count policy.

* :func:`bf16_enabled` is the one detection function: True on a CUDA device with bf16, or on a CPU
  with native bfloat16 matmuls (AVX512-BF16 or AMX), unless ``IE_ENV_BF16=0``. Where it is True, text
  embedding (vocabulary, captions), image embedding and the SSL forward passes run under bf16
  autocast (except the training of encoders that train slower in bf16 on a CPU, see
  ``ie_env.learn.phase.training_precision``); weights, optimiser state, losses and returned embeddings stay float32, and the server's
  ranking query embeddings stay float32 on purpose. Measured on a 2-core AMX CPU, one thread: MiniLM
  2.6x (cosine to fp32 >= 0.9999); MoCo v3 convnet training at 32 px 2.5x (346 vs 136 img/s of CPU
  time, with channels-last weights, which oneDNN's bf16 convolutions need to be fast); image
  embedding about 3x (cosine to fp32 >= 0.99999).
* :func:`autocast` returns the autocast context for a device (a no-op where bf16 is off), and
  :func:`precision_tag` the short name (``bf16`` or ``fp32``) that caches put into their keys, so a
  cache never mixes results of two precisions.
* :func:`default_threads` is the thread policy for a process that runs alone (``ie-explore``,
  ``ie-vocab embed``, ``ie-web build``, benchmarks): ``$IE_ENV_THREADS`` when set, else every core
  this process may use. Only such entry points call :func:`use_threads`; library code never changes
  process-wide torch settings as a side effect (``EnvConfig.threads``, when given, is applied once by
  the env, and documented as process-wide). On a machine shared with other busy processes, one thread
  each is faster than oversubscribed OpenMP threads: set ``IE_ENV_THREADS=1`` there.
* :func:`bf16_allowed` switches bf16 off (or back on) for a block, for comparing the two precisions.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

BF16_ENV_VAR = "IE_ENV_BF16"
THREADS_ENV_VAR = "IE_ENV_THREADS"


@functools.lru_cache(maxsize=4)
def _bf16_native(device_type: str) -> bool:
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes
        return False


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"`` (the learner's default device)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_enabled(device: Any = "cpu") -> bool:
    """Whether work on ``device`` runs under bfloat16 autocast (native support and not ``IE_ENV_BF16=0``)."""
    if os.environ.get(BF16_ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    device_type = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return _bf16_native(device_type)


def autocast(device: Any = "cpu") -> contextlib.AbstractContextManager:
    """A bfloat16 autocast context for ``device`` where :func:`bf16_enabled`, else a no-op context."""
    if not bf16_enabled(device):
        return contextlib.nullcontext()
    import torch

    device_type = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return torch.autocast(device_type, dtype=torch.bfloat16)


@contextlib.contextmanager
def bf16_allowed(allowed: bool) -> Iterator[None]:
    """Within the block, allow bf16 (where native) or force float32, as ``IE_ENV_BF16`` would; restored after.

    For benchmarks and tests that compare the two precisions in one process. It sets the process's
    environment variable, so it is not for use from several threads at once.
    """
    before = os.environ.get(BF16_ENV_VAR)
    os.environ[BF16_ENV_VAR] = "1" if allowed else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BF16_ENV_VAR, None)
        else:
            os.environ[BF16_ENV_VAR] = before


def precision_tag(device: Any = "cpu") -> str:
    """``"bf16"`` or ``"fp32"``: which precision work on ``device`` uses (part of cache keys)."""
    return "bf16" if bf16_enabled(device) else "fp32"


def available_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(explicit: int | None = None) -> int:
    """Threads for a process that runs alone: ``explicit``, else ``$IE_ENV_THREADS``, else every core.

    Raises:
        ValueError: ``explicit`` or ``$IE_ENV_THREADS`` is not a positive integer.
    """
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, int) or explicit < 1:
            raise ValueError(f"threads must be a positive integer, got {explicit!r}")
        return explicit
    raw = os.environ.get(THREADS_ENV_VAR, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"${THREADS_ENV_VAR} must be a positive integer, got {raw!r}")
        return value
    return available_cores()


def use_threads(explicit: int | None = None) -> int:
    """Set torch's intra-op threads for this whole process (entry points only); return the count."""
    import torch

    threads = default_threads(explicit)
    torch.set_num_threads(threads)
    return threads
