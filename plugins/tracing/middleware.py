"""The Falcon layer: one middleware that opens and closes the request's SERVER span.

Native sync methods for WSGI and ``*_async`` ones for ASGI, so the span is
started and made current on the request's own thread or task, with no
thread-pool hop.  It is only installed when tracing is configured.
"""

from __future__ import annotations

from typing import Any

from .runtime import active
from .spans import PROPAGATION_HEADERS, ServerSpan, end_server_span, start_server_span

#: Where the request's :class:`ServerSpan` lives: ``req.context.<name>``.
CONTEXT_ATTRIBUTE = "tracing_span"


class TracingMiddleware:
    def process_request(self, req: Any, resp: Any) -> None:
        runtime = active()
        if runtime is None:  # not started in this process (yet), or already shut down
            return
        server_span = start_server_span(
            runtime.tracer,
            method=req.method,
            path=req.path,
            scheme=req.scheme,
            headers={name: req.get_header(name) for name in PROPAGATION_HEADERS},
        )
        setattr(req.context, CONTEXT_ATTRIBUTE, server_span)

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        server_span: ServerSpan | None = getattr(req.context, CONTEXT_ATTRIBUTE, None)
        if server_span is None:
            return
        setattr(req.context, CONTEXT_ATTRIBUTE, None)
        end_server_span(
            server_span,
            method=req.method,
            route=req.uri_template,
            status_code=resp.status_code,
            request_id=getattr(req.context, "request_id", None),
        )

    async def process_request_async(self, req: Any, resp: Any) -> None:
        self.process_request(req, resp)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)
