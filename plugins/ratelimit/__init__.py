"""ratelimit: limit reads and writes per token or client IP, in memory or shared through Redis.

Every routed GET/HEAD (``reads``) and POST/PUT/PATCH/DELETE (``writes``)
is counted against the caller's budget: the auth principal's token prefix,
or the client IP for anonymous calls, which have stricter budgets of their
own (``anonymous_reads``, ``anonymous_writes``).  Counted responses carry
``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``; over
the limit the answer is a 429 problem with ``Retry-After``.  The work is
plain Python in :mod:`.core` over the ``limits`` storages of
:mod:`.backends`; :mod:`.middleware` is the Falcon glue.  See
docs/ratelimit.md.
"""

from __future__ import annotations

import logging
from typing import Any

import taskman
from taskman import hookimpl

from .backends import Backend, MemoryBackend, RedisBackend, open_backend
from .core import (
    Decision,
    ExemptPaths,
    FailureLog,
    RateLimiter,
    StorageUnavailableError,
    budget_of,
    group_of,
    identity_of,
    is_exempt,
)
from .middleware import AuthFailureGuard, RateLimitMiddleware
from .settings import RateLimitSettings, parse_rate

__all__ = [
    "AuthFailureGuard",
    "Backend",
    "Decision",
    "FailureLog",
    "MemoryBackend",
    "RateLimitMiddleware",
    "RateLimitSettings",
    "RateLimiter",
    "RedisBackend",
    "StorageUnavailableError",
    "budget_of",
    "build_middleware",
    "group_of",
    "identity_of",
    "is_exempt",
    "open_backend",
    "parse_rate",
]

log = logging.getLogger("taskman.ratelimit")


def build_middleware(settings: RateLimitSettings) -> RateLimitMiddleware:
    backend = open_backend(settings.storage_url, timeout=settings.storage_timeout, key_prefix=settings.key_prefix)
    limiter = RateLimiter(settings.rates(), backend, retry_interval=settings.storage_retry_interval)
    failure_log = FailureLog(log, "ratelimit_storage_unavailable", settings.failure_log_interval)
    return RateLimitMiddleware(settings, limiter, failure_log)


# -- hooks --------------------------------------------------------------------


@hookimpl
def taskman_settings() -> type:
    return RateLimitSettings


@hookimpl
def taskman_middleware(runtime: taskman.Runtime) -> list[object]:
    """Admission (stage admit, after auth names the caller, before it refuses), and the refused-auth budget."""
    middleware = runtime.component(RateLimitMiddleware, lambda: build_middleware(runtime.settings(RateLimitSettings)))
    guard = AuthFailureGuard(middleware.limiter, middleware.failure_log, middleware.storage)
    return [guard, middleware]


@hookimpl
def taskman_shutdown(runtime: taskman.Runtime) -> None:
    """Close the storage clients' connections (a Redis pool); they reconnect if the app serves again."""
    middleware = runtime.find(RateLimitMiddleware)
    if middleware is not None:
        middleware.limiter.close()


@hookimpl
def taskman_openapi_amend(runtime: taskman.Runtime, document: Any) -> None:
    """For the openapi plugin: every limited operation may answer 429."""
    exempt = ExemptPaths(runtime.settings(RateLimitSettings).exempt_paths)
    for path, method, operation in document.operations():
        if group_of(method.upper()) is not None and not exempt(path):
            document.add_response(operation, 429, "TooManyRequests")
