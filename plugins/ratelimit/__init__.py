"""ratelimit: limit reads and writes per token or client IP, in memory or shared through Redis.

Every routed GET/HEAD (``reads``) and POST/PUT/PATCH/DELETE (``writes``)
is counted against the caller's budget: the auth principal's token prefix,
or the client IP for anonymous calls.  Counted responses carry
``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``; over
the limit the answer is a 429 problem with ``Retry-After``.  The work is
plain Python in :mod:`.core` over the ``limits`` storages of
:mod:`.backends`; :mod:`.middleware` is the Falcon glue.  See
docs/ratelimit.md.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from taskman import hookimpl
from taskman.config import plugin_settings

from .backends import Backend, MemoryBackend, RedisBackend, open_backend
from .core import Decision, FailureLog, RateLimiter, StorageUnavailableError, group_of, identity_of, is_exempt
from .middleware import RateLimitMiddleware
from .settings import RateLimitSettings, parse_rate

__all__ = [
    "Backend",
    "Decision",
    "FailureLog",
    "MemoryBackend",
    "RateLimitMiddleware",
    "RateLimitSettings",
    "RateLimiter",
    "RedisBackend",
    "StorageUnavailableError",
    "build_middleware",
    "group_of",
    "identity_of",
    "is_exempt",
    "open_backend",
    "parse_rate",
]

SECTION = "ratelimit"

log = logging.getLogger("taskman.ratelimit")

#: The limiters built for each config (by id), closed by taskman_shutdown; an entry goes with its config.
_limiters: dict[int, list[RateLimiter]] = {}


def settings_of(config: Any) -> RateLimitSettings:
    return plugin_settings(config, SECTION, RateLimitSettings)


def build_middleware(settings: RateLimitSettings) -> RateLimitMiddleware:
    backend = open_backend(settings.storage_url, timeout=settings.storage_timeout, key_prefix=settings.key_prefix)
    limiter = RateLimiter(settings.rates(), backend, retry_interval=settings.storage_retry_interval)
    failure_log = FailureLog(log, "ratelimit_storage_unavailable", settings.failure_log_interval)
    return RateLimitMiddleware(settings, limiter, failure_log)


# -- hooks --------------------------------------------------------------------


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, RateLimitSettings)


@hookimpl(trylast=True)
def taskman_middleware(config: Any) -> list[object]:
    """After request_id, logging and metrics (they time and log the 429s too), after auth (it names the caller)."""
    middleware = build_middleware(settings_of(config))
    if id(config) not in _limiters:
        weakref.finalize(config, _limiters.pop, id(config), None)
    _limiters.setdefault(id(config), []).append(middleware.limiter)
    return [middleware]


@hookimpl
def taskman_shutdown(app: Any, config: Any) -> None:
    """Close the storage clients' connections (a Redis pool); they reconnect if the app serves again."""
    for limiter in _limiters.get(id(config), []):
        limiter.close()


@hookimpl
def taskman_openapi_amend(config: Any, plugins: Any, document: dict[str, Any]) -> None:
    """For the openapi plugin: every limited operation may answer 429."""
    from ..openapi.document import add_response, operations

    settings = settings_of(config)
    for path, method, operation in operations(document):
        if group_of(method.upper()) is not None and not is_exempt(path, settings.exempt_paths):
            add_response(operation, 429, "TooManyRequests")
