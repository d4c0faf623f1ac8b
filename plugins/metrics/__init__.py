"""metrics: Prometheus metrics on ``GET /metrics``, exact across worker processes.

* HTTP server metrics after the OpenTelemetry semantic conventions
  (:mod:`.http`), fed by a middleware (:mod:`.web`);
* process metrics (CPU, memory, file descriptors);
* whatever other plugins declare through the ``taskman_metrics`` hook
  (:mod:`.hookspecs`), such as ``business_metrics``.

Under ``taskman serve`` the workers share prometheus-client's multiprocess
files (:mod:`.multiprocess`): ``taskman_serve`` empties the folder and
exports ``PROMETHEUS_MULTIPROC_DIR``; each worker folds its files into the
merged ones when it stops.  Elsewhere the app keeps a registry of its own.
See docs/metrics.md.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs

import taskman
from taskman import hookimpl, staged

from . import hookspecs
from .http import HttpMetrics, PathFilter
from .multiprocess import ENV_VAR, prepare_directory, reap_dead_processes, retire_process
from .registry import MetricsRegistry, multiprocess_directory, renew_multiprocess_values, use_multiprocess_values
from .settings import MetricsSettings
from .web import MetricsMiddleware, MetricsResource

__all__ = ["MetricsRegistry", "MetricsSettings", "MetricsState", "metrics_state"]

taskman_hookspecs = hookspecs

#: ``taskman_workers``: a ``livesum`` gauge each worker sets to 1; its files also tell who the workers are.
WORKERS = "taskman_workers"
#: Failures the core contained (a raising event listener or log processor), by plugin and hook.
PLUGIN_FAILURES = "taskman_plugin_failures_total"

log = logging.getLogger("taskman.metrics")


@attrs.define(eq=False)
class MetricsState:
    """Everything the metrics plugin built for one app (kept on its runtime)."""

    settings: MetricsSettings
    metrics: MetricsRegistry
    http: HttpMetrics
    paths: PathFilter
    workers: Any
    plugin_failures: Any


def build_state(runtime: taskman.Runtime) -> MetricsState:
    settings = runtime.settings(MetricsSettings)
    directory = multiprocess_directory()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    use_multiprocess_values(directory is not None)
    metrics = MetricsRegistry(directory)
    http = HttpMetrics(metrics, duration_buckets=settings.duration_buckets, size_buckets=settings.size_buckets)
    workers = metrics.gauge(
        WORKERS, "Worker processes serving the app (1 outside taskman serve).", multiprocess_mode="livesum"
    )
    failures = metrics.counter(
        PLUGIN_FAILURES,
        "Plugin failures the core contained (the request went on), by plugin and hook.",
        ["plugin", "hook"],
    )
    if settings.process_metrics:
        metrics.add_process_collectors()
    return MetricsState(settings, metrics, http, PathFilter(settings.exclude), workers, failures)


def metrics_state(runtime: taskman.Runtime) -> MetricsState:
    """The metrics state of this app (built on first use)."""
    return runtime.component(MetricsState, lambda: build_state(runtime))


# -- the serve parent ---------------------------------------------------------


def _remove_private_directory(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # forked workers inherit atexit handlers: only the serve parent removes it
        shutil.rmtree(path, ignore_errors=True)


def serve_directory(configured: str | None) -> Path:
    """Pick, create and empty the workers' multiprocess folder, and export it for them.

    ``metrics.multiprocess_dir``, else ``$PROMETHEUS_MULTIPROC_DIR``, else a
    private temporary folder removed when the serve parent exits.
    """
    chosen = configured or os.environ.get(ENV_VAR)
    if chosen:
        path = prepare_directory(chosen)
    else:
        path = prepare_directory(tempfile.mkdtemp(prefix="taskman-metrics-"))
        atexit.register(_remove_private_directory, path, os.getpid())
    os.environ[ENV_VAR] = str(path)
    # uvicorn with one worker serves from this very process: files opened
    # before the folder was emptied must not be reused.
    renew_multiprocess_values()
    return path


# -- hooks ----------------------------------------------------------------------


@hookimpl
def taskman_settings() -> type:
    return MetricsSettings


@hookimpl(trylast=True)
def taskman_configure(runtime: taskman.Runtime) -> None:
    # Last, so that other plugins' taskman_configure ran before their taskman_metrics.
    state = runtime.component(MetricsState, lambda: build_state(runtime))
    runtime.plugins.call_each("taskman_metrics", metrics=state.metrics, config=runtime.config)


@hookimpl
def taskman_serve(runtime: taskman.Runtime, workers: int) -> None:
    path = serve_directory(runtime.settings(MetricsSettings).multiprocess_dir)
    log.info("metrics_multiprocess_dir", extra={"path": str(path), "workers": workers})


@hookimpl
def taskman_middleware(runtime: taskman.Runtime) -> list[object]:
    state = metrics_state(runtime)
    # An observer: it sees the response as sent (after compression), 401s, 413s and 429s included.
    return [staged(MetricsMiddleware(state.http, state.paths), "observe", after=("request_id",))]


@hookimpl
def taskman_routes(runtime: taskman.Runtime) -> list[tuple[str, object]]:
    state = metrics_state(runtime)
    return [(state.settings.path, MetricsResource(state.metrics))]


@hookimpl
def taskman_access(runtime: taskman.Runtime) -> dict[str, str]:
    """For the auth plugin: the scrape endpoint is open or needs a read token, as ``auth.metrics_access`` says."""
    return {runtime.settings(MetricsSettings).path: "metrics"}


@hookimpl
def taskman_plugin_failed(runtime: taskman.Runtime, plugin: str, hook: str) -> None:
    metrics_state(runtime).plugin_failures.labels(plugin=plugin, hook=hook).inc()


@hookimpl
def taskman_startup(runtime: taskman.Runtime) -> None:
    state = metrics_state(runtime)
    if state.metrics.directory is not None:
        # A worker that replaces a killed one retires the dead one's files.
        reap_dead_processes(state.metrics.directory)
    state.workers.set(1)


@hookimpl
def taskman_shutdown(runtime: taskman.Runtime) -> None:
    state = metrics_state(runtime)
    if state.metrics.directory is not None:
        retire_process(state.metrics.directory)
        # Should this process build another app, its values go to new files.
        renew_multiprocess_values()
    else:
        state.workers.set(0)


@hookimpl
def taskman_openapi(runtime: taskman.Runtime) -> dict[str, Any]:
    """The scrape endpoint, for the openapi plugin (never called while it is disabled)."""
    from . import openapi

    return openapi.fragment(runtime.settings(MetricsSettings).path)
