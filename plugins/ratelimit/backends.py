"""Where the counts live: the ``limits`` moving-window strategy over in-process memory or Redis.

A backend answers one question, for sync and async callers alike: record a
hit on a rate and say whether it fitted, with the window's remaining count
and reset time *as the storage sees them*.  Every storage failure surfaces
as :class:`limits.errors.StorageError` (``wrap_exceptions``).

Why the moving window: it never lets a client through twice the rate
around a window boundary (the fixed window does), its reset time is the
exact moment the oldest hit leaves the window, which is what Retry-After
must say, and on Redis both calls are one atomic Lua script each.  It keeps
one entry per hit, at most the rate's amount per key.

Why native async under ASGI: the event loop must not wait on Redis, and a
thread per request would compete with the sync resources for the default
executor (a handful of threads) and hold them through a Redis outage.  The
redis-py asyncio client is bound to the loop it was created in, so the
async storage is built lazily for the running loop.  The memory storage
does no I/O: async callers use it inline.
"""

from __future__ import annotations

import asyncio
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


class MemoryBackend:
    """Counts in this process only: each worker limits on its own."""

    def __init__(self) -> None:
        self._storage = storage_from_string("memory://")
        self._limiter = limits.strategies.MovingWindowRateLimiter(self._storage)

    def hit(self, rate: RateLimitItem, *key: str) -> Hit:
        return _hit(self._limiter, rate, key)

    async def hit_async(self, rate: RateLimitItem, *key: str) -> Hit:
        return self.hit(rate, *key)  # microseconds of dict and list work: no reason to leave the loop

    def peek(self, rate: RateLimitItem, *key: str) -> Hit:
        return _peek(self._limiter, rate, key)

    async def peek_async(self, rate: RateLimitItem, *key: str) -> Hit:
        return self.peek(rate, *key)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


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
        self._limiter = limits.strategies.MovingWindowRateLimiter(self._storage)
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async_limiter: limits.aio.strategies.MovingWindowRateLimiter | None = None

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

    def _limiter_for_running_loop(self) -> limits.aio.strategies.MovingWindowRateLimiter:
        loop = asyncio.get_running_loop()
        if self._async_limiter is None or self._async_loop is not loop:
            storage = storage_from_string(f"async+{self.url}", **self._async_options)
            self._async_limiter = limits.aio.strategies.MovingWindowRateLimiter(storage)
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
