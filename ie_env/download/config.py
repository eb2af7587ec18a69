"""The downloader's settings (:class:`DownloadConfig`) and the statuses a download can end with."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ie_env.download.decode import DEFAULT_FORMATS, RESIZE_MODES, DecodeSpec
from ie_env.download.dedup import PHASH_BITS, PHASH_THRESHOLD
from ie_env.download.netguard import normalise_allowed
from ie_env.download.politeness import DEFAULT_USER_AGENT, OPT_OUT_DIRECTIVES, ROBOTS_TOKEN
from ie_env.validate import check_bool, check_choice, check_int, check_ints, check_numbers, check_text, fail

STATUSES = (
    "ok",
    "duplicate",
    "http_error",
    "timeout",
    "network_error",
    "too_large",
    "bad_encoding",
    "not_image",
    "decode_error",
    "too_small",
    "blocked_by_robots",
    "opted_out",
    "blocked_address",
    "invalid_url",
    "too_many_redirects",
    "internal_error",
)
# Content-Encodings the client can ask for; ``identity`` asks for none.
ACCEPT_ENCODINGS = ("identity", "gzip", "deflate")


@dataclass(frozen=True)
class DownloadConfig:
    """Downloader settings (validated; errors name the bad value).

    Attributes:
        image_size: output size in pixels (see ``resize_mode``).
        resize_mode: ``center_crop`` (square ``image_size``, like img2dataset's ``center_crop``),
            ``keep_ratio`` (short side ``image_size``) or ``border`` (long side, padded white).
        min_size: images whose short side is smaller are ``too_small``.
        max_bytes: body cap per image, counted after any Content-Encoding is undone (Content-Length,
            the bytes streamed and the bytes decompressed).
        max_pixels: pixel cap per image, checked from the header before decoding.
        connect_timeout, read_timeout: seconds, per connection attempt / per read.
        total_timeout: seconds for one request from send to the last body byte.
        concurrency: requests in flight at once, all hosts together.
        per_host: requests in flight at once to one host.
        retries: extra attempts after a 429 or 5xx answer (no retry for anything else).
        backoff: first retry delay in seconds when there is no ``Retry-After``; doubles each time.
        max_retry_after: a ``Retry-After`` longer than this gives up instead of waiting.
        max_redirects: redirects followed per URL (each hop is checked like the first URL).
        user_agent: the User-Agent header; ``robots_token`` is the name robots rules are matched by.
        respect_robots: fetch and honour robots.txt per origin.
        respect_x_robots_tag: drop images whose response opts out with ``opt_out_directives``.
        allowed_hosts: ``host`` or ``host:port`` that may resolve to loopback/private addresses
            (the offline web); nothing else may.
        accept_encoding: the one Content-Encoding asked for besides ``identity`` (one of
            :data:`ACCEPT_ENCODINGS`); an answer in any other, or in several stacked, is ``bad_encoding``.
        dedup: drop exact (sha256) and near (phash) duplicates within a batch and vs ``known``.
        phash_threshold: Hamming distance (of 64 bits) at or below which images are near-duplicates.
        processes: decode worker processes; ``None`` = one per CPU (at most 4); 0 = a thread.
        decode_batch: most images sent to a worker in one round trip.
        max_pending_bytes: bytes of fetched bodies waiting to be decoded before fetching pauses.
        max_url_length: longer URLs are ``invalid_url``.
        formats: image formats Pillow may open.
        verify_tls: verify HTTPS certificates.
    """

    image_size: int = 64
    resize_mode: str = "center_crop"
    min_size: int = 16
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 32 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    concurrency: int = 32
    per_host: int = 8
    retries: int = 2
    backoff: float = 0.5
    max_retry_after: float = 30.0
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    robots_token: str = ROBOTS_TOKEN
    respect_robots: bool = True
    respect_x_robots_tag: bool = True
    opt_out_directives: tuple[str, ...] = OPT_OUT_DIRECTIVES
    allowed_hosts: tuple[str, ...] = ()
    accept_encoding: str = "gzip"
    dedup: bool = True
    phash_threshold: int = PHASH_THRESHOLD
    processes: int | None = None
    decode_batch: int = 8
    max_pending_bytes: int = 64 * 1024 * 1024
    max_url_length: int = 2048
    formats: tuple[str, ...] = DEFAULT_FORMATS
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str):
            fail(self, "allowed_hosts", "be a tuple of strings, not a string")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        object.__setattr__(self, "opt_out_directives", tuple(self.opt_out_directives))
        object.__setattr__(self, "formats", tuple(self.formats))
        check_choice(self, "resize_mode", RESIZE_MODES)
        check_choice(self, "accept_encoding", ACCEPT_ENCODINGS)
        check_int(self, "image_size", 8)
        check_ints(
            self,
            ("min_size", "max_bytes", "max_pixels", "concurrency", "per_host", "decode_batch")
            + ("max_pending_bytes", "max_url_length"),
            1,
        )
        check_numbers(self, ("connect_timeout", "read_timeout", "total_timeout"), 0, low_open=True)
        check_ints(self, ("retries", "max_redirects"), 0)
        check_numbers(self, ("backoff", "max_retry_after"), 0)
        if self.per_host > self.concurrency:
            fail(self, "per_host", f"not exceed concurrency ({self.concurrency!r})")
        check_int(self, "phash_threshold", 0, PHASH_BITS)
        check_int(self, "processes", 0, optional=True)
        check_text(self, "user_agent")
        check_text(self, "robots_token")
        for name in ("respect_robots", "respect_x_robots_tag", "dedup", "verify_tls"):
            check_bool(self, name)
        self.decode_spec()  # validates min_size against max_pixels, formats, ...
        normalise_allowed(self.allowed_hosts)

    def decode_spec(self) -> DecodeSpec:
        """Return the :class:`DecodeSpec` the decode workers use."""
        return DecodeSpec(self.image_size, self.resize_mode, self.min_size, self.max_pixels, self.formats)

    def worker_count(self) -> int:
        """Return the number of decode processes (0: decode in a thread of this process)."""
        if self.processes is not None:
            return self.processes
        return max(1, min(4, os.cpu_count() or 1))
