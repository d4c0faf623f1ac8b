"""The thin Falcon layer: the middleware that feeds :class:`.http.HttpMetrics`, and the scrape resource.

The middleware has plain sync methods for WSGI and native ``*_async`` ones
for ASGI (no thread-pool hop).  A request to an excluded path costs one
set lookup and one ``startswith`` on the way in, one attribute lookup on
the way out.
"""

from __future__ import annotations

from typing import Any

import falcon

from .http import HttpMetrics, PathFilter
from .registry import MetricsRegistry

#: Attribute of ``req.context`` holding the request's :class:`.http.Timer`.
CONTEXT_KEY = "taskman_metrics_timer"

_BODILESS = frozenset({204, 304})


def request_size(req: Any) -> int | None:
    """Bytes of the request body: ``Content-Length``, 0 without one, unknown (``None``) when chunked."""
    try:
        length = req.content_length
    except falcon.HTTPError:  # a malformed Content-Length
        return None
    if length is not None:
        return int(length)
    return None if req.get_header("Transfer-Encoding") else 0


def _declared_length(resp: Any) -> int | None:
    value = resp.get_header("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _bodiless(req: Any, status: int) -> bool:
    return req.method == "HEAD" or status < 200 or status in _BODILESS


def response_size(req: Any, resp: Any, status: int) -> int | None:
    """Bytes of the response body (the serialized media is cached, so Falcon does not render it twice)."""
    if _bodiless(req, status):
        return 0
    if resp.stream is not None:
        return _declared_length(resp)
    try:
        body = resp.render_body()
    except Exception:  # Falcon raises it again when it renders the body itself
        return None
    return len(body) if body else 0


async def response_size_async(req: Any, resp: Any, status: int) -> int | None:
    if _bodiless(req, status):
        return 0
    if resp.stream is not None or getattr(resp, "sse", None) is not None:
        return _declared_length(resp)
    try:
        body = await resp.render_body()
    except Exception:
        return None
    return len(body) if body else 0


class MetricsMiddleware:
    """Time every request that is not excluded, count it in flight, record its sizes."""

    def __init__(self, http: HttpMetrics, paths: PathFilter) -> None:
        self.http = http
        self._exact = paths.exact
        self._prefixes = paths.prefixes

    def process_request(self, req: Any, resp: Any) -> None:
        path = req.path
        if path in self._exact or (self._prefixes and path.startswith(self._prefixes)):
            return
        setattr(req.context, CONTEXT_KEY, self.http.begin(req.method, req.scheme))

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        timer = getattr(req.context, CONTEXT_KEY, None)
        if timer is None:
            return
        status = resp.status_code
        self.http.end(timer, req.uri_template, status, request_size(req), response_size(req, resp, status))

    async def process_request_async(self, req: Any, resp: Any) -> None:
        path = req.path
        if path in self._exact or (self._prefixes and path.startswith(self._prefixes)):
            return
        setattr(req.context, CONTEXT_KEY, self.http.begin(req.method, req.scheme))

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        timer = getattr(req.context, CONTEXT_KEY, None)
        if timer is None:
            return
        status = resp.status_code
        size = await response_size_async(req, resp, status)
        self.http.end(timer, req.uri_template, status, request_size(req), size)


class MetricsResource:
    """``GET /metrics``: Prometheus text format (OpenMetrics when the scraper's ``Accept`` asks for it).

    A plain sync responder: under ASGI it runs on the thread pool, as the
    scrape reads files and may query the database.
    """

    def __init__(self, metrics: MetricsRegistry) -> None:
        self.metrics = metrics

    def on_get(self, req: Any, resp: Any) -> None:
        body, content_type = self.metrics.render(req.get_header("Accept"))
        resp.data = body
        resp.content_type = content_type
        resp.cache_control = ["no-store"]
