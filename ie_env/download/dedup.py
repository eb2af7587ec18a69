"""The one image dedup: exact (sha256 of the bytes) and near (64-bit perceptual hash) duplicates.

Everything that drops duplicate images uses :class:`Deduplicator`: the downloader within a batch,
the :class:`~ie_env.download.store.ImageStore` against what it holds (and so the downloader's
``known=`` check), and worlds that dedup precomputed hashes of corpus images. It needs nothing but
``(sha256, phash)`` pairs, so the rule is the same wherever the hashes come from:

- two images are duplicates when their sha256 digests are equal, or when the Hamming distance of
  their perceptual hashes (:func:`ie_env.download.decode.phash`) is at most ``threshold`` bits;
- a missing sha256 or phash (``None``) takes no part in that half of the comparison.

>>> seen = Deduplicator()
>>> seen.admit("ab" * 32, 0xFFFF_0000_FFFF_0000)
True
>>> seen.admit(None, 0xFFFF_0000_FFFF_0003)      # 2 bits away: a near-duplicate
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ie_env.validate import check_int

PHASH_THRESHOLD = 4  # bits of 64; near-duplicates are at or below it
PHASH_BITS = 64

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(hashes: np.ndarray, h: int) -> np.ndarray:
    """Return the Hamming distances between each uint64 in ``hashes`` and the 64-bit int ``h``."""
    x = np.bitwise_xor(np.asarray(hashes, dtype=np.uint64), np.uint64(h))
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _POPCOUNT8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1).astype(np.int64)


@dataclass(frozen=True)
class Match:
    """The remembered image a new one duplicates.

    Attributes:
        index: position of the remembered image, in the order it was admitted (0-based).
        distance: Hamming distance of the perceptual hashes; 0 for an exact (sha256) match.
        exact: True when the sha256 digests are equal.
    """

    index: int
    distance: int
    exact: bool


class Deduplicator:
    """Remembers images by ``(sha256, phash)`` and tells whether a new one duplicates any of them.

    Args:
        threshold: Hamming distance (of 64 bits) at or below which two phashes are near-duplicates.
        pairs: ``(sha256, phash)`` pairs to remember from the start (e.g. a store's rows), in order.
    """

    def __init__(
        self, threshold: int = PHASH_THRESHOLD, pairs: Iterable[tuple[str | None, int | None]] = ()
    ) -> None:
        check_int(self, "threshold", 0, PHASH_BITS, value=threshold)
        self.threshold = threshold
        self._by_sha: dict[str, int] = {}
        self._hashes = np.zeros(16, dtype=np.uint64)
        self._owners = np.zeros(16, dtype=np.int64)  # entry index of each stored phash
        self._n_hashes = 0
        self._n = 0
        for sha256, phash in pairs:
            self.add(sha256, phash)

    def __len__(self) -> int:
        return self._n

    @property
    def phashes(self) -> np.ndarray:
        """The remembered perceptual hashes in admission order (a read-only uint64 view)."""
        view = self._hashes[: self._n_hashes]
        view.flags.writeable = False
        return view

    def match(self, sha256: str | None, phash: int | None) -> Match | None:
        """Return the first remembered image this one duplicates (exact before near), or None."""
        if sha256 is not None and sha256 in self._by_sha:
            return Match(self._by_sha[sha256], 0, True)
        if phash is None or self._n_hashes == 0:
            return None
        distances = hamming(self._hashes[: self._n_hashes], phash)
        j = int(np.argmin(distances))
        if distances[j] > self.threshold:
            return None
        return Match(int(self._owners[j]), int(distances[j]), False)

    def is_duplicate(self, sha256: str | None, phash: int | None) -> bool:
        """Return whether the image duplicates a remembered one (without remembering it)."""
        return self.match(sha256, phash) is not None

    def add(self, sha256: str | None, phash: int | None) -> int:
        """Remember an image whether or not it is a duplicate; return its index."""
        index = self._n
        self._n += 1
        if sha256 is not None:
            self._by_sha.setdefault(sha256, index)
        if phash is not None:
            if self._n_hashes == len(self._hashes):
                self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
                self._owners = np.concatenate([self._owners, np.zeros_like(self._owners)])
            self._hashes[self._n_hashes] = np.uint64(phash)
            self._owners[self._n_hashes] = index
            self._n_hashes += 1
        return index

    def admit(self, sha256: str | None, phash: int | None) -> bool:
        """Remember the image and return True if it is new; return False (and forget it) if not."""
        if self.is_duplicate(sha256, phash):
            return False
        self.add(sha256, phash)
        return True


class DedupIndex(Protocol):
    """What the downloader asks of already-stored images (:class:`~ie_env.download.store.ImageStore`)."""

    def has_url(self, url: str) -> bool:
        """Return whether ``url`` was stored or had a final outcome."""
        ...

    def has_sha256(self, sha256: str) -> bool:
        """Return whether an image with these exact bytes is stored."""
        ...

    def near_duplicate(self, phash: int) -> Any:
        """Return the stored image within the threshold of ``phash``, or None."""
        ...
