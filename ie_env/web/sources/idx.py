"""Reading the gzipped IDX files Fashion-MNIST ships in."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def read_idx(path: Path, offset: int) -> np.ndarray:
    """Read a gzipped IDX file (offset 16 for images, 8 for labels)."""
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=offset)
