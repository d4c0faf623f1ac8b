"""What a request span and a query span look like: plain Python over the OpenTelemetry API.

Attribute names follow the OpenTelemetry semantic conventions for HTTP
servers and database clients.  Nothing here records a query parameter, a
query string, a header other than ``traceparent``/``tracestate`` or an
exception message: those are where secrets hide.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import peewee
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .runtime import active

REQUEST_ID_ATTRIBUTE = "taskman.request_id"
PROPAGATION_HEADERS = ("traceparent", "tracestate")
SUPPRESS_KEY = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")
KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})

_propagator = TraceContextTextMapPropagator()

# -- HTTP server spans ----------------------------------------------------------


def span_name(method: str, route: str | None) -> str:
    """``GET /things/{id}`` for a matched route, ``GET`` otherwise: never the raw path."""
    method = method if method in KNOWN_METHODS else "HTTP"
    return f"{method} {route}" if route else method


def parent_context(headers: Mapping[str, str | None]) -> otel_context.Context:
    """The context an incoming W3C ``traceparent`` (and ``tracestate``) describes.

    Extraction starts from an empty context, never from whatever happens to
    be current in this thread, so a request cannot become the child of
    another.
    """
    carrier = {name: value for name, value in headers.items() if value is not None}
    return _propagator.extract(carrier, context=otel_context.Context())


@attrs.define
class ServerSpan:
    """A request's span and the context token that makes it current until :func:`end_server_span`."""

    span: trace.Span
    token: object


def start_server_span(
    tracer: trace.Tracer, *, method: str, path: str, scheme: str, headers: Mapping[str, str | None]
) -> ServerSpan:
    """Start the SERVER span of a request and make it the current span."""
    attributes: dict[str, Any] = {
        "http.request.method": method if method in KNOWN_METHODS else "_OTHER",
        "url.path": path,
        "url.scheme": scheme,
    }
    if method not in KNOWN_METHODS:
        attributes["http.request.method_original"] = method
    span = tracer.start_span(
        span_name(method, None), context=parent_context(headers), kind=SpanKind.SERVER, attributes=attributes
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    return ServerSpan(span, token)


def end_server_span(
    server_span: ServerSpan, *, method: str, route: str | None, status_code: int, request_id: str | None
) -> None:
    """Name the span by its route, record the outcome, end it and restore the previous context."""
    span = server_span.span
    try:
        if span.is_recording():
            span.update_name(span_name(method, route))
            if route:
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status_code)
            if request_id is not None:
                span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
            if status_code >= 500:
                span.set_attribute("error.type", str(status_code))
                span.set_status(Status(StatusCode.ERROR))
        span.end()
    finally:
        otel_context.detach(server_span.token)  # type: ignore[arg-type]


# -- database client spans -------------------------------------------------------


def db_system(db: Any) -> str:
    if isinstance(db, peewee.SqliteDatabase):
        return "sqlite"
    if isinstance(db, peewee.PostgresqlDatabase):
        return "postgresql"
    return "other_sql"


def db_attributes(db: Any) -> dict[str, Any]:
    """The attributes every query span of ``db`` shares: which system, which database, where."""
    system = db_system(db)
    attributes: dict[str, Any] = {"db.system.name": system, "db.system": system}
    if system == "postgresql":
        params = getattr(db, "connect_params", {}) or {}
        if db.database:
            attributes["db.namespace"] = str(db.database)
        if params.get("host"):
            attributes["server.address"] = str(params["host"])
        if params.get("port"):
            attributes["server.port"] = int(params["port"])
    return attributes


def operation_name(sql: str) -> str | None:
    """The statement's leading keyword (``SELECT``, ``INSERT``...), or None."""
    first = sql.lstrip(" \t\r\n(").split(None, 1)
    word = first[0].upper() if first else ""
    return word if word.isalpha() else None


class _TracedExecuteSql:
    """``execute_sql`` that runs the original inside a CLIENT span; a plain pass-through once disabled."""

    def __init__(self, original: Callable[..., Any], own: Callable[..., Any] | None, attributes: Mapping[str, Any]):
        self.original = original
        self.own = own  # what the instance itself had before (None: the class's method)
        self.attributes = dict(attributes)
        self.enabled = True

    def __call__(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        runtime = active() if self.enabled else None
        # OpenTelemetry's own "suppress instrumentation" flag (exporters set it; so do plugins' background
        # rounds, whose polling is not a request and would flood the traces with root spans).
        if runtime is None or otel_context.get_value(SUPPRESS_KEY):
            return self.original(sql, *args, **kwargs)
        # Parameters (args/kwargs) are never looked at: only the statement text.
        attributes = {**self.attributes, "db.query.text": sql}
        operation = operation_name(sql)
        if operation:
            attributes["db.operation.name"] = operation
        namespace = self.attributes.get("db.namespace")
        name = " ".join(p for p in (operation, namespace) if p) or self.attributes["db.system.name"]
        span = runtime.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        try:
            return self.original(sql, *args, **kwargs)
        except BaseException as exc:
            # The type only: driver messages can quote the parameters.
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()


_wrappers: weakref.WeakKeyDictionary[Any, _TracedExecuteSql] = weakref.WeakKeyDictionary()


def instrument_database(db: Any) -> bool:
    """Trace every statement ``db.execute_sql`` runs; False if it already is.

    Wraps the method on this database object only (an instance attribute),
    so the class, other databases and processes without tracing are
    untouched.  Spans go to the process's :func:`active` runtime and are
    children of the current span.
    """
    wrapper = _wrappers.get(db)
    if wrapper is not None:
        if wrapper.enabled:
            return False
        wrapper.enabled = True
        return True
    wrapper = _TracedExecuteSql(db.execute_sql, vars(db).get("execute_sql"), db_attributes(db))
    db.execute_sql = wrapper
    _wrappers[db] = wrapper
    return True


def uninstrument_database(db: Any) -> None:
    """Undo :func:`instrument_database`.

    The wrapper goes away when it is still the outermost one; if something
    wrapped it since, it stays as a pass-through so that wrapper keeps
    working.
    """
    wrapper = _wrappers.get(db)
    if wrapper is None:
        return
    if vars(db).get("execute_sql") is not wrapper:
        wrapper.enabled = False
        return
    del _wrappers[db]
    if wrapper.own is None:
        del db.execute_sql
    else:
        db.execute_sql = wrapper.own


def is_instrumented(db: Any) -> bool:
    wrapper = _wrappers.get(db)
    return wrapper is not None and wrapper.enabled
