"""limits: refuse oversized requests (413, 414, 431), late ones (408), and stop slow responders (503 + Retry-After).

* :mod:`.sizes`: the plain checks and the bounded body readers;
* :mod:`.watchdog`: one thread per process that interrupts a call past its
  deadline with ``PyThreadState_SetAsyncExc``;
* :mod:`.web`: the Falcon glue, a middleware (``trylast``: it runs after
  request_id, logging and metrics have started) and the responder decorator
  the core applies to every blocking sync responder through
  ``taskman_responder_wrappers``;
* ``taskman_server_options``: the bounds the server layer enforces before
  the app sees a request (the size the servers let through, the time a
  client has to send its head and body).

See docs/limits.md.
"""

from __future__ import annotations

from typing import Any

from taskman import hookimpl
from taskman.config import plugin_settings
from taskman.hookspecs import ResponderWrapper

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

SECTION = "limits"


def settings_of(config: Any) -> LimitsSettings:
    return plugin_settings(config, SECTION, LimitsSettings)


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, LimitsSettings)


@hookimpl(trylast=True)
def taskman_middleware(config: Any) -> list[object]:
    return [LimitsMiddleware(settings_of(config))]


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
def taskman_openapi_amend(config: Any, plugins: Any, document: dict[str, Any]) -> None:
    """For the openapi plugin: 413 where a body is taken, 414 and 431 everywhere (when those limits are on)."""
    from ..openapi.components import problem_response
    from ..openapi.document import add_response, operations

    settings = settings_of(config)
    responses = document.setdefault("components", {}).setdefault("responses", {})
    if settings.max_url_length:
        responses["UriTooLong"] = problem_response(
            f"The request target is longer than {settings.max_url_length} bytes."
        )
    if settings.max_header_bytes:
        responses["RequestHeaderFieldsTooLarge"] = problem_response(
            f"The request headers add up to more than {settings.max_header_bytes} bytes."
        )
    for _, _, operation in operations(document):
        if settings.max_body_bytes and "requestBody" in operation:
            add_response(operation, 413, "ContentTooLarge")
        if settings.max_url_length:
            add_response(operation, 414, "UriTooLong")
        if settings.max_header_bytes:
            add_response(operation, 431, "RequestHeaderFieldsTooLarge")
