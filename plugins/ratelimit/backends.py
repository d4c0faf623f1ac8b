"""Where the counts live: the ``limits`` sliding-window counter, in this process or on Redis.

A backend answers one question, for sync and async callers alike: record a
hit on a rate and say whether it fitted, with the window's remaining count
and reset time *as the storage sees them*.  Every storage failure surfaces
as :class:`limits.errors.StorageError` (``wrap_exceptions``).

Why the sliding-window counter: a request costs the same whatever the
number of requests already in the window, because the storage keeps two
counters per client and group (this window's and the previous one's), not
one entry per request as the moving window did (its cost grew with the
hits it held: about 6 µs a request at 1,000 hits in a window, 73 µs at
200,000).  The count it decides on is this window's hits plus the previous
window's weighted by the share of it still inside the sliding period, so
it follows the moving window closely and, unlike a fixed window, does not
let a client through twice the rate around a window boundary with traffic
of any regular shape.  Its reset time is when that weighted count next
drops by one: when one more request fits.  On Redis both calls are one
atomic Lua script each, timed by Redis's own clock; in process,
:class:`MemoryBackend` does limits' arithmetic itself, at a fraction of the
cost of limits' memory storage.

Why native async under ASGI: the event loop must not wait on Redis, and a
thread per request would compete with the sync resources for the default
executor (a handful of threads) and hold them through a Redis outage.  The
redis-py asyncio client is bound to the loop it was created in, so the
async storage is built lazily for the running loop.  The memory storage
does no I/O: async callers use it inline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from math import floor, inf
from typing import Any, NamedTuple, Protocol

import limits.aio.strategies
import limits.strategies
from limits import RateLimitItem
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from .settings import MEMORY_SCHEMES, REDIS_SCHEMES

#: Retries of a failed Redis command: one, at once, so a connection dropped while idle is replaced
#: transparently; redis-py's default (10 with back-off) would hold a request for seconds.
REDIS_RETRIES = 1


class Hit(NamedTuple):
    """One hit's outcome: whether it fitted, then the window as the storage sees it."""

    allowed: bool
    remaining: int
    reset_at: float  # epoch seconds


class Backend(Protocol):
    def hit(self, rate: RateLimitItem, *key: str) -> Hit: ...

    async def hit_async(self, rate: RateLimitItem, *key: str) -> Hit: ...

    def peek(self, rate: RateLimitItem, *key: str) -> Hit: ...

    async def peek_async(self, rate: RateLimitItem, *key: str) -> Hit: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _hit(limiter: limits.strategies.RateLimiter, rate: RateLimitItem, key: tuple[str, ...]) -> Hit:
    allowed = limiter.hit(rate, *key)
    stats = limiter.get_window_stats(rate, *key)
    return Hit(allowed, max(0, stats.remaining), stats.reset_time)


def _peek(limiter: limits.strategies.RateLimiter, rate: RateLimitItem, key: tuple[str, ...]) -> Hit:
    """Whether one more hit would fit, without counting one."""
    stats = limiter.get_window_stats(rate, *key)
    return Hit(stats.remaining > 0, max(0, stats.remaining), stats.reset_time)


#: How often the in-process storage drops the counters of windows that have ended (seconds).
SWEEP_SECONDS = 60.0


class MemoryBackend:
    """Counts in this process only: each worker limits on its own.

    limits' sliding-window counter (``SlidingWindowCounterRateLimiter`` over
    its ``memory://`` storage), kept in one dict under one lock: the same
    windows (*period* long, counted from the epoch), the same weighting,
    remaining count and reset, worked out with the same expressions (a test
    holds the two to the same answers).  limits' own memory storage costs
    several times as much per decision: a wrapper around every storage call,
    a lock per key and a timer thread started every 10 ms to expire keys.
    Counters of windows that have ended are dropped once every
    :data:`SWEEP_SECONDS`.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: ``(rate, *key)`` -> ``[window number, hits in it, hits in the window before]``.
        self._windows: dict[tuple[Any, ...], list[int]] = {}
        self._sweep_at = clock() + SWEEP_SECONDS

    def hit(self, rate: RateLimitItem, *key: str) -> Hit:
        return self._count(rate, key, hit=True)

    async def hit_async(self, rate: RateLimitItem, *key: str) -> Hit:
        return self.hit(rate, *key)  # a dict lookup under a lock: no reason to leave the loop

    def peek(self, rate: RateLimitItem, *key: str) -> Hit:
        return self._count(rate, key, hit=False)

    async def peek_async(self, rate: RateLimitItem, *key: str) -> Hit:
        return self.peek(rate, *key)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _count(self, rate: RateLimitItem, key: tuple[str, ...], *, hit: bool) -> Hit:
        now = self._clock()
        expiry = rate.get_expiry()
        window = int(now / expiry)
        with self._lock:
            if now >= self._sweep_at:
                self._sweep(now)
            counts = self._windows.get((rate, *key))
            if counts is None:
                counts = self._windows[(rate, *key)] = [window, 0, 0]
            elif counts[0] != window:
                counts[:] = [window, 0, counts[1] if counts[0] == window - 1 else 0]
            _, current, previous = counts
            # limits' expressions (storage.memory._get_sliding_window_info, strategies.SlidingWindowCounterRateLimiter).
            previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous else 0.0
            weighted = previous * previous_ttl / expiry + current
            allowed = floor(weighted) + 1 <= rate.amount
            if hit and allowed:
                counts[1] = current = current + 1
                weighted = previous * previous_ttl / expiry + current
        remaining = max(0, rate.amount - floor(weighted))
        if not (previous or current):
            return Hit(allowed if hit else remaining > 0, remaining, now)
        previous_reset = previous_ttl % (expiry / previous) if previous else inf
        current_reset = ((1 - ((now / expiry) % 1)) * expiry + expiry) % expiry if current else inf
        return Hit(allowed if hit else remaining > 0, remaining, now + min(previous_reset, current_reset))

    def _sweep(self, now: float) -> None:
        """Drop the counters no window can read any more (called under the lock)."""
        self._sweep_at = now + SWEEP_SECONDS
        ended = [key for key, counts in self._windows.items() if counts[0] < int(now / key[0].get_expiry()) - 1]
        for key in ended:
            del self._windows[key]


class RedisBackend:
    """Counts in Redis, shared by every worker and machine using the same URL and key prefix."""

    def __init__(self, url: str, *, timeout: float, key_prefix: str) -> None:
        import redis.asyncio.retry
        import redis.backoff
        import redis.retry

        self.url = url
        common: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "key_prefix": key_prefix,
            "wrap_exceptions": True,
        }
        self._sync_options = {**common, "retry": redis.retry.Retry(redis.backoff.NoBackoff(), REDIS_RETRIES)}
        self._async_options = {
            **common,
            "implementation": "redispy",  # the redis extra; limits' default (coredis) is not a dependency
            "retry": redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), REDIS_RETRIES),
        }
        # Built now, so a URL redis-py cannot use fails start-up; no connection is made yet.
        self._storage = storage_from_string(url, **self._sync_options)
        self._limiter = limits.strategies.SlidingWindowCounterRateLimiter(self._storage)
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async_limiter: limits.aio.strategies.SlidingWindowCounterRateLimiter | None = None

    def hit(self, rate: RateLimitItem, *key: str) -> Hit:
        return _hit(self._limiter, rate, key)

    async def hit_async(self, rate: RateLimitItem, *key: str) -> Hit:
        limiter = self._limiter_for_running_loop()
        allowed = await limiter.hit(rate, *key)
        stats = await limiter.get_window_stats(rate, *key)
        return Hit(allowed, max(0, stats.remaining), stats.reset_time)

    def peek(self, rate: RateLimitItem, *key: str) -> Hit:
        return _peek(self._limiter, rate, key)

    async def peek_async(self, rate: RateLimitItem, *key: str) -> Hit:
        stats = await self._limiter_for_running_loop().get_window_stats(rate, *key)
        return Hit(stats.remaining > 0, max(0, stats.remaining), stats.reset_time)

    def _limiter_for_running_loop(self) -> limits.aio.strategies.SlidingWindowCounterRateLimiter:
        loop = asyncio.get_running_loop()
        if self._async_limiter is None or self._async_loop is not loop:
            storage = storage_from_string(f"async+{self.url}", **self._async_options)
            self._async_limiter = limits.aio.strategies.SlidingWindowCounterRateLimiter(storage)
            self._async_loop = loop
        return self._async_limiter

    def close(self) -> None:
        """Close the sync client's connections (a later hit reconnects)."""
        _redis_client(self._storage).close()

    async def aclose(self) -> None:
        """Close the async client of the running loop, if it has one (a later hit builds another)."""
        limiter, self._async_limiter, self._async_loop = self._async_limiter, None, None
        if limiter is not None:
            await _async_redis_client(limiter.storage).aclose()


def _redis_client(storage: Any) -> Any:
    """The redis-py client inside limits' sync ``RedisStorage``."""
    return storage.storage


def _async_redis_client(storage: Any) -> Any:
    """The redis-py asyncio client inside limits' async ``RedisStorage``."""
    return storage.bridge.get_connection()


def open_backend(url: str, *, timeout: float, key_prefix: str) -> Backend:
    """The backend for ``url``; ValueError when its client library is missing or it cannot be used."""
    scheme = url.split("://", 1)[0]
    if scheme in MEMORY_SCHEMES:
        return MemoryBackend()
    if scheme in REDIS_SCHEMES:
        try:
            return RedisBackend(url, timeout=timeout, key_prefix=key_prefix)
        except ImportError as exc:
            raise ValueError(
                f"ratelimit.storage_url {scheme}:// needs the redis package (taskman[redis]): {exc}"
            ) from exc
        except (ConfigurationError, ValueError) as exc:
            raise ValueError(f"ratelimit.storage_url cannot be used: {exc}") from exc
    raise ValueError(f"ratelimit.storage_url has an unknown scheme {scheme!r}")
