"""The Falcon glue: one ``request_completed`` line per request, and a clean log context afterwards.

The middleware only reads attributes that ``falcon.Request`` and
``falcon.asgi.Request`` share, and has native sync and async methods, so
neither flavour pays for an adapter.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

#: The ``route`` of a request that matched no route (never the raw path: it may carry data).
UNMATCHED_ROUTE = "<unmatched>"
ACCESS_LOGGER = "taskman.access"
_NOT_STARTED: tuple[None, dict[str, Any]] = (None, {})


def access_fields(
    *,
    method: str,
    route: str | None,
    path: str,
    status_code: int,
    duration_ms: float,
    client_ip: str | None,
    user_agent: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    """The fields of a ``request_completed`` line."""
    fields: dict[str, Any] = {
        "method": method,
        "route": route or UNMATCHED_ROUTE,
        "path": path,
        "status_code": status_code,
        "duration_ms": round(duration_ms, 3),
        "client_ip": client_ip,
        "user_agent": user_agent,
    }
    if request_id:
        fields["request_id"] = request_id
    return fields


class AccessLogMiddleware:
    """Outermost middleware: times the request, logs ``request_completed``, restores the log context."""

    def __init__(self) -> None:
        # Built with the app, i.e. after taskman_configure.  ``bind()`` resolves
        # structlog's lazy proxy now, so a request does not pay for it; the
        # bound logger shares the pipeline's processor list and output, which
        # configure_logging updates in place.
        self.log = structlog.get_logger(ACCESS_LOGGER).bind()

    def process_request(self, req: Any, resp: Any) -> None:
        req.context.taskman_log = (time.perf_counter(), structlog.contextvars.get_contextvars())

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        context = req.context
        started, outer_context = getattr(context, "taskman_log", _NOT_STARTED)
        duration = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        request_id = getattr(context, "request_id", None)
        # access_fields() inlined: this runs once per request.
        fields = {
            "method": req.method,
            "route": req.uri_template or UNMATCHED_ROUTE,
            "path": req.path,
            "status_code": resp.status_code,
            "duration_ms": round(duration, 3),
            "client_ip": req.remote_addr,
            "user_agent": req.user_agent,
        }
        if request_id:
            fields["request_id"] = request_id
        self.log.info("request_completed", **fields)
        # Nothing bound during the request outlives it.
        structlog.contextvars.clear_contextvars()
        if outer_context:
            structlog.contextvars.bind_contextvars(**outer_context)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        self.process_request(req, resp)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)
