"""Per-event-loop state of a downloader: its HTTP client, concurrency caps, robots cache and decoder."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from ie_env.download.decodepool import BatchDecoder
from ie_env.download.netguard import GuardedTransport
from ie_env.download.politeness import RobotsRules
from ie_env.download.transfer import ACCEPT, accept_encoding_header

if TYPE_CHECKING:
    from ie_env.download.client import Downloader


class Session:
    """Per-event-loop state: the HTTP client, semaphores, robots cache and decoder."""

    def __init__(self, downloader: Downloader) -> None:
        cfg = downloader.config
        self.loop = asyncio.get_running_loop()
        limits = httpx.Limits(
            max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency, keepalive_expiry=30.0
        )
        timeout = httpx.Timeout(
            connect=cfg.connect_timeout, read=cfg.read_timeout, write=cfg.read_timeout, pool=cfg.total_timeout
        )
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(downloader.policy, limits, verify=cfg.verify_tls),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={
                "User-Agent": cfg.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": accept_encoding_header(cfg.accept_encoding),
            },
        )
        self.global_sem = asyncio.Semaphore(cfg.concurrency)
        self.host_sems: dict[str, asyncio.Semaphore] = {}
        self.not_before: dict[str, float] = {}
        self.robots: dict[str, tuple[float, RobotsRules]] = {}
        self.robots_locks: dict[str, asyncio.Lock] = {}
        self.decoder = BatchDecoder(
            cfg.decode_spec(), cfg.worker_count(), cfg.decode_batch, cfg.max_pending_bytes
        )

    def host_sem(self, host: str, size: int) -> asyncio.Semaphore:
        """Return the semaphore that caps requests in flight to ``host``."""
        sem = self.host_sems.get(host)
        if sem is None:
            sem = self.host_sems[host] = asyncio.Semaphore(size)
        return sem
