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
from typing import TYPE_CHECKING, Any

from taskman import hookimpl
from taskman.db import database

from .recorder import BusinessMetrics
from .settings import BusinessMetricsSettings

if TYPE_CHECKING:
    from ..metrics.registry import MetricsRegistry

__all__ = ["BusinessMetrics", "BusinessMetricsSettings", "current"]

SECTION = "business_metrics"

log = logging.getLogger("taskman.business_metrics")

# The metrics of the app being served in this process; ``taskman_event``
# carries no app, and events only come from the app this process serves.
_current: BusinessMetrics | None = None


def current() -> BusinessMetrics | None:
    """The business metrics events update in this process, or ``None`` (the metrics plugin is disabled)."""
    return _current


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, BusinessMetricsSettings)


@hookimpl
def taskman_configure(config: Any) -> None:
    # A new app: forget the previous one's metrics until its metrics plugin hands
    # over new ones (its taskman_configure runs last and calls taskman_metrics).
    global _current
    _current = None


@hookimpl
def taskman_metrics(metrics: MetricsRegistry, config: Any) -> None:
    global _current
    _current = BusinessMetrics(metrics, config.section(SECTION), database)


@hookimpl
def taskman_startup(app: Any, config: Any) -> None:
    if _current is None:
        log.warning(
            "business_metrics_inactive",
            extra={"reason": "no metrics plugin called taskman_metrics (is the metrics plugin disabled?)"},
        )


@hookimpl
def taskman_event(name: str, payload: dict[str, Any]) -> None:
    metrics = _current
    if metrics is not None:
        metrics.handle(name, payload)
