"""HTTP server metrics after the OpenTelemetry HTTP semantic conventions, rendered for Prometheus.

Plain Python: the middleware in :mod:`.web` hands over method, scheme,
route template, status and sizes; nothing here knows Falcon.

==========================================  =========  ===========================================
metric                                      type       labels
==========================================  =========  ===========================================
``http_server_request_duration_seconds``    histogram  method, route, status code, scheme
``http_server_active_requests``             gauge      method, scheme
``http_server_request_body_size_bytes``     histogram  method, route, status code, scheme
``http_server_response_body_size_bytes``    histogram  method, route, status code, scheme
==========================================  =========  ===========================================

The OpenTelemetry attribute ``http.request.method`` becomes the Prometheus
label ``http_request_method``, and so on.  Label values stay low-cardinality:
the route is the template (``/things/{id}``) or :data:`UNMATCHED_ROUTE`,
never the raw path; a method outside the standard set is ``_OTHER``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import MetricsRegistry

#: ``http_route`` of a request that matched no route (the raw path would explode cardinality).
UNMATCHED_ROUTE = "<unmatched>"

#: ``http_request_method`` of a method outside :data:`KNOWN_METHODS`, as the conventions say.
OTHER_METHOD = "_OTHER"

KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"})

REQUEST_DURATION = "http_server_request_duration_seconds"
ACTIVE_REQUESTS = "http_server_active_requests"
REQUEST_BODY_SIZE = "http_server_request_body_size_bytes"
RESPONSE_BODY_SIZE = "http_server_response_body_size_bytes"

METHOD = "http_request_method"
ROUTE = "http_route"
STATUS = "http_response_status_code"
SCHEME = "url_scheme"

_REQUEST_LABELS = (METHOD, ROUTE, STATUS, SCHEME)
_ACTIVE_LABELS = (METHOD, SCHEME)


def normalize_method(method: str) -> str:
    """The method itself when standard, else ``_OTHER``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


class PathFilter:
    """Which request paths the HTTP metrics skip: exact paths, or prefixes written with a trailing ``*``."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self.exact = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def excluded(self, path: str) -> bool:
        return path in self.exact or (bool(self.prefixes) and path.startswith(self.prefixes))


class Timer:
    """What :meth:`HttpMetrics.begin` hands back and :meth:`HttpMetrics.end` takes."""

    __slots__ = ("active", "method", "scheme", "start")

    def __init__(self, start: float, method: str, scheme: str, active: Any) -> None:
        self.start = start
        self.method = method
        self.scheme = scheme
        self.active = active


class HttpMetrics:
    """The four HTTP instruments, with the labelled children cached for the hot path."""

    def __init__(
        self,
        metrics: MetricsRegistry,
        *,
        duration_buckets: Iterable[float],
        size_buckets: Iterable[float],
    ) -> None:
        self.duration = metrics.histogram(
            REQUEST_DURATION,
            "Duration of HTTP server requests, in seconds (OpenTelemetry http.server.request.duration).",
            _REQUEST_LABELS,
            buckets=tuple(duration_buckets),
        )
        self.active = metrics.gauge(
            ACTIVE_REQUESTS,
            "Number of HTTP server requests in flight (OpenTelemetry http.server.active_requests).",
            _ACTIVE_LABELS,
            multiprocess_mode="livesum",
        )
        sizes = tuple(size_buckets)
        self.request_size = metrics.histogram(
            REQUEST_BODY_SIZE,
            "Size of HTTP server request bodies, in bytes (OpenTelemetry http.server.request.body.size).",
            _REQUEST_LABELS,
            buckets=sizes,
        )
        self.response_size = metrics.histogram(
            RESPONSE_BODY_SIZE,
            "Size of HTTP server response bodies, in bytes (OpenTelemetry http.server.response.body.size).",
            _REQUEST_LABELS,
            buckets=sizes,
        )
        # Children per label set: .labels() validates and locks on every call.
        self._active_children: dict[tuple[str, str], Any] = {}
        self._request_children: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}

    def begin(self, method: str, scheme: str) -> Timer:
        """A request enters: count it in flight and start its clock."""
        method = method if method in KNOWN_METHODS else OTHER_METHOD
        key = (method, scheme)
        active = self._active_children.get(key)
        if active is None:
            active = self._active_children[key] = self.active.labels(method, scheme)
        active.inc()
        return Timer(time.perf_counter(), method, scheme, active)

    def end(
        self,
        timer: Timer,
        route: str | None,
        status: int,
        request_size: int | None,
        response_size: int | None,
    ) -> None:
        """The response is ready: record duration and sizes (``None`` = unknown, not observed)."""
        elapsed = time.perf_counter() - timer.start
        timer.active.dec()
        key = (timer.method, route or UNMATCHED_ROUTE, str(status), timer.scheme)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.duration.labels(*key),
                self.request_size.labels(*key),
                self.response_size.labels(*key),
            )
        duration, request, response = children
        duration.observe(elapsed)
        if request_size is not None:
            request.observe(request_size)
        if response_size is not None:
            response.observe(response_size)
