"""limits: refuse oversized requests (413, 414, 431), late ones (408), and stop slow responders (503 + Retry-After).

* :mod:`.sizes`: the plain checks and the bounded body readers;
* :mod:`.watchdog`: one thread per process that interrupts a call past its
  deadline with ``PyThreadState_SetAsyncExc``;
* :mod:`.web`: the Falcon glue, a middleware (pipeline stage ``edge``: after
  the observers, before anything that may cost a query) and the responder decorator
  the core applies to every blocking sync responder through
  ``taskman_responder_wrappers``;
* ``taskman_server_options``: the bounds the server layer enforces before
  the app sees a request (the size the servers let through, the time a
  client has to send its head and body).

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
def taskman_server_options(config: Any, flavour: str) -> dict[str, Any]:
    """Let requests up to the plugin's size limits through to the app (its 414 and 431); bound a client's time (408)."""
    settings = settings_of(config)
    options: dict[str, Any] = {}
    if settings.max_url_length:
        options["max_request_target"] = settings.max_url_length
    if settings.max_header_bytes:
        options["max_header_bytes"] = settings.max_header_bytes
    if settings.header_timeout:
        options["header_timeout"] = settings.header_timeout
    if settings.body_timeout:
        options["body_timeout"] = settings.body_timeout
    return options


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
