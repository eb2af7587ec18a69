"""What the env tests share: a 20-word vocabulary for the generated web and a private cache dir."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

WORDS = (
    "words:circle,square,triangle,star,cross,ring,stripe,dot,box,pyramid,wedge,disk,"
    "red,green,blue,apple,dog,owl,car,bicycle"
)


@contextlib.contextmanager
def env_home(folder: Path) -> Iterator[None]:
    """Point ``$IE_ENV_HOME`` at ``folder`` (subprocesses and Ray workers inherit it), then restore it."""
    old = os.environ.get("IE_ENV_HOME")
    os.environ["IE_ENV_HOME"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("IE_ENV_HOME", None)
        else:
            os.environ["IE_ENV_HOME"] = old
