"""The Falcon glue: one ``request_completed`` line per request, and a clean log context afterwards.

The middleware only reads attributes that ``falcon.Request`` and
``falcon.asgi.Request`` share, and has native sync and async methods, so
neither flavour pays for an adapter.
"""

from __future__ import annotations

import time
from contextvars import Context, copy_context
from typing import Any

import structlog

from .pipeline import event_writer

#: The ``route`` of a request that matched no route (never the raw path: it may carry data).
UNMATCHED_ROUTE = "<unmatched>"
ACCESS_LOGGER = "taskman.access"
_NOT_STARTED: tuple[None, None] = (None, None)


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


_STRUCTLOG_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX


def restore_log_context(before: Context | None) -> None:
    """Set structlog's context variables back to their values in ``before`` (all unbound when None).

    One pass over the context: nothing bound while a request was served
    outlives it, and what was bound around it is kept.
    """
    for var, value in copy_context().items():
        if var.name.startswith(_STRUCTLOG_PREFIX):
            old = Ellipsis if before is None else before.get(var, Ellipsis)
            if value is not old:
                var.set(old)


class AccessLogMiddleware:
    """Outermost middleware: times the request, logs ``request_completed``, restores the log context."""

    def __init__(self) -> None:
        # Built with the app, i.e. after taskman_configure: the line goes through the pipeline's
        # processors and output directly (event_writer), without a bound logger around them.
        self.write = event_writer(ACCESS_LOGGER)

    def process_request(self, req: Any, resp: Any) -> None:
        # The context as the request found it: copying it costs nothing (contexts are immutable maps).
        req.context.taskman_log = (time.perf_counter(), copy_context())

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        context = req.context
        started, before = getattr(context, "taskman_log", _NOT_STARTED)
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
        fields["event"] = "request_completed"  # last, where structlog's logger methods put it
        self.write(fields)
        # Nothing bound during the request outlives it.
        restore_log_context(before)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        self.process_request(req, resp)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)
