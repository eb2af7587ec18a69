"""A corpus' images as training arrays, made by the downloader's own preprocessing, plus their hashes.

There is one image preprocessing in ie_env: :func:`ie_env.download.decode.decode_image`. The arrays of
a corpus (target images, the frozen world's corpus images) are produced by calling it on *the exact
bytes the search server serves* for each image (the stored PNG, :meth:`Corpus.image_bytes`), with
:func:`corpus_decode_spec`, so a corpus image and the same image downloaded over HTTP by the
:class:`~ie_env.download.Downloader` (``resize_mode="border"``) are the same array with the same
perceptual hash. The sha256 is that of the served bytes, as the downloader computes it.

Cached under the corpus root, keyed by corpus, size and :data:`PREPROCESS_KEY`::

    arrays/<corpus>-<key>-<size>-<preprocess>.npy          uint8 (N, size, size, 3)
    arrays/<corpus>-<key>-<size>-<preprocess>.hashes.npz   sha256 uint8 (N, 32), phash uint64 (N,)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ie_env.download.decode import DecodeSpec, decode_image
from ie_env.paths import atomic_path

if TYPE_CHECKING:
    from ie_env.web.corpus.reader import Corpus

RESIZE_MODE = "border"
# Part of every cache file name: bump it when decode_image's output changes.
PREPROCESS_KEY = f"decode-{RESIZE_MODE}-v1"


def corpus_decode_spec(size: int) -> DecodeSpec:
    """Return the spec corpus images are decoded with: the downloader's ``border`` mode at ``size``.

    ``min_size`` is 1 so that every stored image gets an array; the pixels of an image the downloader
    accepts (short side >= its ``min_size``) are the same either way.
    """
    return DecodeSpec(image_size=size, resize_mode=RESIZE_MODE, min_size=1)


def array_path(corpus: Corpus, size: int) -> Path:
    """Return the cache file of a corpus' image array at ``size``."""
    return corpus.root / "arrays" / f"{corpus.name}-{corpus.key}-{size}-{PREPROCESS_KEY}.npy"


def hashes_path(corpus: Corpus, size: int) -> Path:
    """Return the cache file of a corpus' image hashes at ``size``, beside the array."""
    return array_path(corpus, size).with_suffix(".hashes.npz")


def write_arrays(corpus: Corpus, size: int, progress: bool) -> None:
    """Decode every image of ``corpus`` once, writing the array and the hashes files atomically."""
    path, hash_file = array_path(corpus, size), hashes_path(corpus, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = corpus_decode_spec(size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(corpus), desc=f"{corpus.name} images at {size}px", unit="img")
    sha256 = np.zeros((len(corpus), 32), dtype=np.uint8)
    phash = np.zeros(len(corpus), dtype=np.uint64)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(corpus), size, size, 3))
        for row in range(len(corpus)):
            data = corpus.image_bytes(row)
            decoded = decode_image(data, spec)
            if decoded.status != "ok" or decoded.image is None or decoded.phash is None:
                raise RuntimeError(f"corpus image {corpus.ids[row]!r} does not decode: {decoded.error}")
            out[row] = decoded.image
            sha256[row] = np.frombuffer(hashlib.sha256(data).digest(), dtype=np.uint8)
            phash[row] = decoded.phash
            if bar is not None and row % 256 == 255:
                bar.update(256)
        out.flush()
        del out
    with atomic_path(hash_file) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, sha256=sha256, phash=phash)
    if bar is not None:
        bar.update(len(corpus) - bar.n)
        bar.close()


def read_hashes(corpus: Corpus, size: int) -> tuple[list[str], np.ndarray]:
    """Return (sha256 hex per row, phash uint64 per row) from the cache file (written with the array)."""
    with np.load(hashes_path(corpus, size)) as stored:
        digests, phash = stored["sha256"], stored["phash"]
    if len(digests) != len(corpus):
        raise ValueError(f"{hashes_path(corpus, size)} holds {len(digests)} rows, corpus has {len(corpus)}")
    return [bytes(row).hex() for row in digests], phash.astype(np.uint64)
