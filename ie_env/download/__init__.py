"""The download pipeline: fetch search hits over HTTP, decode them safely, dedup and store them.

One module per job: ``config`` (settings, statuses), ``results`` (what a fetch returns), ``client``
(the :class:`Downloader`: redirects, robots, retries), ``session`` (its per-loop state),
``transfer`` (one GET with a byte cap that holds after decompression), ``loopthread`` (the private
event loop behind the synchronous API), ``netguard`` (SSRF guard), ``politeness`` (robots.txt,
X-Robots-Tag), ``decode`` (bytes to a small RGB array and a phash, within a stated memory bound),
``decodepool`` (decode worker processes), ``dedup`` (the one exact + near-duplicate rule),
``batch`` (one fetch's bookkeeping) and ``store`` (the crash-safe image store).
"""

from ie_env.download.client import Downloader
from ie_env.download.config import DownloadConfig
from ie_env.download.results import Download, DownloadBatch

__all__ = ["Download", "DownloadBatch", "DownloadConfig", "Downloader"]
