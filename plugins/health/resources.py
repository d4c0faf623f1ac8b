"""The thin Falcon layer: four sync resources that render :class:`~.core.HealthState` reports as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from taskman import nonblocking

from .core import HealthState, Report

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
STARTUP_PATH = "/health/startup"
LEGACY_PATH = "/health"

_STATUS_LINES = {200: falcon.HTTP_200, 503: falcon.HTTP_503}


def render(resp: Any, report: Report, show_details: bool) -> None:
    resp.status = _STATUS_LINES[report.http_status]
    resp.content_type = falcon.MEDIA_JSON
    resp.cache_control = ["no-store"]
    resp.data = report.to_json(show_details)


class _Probe:
    def __init__(self, state: HealthState, details_for_tokens: bool = False) -> None:
        self.state = state
        # Details for a caller the auth plugin identified (``req.context.auth``), when set so.
        self.details_for_tokens = details_for_tokens

    def _answer(self, req: Any, resp: Any, report: Callable[[], Report]) -> None:
        show = self.state.show_details or (self.details_for_tokens and getattr(req.context, "auth", None) is not None)
        render(resp, report(), show)


class LiveResource(_Probe):
    """``GET /health/live``: 200 while the process serves; no checks, no I/O, on the event loop."""

    @nonblocking
    def on_get(self, req: Any, resp: Any) -> None:
        # Always 200 with no checks: straight to the bytes, no Report.
        resp.status = falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("Cache-Control", "no-store")
        resp.data = self.state.liveness_json()


class ReadyResource(_Probe):
    """``GET /health/ready``: the checks, 503 before start-up completed and once draining."""

    def on_get(self, req: Any, resp: Any) -> None:
        self._answer(req, resp, self.state.readiness)


class StartupResource(_Probe):
    """``GET /health/startup``: 503 until start-up (migrations and start-up hooks) completed."""

    @nonblocking
    def on_get(self, req: Any, resp: Any) -> None:
        self._answer(req, resp, self.state.startup)


class LegacyResource(_Probe):
    """``GET /health``: deprecated; readiness with ``Deprecation`` and a ``Link`` to its successor."""

    def on_get(self, req: Any, resp: Any) -> None:
        self._answer(req, resp, self.state.readiness)
        resp.set_header("Deprecation", "true")
        resp.set_header("Link", f'<{READY_PATH}>; rel="successor-version"')


def routes(state: HealthState, details_for_tokens: bool = False) -> list[tuple[str, object]]:
    return [
        (LIVE_PATH, LiveResource(state)),
        (READY_PATH, ReadyResource(state, details_for_tokens)),
        (STARTUP_PATH, StartupResource(state)),
        (LEGACY_PATH, LegacyResource(state, details_for_tokens)),
    ]
