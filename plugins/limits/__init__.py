"""limits: refuse oversized requests (413, 414, 431) and stop responders that run too long (503 + Retry-After).

* :mod:`.sizes`: the plain checks and the bounded body readers;
* :mod:`.watchdog`: one thread per process that interrupts a call past its
  deadline with ``PyThreadState_SetAsyncExc``;
* :mod:`.web`: the Falcon glue, a middleware (``trylast``: it runs after
  request_id, logging and metrics have started) and the responder decorator
  the core applies to every blocking sync responder through
  ``taskman_responder_wrappers``.

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
def taskman_responder_wrappers(config: Any) -> list[ResponderWrapper]:
    settings = settings_of(config)
    if not settings.responder_timeout:
        return []
    return [time_limit(watchdog, settings.responder_timeout, settings.timeout_retry_after)]
