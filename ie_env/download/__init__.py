"""The download pipeline: fetch search hits over HTTP, decode them safely, dedup and store them.

Network safety (``netguard``), politeness (``politeness``), decoding (``decode``, ``decodepool``) and the
crash-safe image store (``store``) each have a module; ``client`` drives them.
"""

from ie_env.download.client import Download, DownloadBatch, DownloadConfig, Downloader

__all__ = ["Download", "DownloadBatch", "DownloadConfig", "Downloader"]
