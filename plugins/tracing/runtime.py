"""The process's tracer provider: built once per process, shared, flushed on the last release.

Plain Python, no Falcon.  :func:`setup` is what the plugin's start-up hook
calls in every worker; its ``exporter`` argument is the seam tests use to
collect spans in memory instead of sending them over OTLP.

The provider is the plugin's own, not OpenTelemetry's global one (which can
be set only once per process): that lets a forked worker, or a test, build a
fresh provider without fighting the global.  Spans still join whatever trace
is current in :mod:`opentelemetry.context`.
"""

from __future__ import annotations

import logging
import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from .settings import TracingSettings, traces_url

log = logging.getLogger("taskman.tracing")

INSTRUMENTATION_NAME = "taskman_plugins.tracing"


def otlp_exporter(settings: TracingSettings) -> SpanExporter:
    """The OTLP/HTTP (protobuf) exporter for ``settings.otlp_endpoint``.

    Headers, compression and TLS files come from the standard
    ``OTEL_EXPORTER_OTLP_TRACES_*`` / ``OTEL_EXPORTER_OTLP_*`` variables, so
    collector credentials never pass through taskman's configuration.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint), timeout=settings.export_timeout)


class TracingRuntime:
    """One tracer provider with a batch processor (and its export thread) for this process."""

    def __init__(self, settings: TracingSettings, *, service_name: str, exporter: SpanExporter | None = None) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.exporter = exporter if exporter is not None else otlp_exporter(settings)
        self.processor = BatchSpanProcessor(self.exporter)
        # shutdown_on_exit=False: the plugin's shut-down hook owns the flush
        # (ASGI lifespan, or the core's atexit under WSGI).
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "process.pid": self.pid}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(self.processor)
        self.tracer: trace.Tracer = self.provider.get_tracer(INSTRUMENTATION_NAME)
        self.closed = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now; False if the runtime is closed."""
        return not self.closed and self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush what is queued and stop the export thread (idempotent)."""
        if not self.closed:
            self.closed = True
            self.provider.shutdown()


_lock = threading.Lock()
_runtime: TracingRuntime | None = None
_users = 0


def setup(
    settings: TracingSettings, *, service_name: str = "taskman", exporter: SpanExporter | None = None
) -> TracingRuntime:
    """Return this process's runtime, building it on the first call; every call needs a :func:`release`.

    Idempotent per process: later calls get the same runtime (the first
    call's settings and exporter win).  A runtime inherited through ``fork``
    is left alone (its spans belong to the parent) and the child builds its
    own provider and export thread.
    """
    global _runtime, _users
    with _lock:
        if _runtime is not None and (_runtime.pid != os.getpid() or _runtime.closed):
            _runtime, _users = None, 0
        if _runtime is None:
            _runtime = TracingRuntime(settings, service_name=settings.service_name or service_name, exporter=exporter)
            log.info("tracing_started", extra={"pid": _runtime.pid})
        _users += 1
        return _runtime


def release() -> None:
    """Give back one :func:`setup`; the last one flushes and shuts the runtime down."""
    global _runtime, _users
    with _lock:
        runtime = _runtime
        if runtime is None or runtime.pid != os.getpid():
            return
        _users -= 1
        if _users > 0:
            return
        _runtime, _users = None, 0
    runtime.shutdown()


def active() -> TracingRuntime | None:
    """The runtime serving this process, or None when tracing is not running here."""
    runtime = _runtime
    if runtime is None or runtime.closed or runtime.pid != os.getpid():
        return None
    return runtime
