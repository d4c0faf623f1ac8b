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
import weakref
from pathlib import Path
from typing import Any

import attrs

from taskman import hookimpl

from . import hookspecs
from .http import HttpMetrics, PathFilter
from .multiprocess import ENV_VAR, prepare_directory, reap_dead_processes, retire_process
from .registry import MetricsRegistry, multiprocess_directory, renew_multiprocess_values, use_multiprocess_values
from .settings import MetricsSettings
from .web import MetricsMiddleware, MetricsResource

__all__ = ["MetricsRegistry", "MetricsSettings", "MetricsState", "metrics_state"]

taskman_hookspecs = hookspecs

SECTION = "metrics"

#: ``taskman_workers``: a ``livesum`` gauge each worker sets to 1; its files also tell who the workers are.
WORKERS = "taskman_workers"

log = logging.getLogger("taskman.metrics")


@attrs.define(eq=False)
class MetricsState:
    """Everything the metrics plugin built for one app."""

    settings: MetricsSettings
    metrics: MetricsRegistry
    http: HttpMetrics
    paths: PathFilter
    workers: Any


# One state per app, found by the app's config object (every hook receives it);
# an entry goes when its config is garbage collected.
_states: dict[int, MetricsState] = {}


def build_state(config: Any) -> MetricsState:
    settings: MetricsSettings = config.section(SECTION)
    directory = multiprocess_directory()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    use_multiprocess_values(directory is not None)
    metrics = MetricsRegistry(directory)
    http = HttpMetrics(metrics, duration_buckets=settings.duration_buckets, size_buckets=settings.size_buckets)
    workers = metrics.gauge(
        WORKERS, "Worker processes serving the app (1 outside taskman serve).", multiprocess_mode="livesum"
    )
    if settings.process_metrics:
        metrics.add_process_collectors()
    state = MetricsState(settings, metrics, http, PathFilter(settings.exclude), workers)
    if _states.get(id(config)) is None:
        weakref.finalize(config, _states.pop, id(config), None)
    _states[id(config)] = state
    return state


def metrics_state(config: Any) -> MetricsState:
    """The metrics state of the app built with ``config`` (built now if that app was never configured)."""
    state = _states.get(id(config))
    return build_state(config) if state is None else state


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
def taskman_settings() -> tuple[str, type]:
    return (SECTION, MetricsSettings)


@hookimpl(trylast=True)
def taskman_configure(config: Any, plugins: Any) -> None:
    # Last, so that other plugins' taskman_configure ran before their taskman_metrics.
    state = build_state(config)
    plugins.call_each("taskman_metrics", metrics=state.metrics, config=config)


@hookimpl
def taskman_serve(config: Any, workers: int) -> None:
    path = serve_directory(config.section(SECTION).multiprocess_dir)
    log.info("metrics_multiprocess_dir", extra={"path": str(path), "workers": workers})


@hookimpl(tryfirst=True)
def taskman_middleware(config: Any) -> list[object]:
    state = metrics_state(config)
    return [MetricsMiddleware(state.http, state.paths)]


@hookimpl
def taskman_routes(config: Any) -> list[tuple[str, object]]:
    state = metrics_state(config)
    return [(state.settings.path, MetricsResource(state.metrics))]


@hookimpl
def taskman_access(config: Any) -> dict[str, str]:
    """For the auth plugin: the scrape endpoint is open or needs a read token, as ``auth.metrics_access`` says."""
    return {metrics_state(config).settings.path: "metrics"}


@hookimpl
def taskman_startup(app: Any, config: Any) -> None:
    state = metrics_state(config)
    if state.metrics.directory is not None:
        # A worker that replaces a killed one retires the dead one's files.
        reap_dead_processes(state.metrics.directory)
    state.workers.set(1)


@hookimpl
def taskman_shutdown(app: Any, config: Any) -> None:
    state = metrics_state(config)
    if state.metrics.directory is not None:
        retire_process(state.metrics.directory)
        # Should this process build another app, its values go to new files.
        renew_multiprocess_values()
    else:
        state.workers.set(0)


@hookimpl
def taskman_openapi(config: Any) -> dict[str, Any]:
    """The scrape endpoint, for the openapi plugin (never called while it is disabled)."""
    from . import openapi

    return openapi.fragment(config.section(SECTION).path)
