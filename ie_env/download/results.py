"""What a download produces: one :class:`Download` per URL and the :class:`DownloadBatch` of a fetch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Download:
    """The outcome for one URL.

    Attributes:
        url: the URL as given (``repr`` of it when it was not a string).
        status: one of :data:`ie_env.download.config.STATUSES`.
        error: why, when ``status`` is not ``ok``.
        sha256: hex sha256 of the downloaded bytes (when something was downloaded).
        phash: 64-bit perceptual hash as an unsigned int (when decoded).
        width, height: the original image size.
        image: uint8 array (H, W, 3), RGB, resized; only for ``ok``.
        final_url: the URL the bytes came from after redirects.
        http_status: the last HTTP status code seen.
        format: the decoded format (``PNG``, ``JPEG``, ...).
        nbytes: size of the downloaded body.
    """

    url: str
    status: str
    error: str | None = None
    sha256: str | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    final_url: str | None = None
    http_status: int | None = None
    format: str | None = None
    nbytes: int = 0

    @property
    def ok(self) -> bool:
        """Whether the image was downloaded, decoded and kept."""
        return self.status == "ok"


@dataclass
class DownloadBatch:
    """All outcomes of one :meth:`~ie_env.download.Downloader.fetch`, in input order, and counts per status."""

    downloads: list[Download]
    counts: dict[str, int]
    seconds: float = 0.0

    @property
    def ok(self) -> list[Download]:
        """The ``ok`` downloads, in input order."""
        return [d for d in self.downloads if d.ok]

    def images(self) -> np.ndarray:
        """Return the ``ok`` images stacked as uint8 (n, H, W, 3) (needs a square ``resize_mode``)."""
        ok = self.ok
        if not ok:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return np.stack([d.image for d in ok])
