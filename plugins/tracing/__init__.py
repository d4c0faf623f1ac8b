"""tracing: OpenTelemetry spans for every request and every SQL statement, exported over OTLP/HTTP.

Off unless ``tracing.otlp_endpoint`` (``APP_TRACING__OTLP_ENDPOINT``) is set;
off means no middleware, no wrapped database and no tracer provider.  The
plain parts (:mod:`.runtime`, :mod:`.spans`) know nothing of Falcon; the
hooks below and :mod:`.middleware` are the glue.  See docs/tracing.md.
"""

from __future__ import annotations

from typing import Any

from taskman import hookimpl, staged

from .middleware import TracingMiddleware
from .runtime import TracingRuntime, active, release, setup
from .settings import TracingSettings, traces_url
from .spans import REQUEST_ID_ATTRIBUTE, instrument_database, uninstrument_database

__all__ = [
    "REQUEST_ID_ATTRIBUTE",
    "TracingMiddleware",
    "TracingRuntime",
    "TracingSettings",
    "active",
    "release",
    "settings_of",
    "setup",
    "traces_url",
]


def settings_of(config: Any) -> TracingSettings:
    settings: TracingSettings = config.settings(TracingSettings)
    return settings


@hookimpl
def taskman_settings() -> type:
    return TracingSettings


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    # An observer, right after request_id: the span covers every other middleware and carries the id.
    if not settings_of(config).enabled:
        return []
    return [staged(TracingMiddleware(), "observe", after=("request_id",), before=("logging", "metrics"))]


@hookimpl
def taskman_startup(app: Any, config: Any) -> None:
    # Per worker process, after any fork: the provider and its export thread
    # are this process's own.
    settings = settings_of(config)
    if not settings.enabled:
        return
    setup(settings, service_name=config.app_name)
    if settings.trace_database:
        instrument_database(app.taskman.database)


@hookimpl
def taskman_shutdown(app: Any, config: Any) -> None:
    settings = settings_of(config)
    if not settings.enabled:
        return
    uninstrument_database(app.taskman.database)
    release()
