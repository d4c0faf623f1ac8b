"""business_metrics: task, sprint and project metrics from domain events, on the metrics plugin's ``/metrics``.

It listens to ``taskman_event`` (events and payloads: docs/business_metrics.md)
and declares its metrics through the metrics plugin's ``taskman_metrics``
hook, so they share its endpoint and its multiprocess handling.
``active_tasks`` is counted in the database at scrape time.

Without the metrics plugin (``APP_PLUGINS__DISABLE=metrics``) nobody calls
``taskman_metrics``: events are accepted and ignored, start-up logs one
warning, and the app runs as usual.  That is why it does not declare
``taskman_requires = ("metrics",)``: switching metrics off must not stop
the app.
"""

from __future__ import annotations

import logging
from typing import Any

import taskman
from taskman import hookimpl

from .recorder import BusinessMetrics, MetricsDeclarations
from .settings import BusinessMetricsSettings

__all__ = ["BusinessMetrics", "BusinessMetricsSettings", "current"]

log = logging.getLogger("taskman.business_metrics")


class _Recorder:
    """This app's business metrics, once the metrics plugin handed over its registry (None without it)."""

    metrics: BusinessMetrics | None = None


def _recorder(runtime: taskman.Runtime) -> _Recorder:
    return runtime.component(_Recorder, _Recorder)


def current(runtime: taskman.Runtime) -> BusinessMetrics | None:
    """The business metrics events update in this app, or ``None`` (the metrics plugin is disabled)."""
    return _recorder(runtime).metrics


@hookimpl
def taskman_settings() -> type:
    return BusinessMetricsSettings


@hookimpl
def taskman_metrics(runtime: taskman.Runtime, metrics: MetricsDeclarations) -> None:
    _recorder(runtime).metrics = BusinessMetrics(metrics, runtime.settings(BusinessMetricsSettings), taskman.database)


@hookimpl
def taskman_startup(runtime: taskman.Runtime) -> None:
    if current(runtime) is None:
        log.warning(
            "business_metrics_inactive",
            extra={"reason": "no metrics plugin called taskman_metrics (is the metrics plugin disabled?)"},
        )


@hookimpl
def taskman_event(runtime: taskman.Runtime, name: str, payload: dict[str, Any]) -> None:
    metrics = current(runtime)
    if metrics is not None:
        metrics.handle(name, payload)
