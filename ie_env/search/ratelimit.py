"""Token-bucket rate limits at each provider's documented numbers, and ``Retry-After`` parsing.

A :class:`RateLimiter` holds one bucket per documented limit (e.g. Openverse anonymous: 5 per hour
and 100 per day). ``acquire`` waits for a token when the wait is short (at most ``max_wait_s``) and
otherwise returns the wait it would need, so callers turn it into an error value instead of hanging
for an hour. A 429 answer's ``Retry-After`` pauses the whole limiter (``block_for``). Clock and sleep
are injectable, so tests run without real waiting.

Limiters are shared per provider and credential (``shared_limiter``): two engine objects for the same
API key draw from the same buckets, as the provider counts them.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ie_env.validate import check_int, check_number


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests per ``per_s`` seconds (a bucket of ``count`` tokens refilled evenly).

    Attributes:
        count: bucket capacity and tokens added per period.
        per_s: the period in seconds.
        label: how the provider documents it (used in messages), e.g. "5/hour".
    """

    count: int
    per_s: float
    label: str = ""

    def __post_init__(self) -> None:
        check_int(self, "count", 1)
        check_number(self, "per_s", 0, low_open=True)

    @property
    def describe(self) -> str:
        """The limit as the provider documents it, e.g. "5/hour" (or "count/per_s" without a label)."""
        return self.label or f"{self.count}/{self.per_s:g}s"


class RateLimiter:
    """Several token buckets that must all have a token before a request goes out.

    Args:
        rates: the limits; an empty sequence means unlimited.
        max_wait_s: the longest ``acquire`` sleeps; longer waits are refused.
        clock: monotonic seconds (injectable).
        sleep: sleeps seconds (injectable).
    """

    def __init__(
        self,
        rates: Sequence[Rate] = (),
        *,
        max_wait_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_number(self, "max_wait_s", 0, value=max_wait_s)
        self.rates = tuple(rates)
        self.max_wait_s = float(max_wait_s)
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._tokens = [float(rate.count) for rate in self.rates]
        self._updated = now
        self._blocked_until = -math.inf

    def __repr__(self) -> str:
        rates = ", ".join(rate.describe for rate in self.rates) or "unlimited"
        return f"RateLimiter({rates}, max_wait_s={self.max_wait_s:g})"

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        for index, rate in enumerate(self.rates):
            self._tokens[index] = min(
                float(rate.count), self._tokens[index] + elapsed * rate.count / rate.per_s
            )

    def _wait_needed(self, now: float) -> tuple[float, str]:
        wait, why = max(0.0, self._blocked_until - now), "Retry-After"
        for index, rate in enumerate(self.rates):
            missing = 1.0 - self._tokens[index]
            if missing > 1e-9:
                rate_wait = missing * rate.per_s / rate.count
                if rate_wait > wait:
                    wait, why = rate_wait, rate.describe
        return wait, why

    def try_acquire(self) -> tuple[float, str]:
        """Take a token now if every bucket has one.

        Returns:
            (0.0, "") on success, else (seconds until a token would be available, which limit).
        """
        with self._lock:
            now = self.clock()
            self._refill(now)
            wait, why = self._wait_needed(now)
            if wait <= 0.0:
                for index in range(len(self._tokens)):
                    self._tokens[index] -= 1.0
                return 0.0, ""
            return wait, why

    def acquire(self, max_wait_s: float | None = None) -> str | None:
        """Wait (at most ``max_wait_s``, default the limiter's) for a token and take it.

        Returns:
            None when a token was taken, else a reason naming the limit and the wait it would need.
        """
        limit = self.max_wait_s if max_wait_s is None else max_wait_s
        waited = 0.0
        while True:
            wait, why = self.try_acquire()
            if wait <= 0.0:
                return None
            if waited + wait > limit + 1e-9:
                return (
                    f"rate limit {why}: next request allowed in {wait:.0f} s (waits over {limit:g} s refused)"
                )
            self.sleep(wait)
            waited += wait

    def block_for(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (a 429's ``Retry-After``)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self.clock() + max(0.0, seconds))


def parse_retry_after(value: str | None, now_wall: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        now = time.time() if now_wall is None else now_wall
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(key: str, rates: Sequence[Rate], max_wait_s: float = 30.0) -> RateLimiter:
    """The process-wide limiter for ``key`` (e.g. "openverse:anon@api.openverse.org"), made on first use."""
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None or limiter.rates != tuple(rates):
            limiter = RateLimiter(rates, max_wait_s=max_wait_s)
            _shared[key] = limiter
        return limiter
