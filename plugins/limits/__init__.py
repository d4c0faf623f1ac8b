"""limits: refuse oversized requests (413, 414, 431) and stop responders that run too long (503 + Retry-After).

* :mod:`.sizes`: the plain checks and the bounded body readers;
* :mod:`.watchdog`: one thread per process that interrupts a call past its
  deadline with ``PyThreadState_SetAsyncExc``;
* :mod:`.web`: the Falcon glue, a middleware (pipeline stage ``edge``: after
  the observers, before anything that may cost a query) and the responder decorator
  the core applies to every blocking sync responder through
  ``taskman_responder_wrappers``.

See docs/limits.md.
"""

from __future__ import annotations

from typing import Any

from taskman import ResponderWrapper, hookimpl, staged

from .settings import LimitsSettings
from .sizes import BodyTooLarge, LimitedInput, LimitedReceive, parse_content_length
from .watchdog import ResponderTimeout, Watchdog, watchdog
from .web import LimitsMiddleware, time_limit

__all__ = [
    "BodyTooLarge",
    "LimitedInput",
    "LimitedReceive",
    "LimitsMiddleware",
    "LimitsSettings",
    "ResponderTimeout",
    "Watchdog",
    "parse_content_length",
    "settings_of",
    "time_limit",
    "watchdog",
]


def settings_of(config: Any) -> LimitsSettings:
    return config.settings(LimitsSettings)  # type: ignore[no-any-return]


@hookimpl
def taskman_settings() -> type:
    return LimitsSettings


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    return [staged(LimitsMiddleware(settings_of(config)), "edge")]


@hookimpl
def taskman_responder_wrappers(config: Any) -> list[ResponderWrapper]:
    settings = settings_of(config)
    if not settings.responder_timeout:
        return []
    return [time_limit(watchdog, settings.responder_timeout, settings.timeout_retry_after)]


@hookimpl
def taskman_openapi_amend(config: Any, document: Any) -> None:
    """For the openapi plugin: 413 where a body is taken, 414 and 431 everywhere (when those limits are on)."""
    settings = settings_of(config)
    if settings.max_url_length:
        document.add_problem_response(
            "UriTooLong", f"The request target is longer than {settings.max_url_length} bytes."
        )
    if settings.max_header_bytes:
        document.add_problem_response(
            "RequestHeaderFieldsTooLarge", f"The request headers add up to more than {settings.max_header_bytes} bytes."
        )
    for _, _, operation in document.operations():
        if settings.max_body_bytes and "requestBody" in operation:
            document.add_response(operation, 413, "ContentTooLarge")
        if settings.max_url_length:
            document.add_response(operation, 414, "UriTooLong")
        if settings.max_header_bytes:
            document.add_response(operation, 431, "RequestHeaderFieldsTooLarge")
