"""The business metrics themselves, and what each event does to them.

Plain Python: :class:`BusinessMetrics` declares its metrics on what the metrics
plugin hands to ``taskman_metrics`` (:class:`MetricsDeclarations`) and
updates them from :meth:`BusinessMetrics.handle`; nothing here knows Falcon.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from . import events
from .active import ActiveTasksCollector
from .settings import BusinessMetricsSettings


class MetricsDeclarations(Protocol):
    """What this plugin needs of the registry the metrics plugin passes to ``taskman_metrics``."""

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter: ...

    def gauge(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, multiprocess_mode: str = ...
    ) -> Gauge: ...

    def histogram(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> Histogram: ...

    def collector(self, collector: Collector) -> None: ...


log = logging.getLogger("taskman.business_metrics")

#: Label value replacing values beyond the per-label limit.
OTHER = "other"
MAX_LABEL_LENGTH = 64


class LabelLimiter:
    """Keep each label's distinct values bounded: after ``limit`` of them, new ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: str) -> str:
        value = value[:MAX_LABEL_LENGTH]
        seen = self._seen.get(label)
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) >= self.limit:
                return OTHER
            seen.add(value)
            return value


class BusinessMetrics:
    """``tasks_created_total``, ``tasks_completed_total``, ``task_status_transitions_total``,
    ``task_duration_seconds``, ``project_health_score``, ``sprint_velocity``, ``active_tasks``
    and ``business_events_rejected_total``.
    """

    def __init__(self, metrics: MetricsDeclarations, settings: BusinessMetricsSettings, database: Any) -> None:
        self.created = metrics.counter("tasks_created_total", "Tasks created, by priority.", ["priority"])
        self.completed = metrics.counter("tasks_completed_total", "Tasks completed, by priority.", ["priority"])
        self.transitions = metrics.counter(
            "task_status_transitions_total", "Task status changes, by previous and new status.", ["from", "to"]
        )
        self.duration = metrics.histogram(
            "task_duration_seconds",
            "Time from a task's creation to its completion, in seconds.",
            ["priority"],
            buckets=settings.duration_buckets,
        )
        self.health = metrics.gauge(
            "project_health_score", "Latest health score reported for each project.", ["project"]
        )
        self.velocity = metrics.gauge(
            "sprint_velocity", "Points completed in each project's most recently closed sprint.", ["project"]
        )
        self.rejected = metrics.counter(
            "business_events_rejected_total", "Business events ignored because their payload was invalid.", ["event"]
        )
        self.active = ActiveTasksCollector(
            database, settings.tasks_table, settings.status_column, settings.terminal_statuses
        )
        metrics.collector(self.active)
        self.label = LabelLimiter(settings.label_values)
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            events.TASK_CREATED: self._task_created,
            events.TASK_STATUS_CHANGED: self._status_changed,
            events.TASK_COMPLETED: self._task_completed,
            events.SPRINT_CLOSED: self._sprint_closed,
            events.PROJECT_HEALTH_CHANGED: self._health_changed,
        }

    def handle(self, name: str, payload: Mapping[str, Any]) -> bool:
        """Apply one event; ``False`` if it is not a business event.  Never raises on a bad payload."""
        handler = self._handlers.get(name)
        if handler is None:
            return False
        try:
            handler(payload)
        except events.InvalidEvent as exc:
            self.rejected.labels(name).inc()
            log.warning("business_event_rejected", extra={"event": name, "reason": str(exc)})
        return True

    def _task_created(self, payload: Mapping[str, Any]) -> None:
        event = events.parse_task_created(payload)
        self.created.labels(self.label("priority", event.priority)).inc()

    def _status_changed(self, payload: Mapping[str, Any]) -> None:
        event = events.parse_status_changed(payload)
        self.transitions.labels(self.label("status", event.from_status), self.label("status", event.to_status)).inc()

    def _task_completed(self, payload: Mapping[str, Any]) -> None:
        event = events.parse_task_completed(payload)
        priority = self.label("priority", event.priority)
        self.completed.labels(priority).inc()
        if event.duration is not None:
            self.duration.labels(priority).observe(event.duration)

    def _sprint_closed(self, payload: Mapping[str, Any]) -> None:
        event = events.parse_sprint_closed(payload)
        self.velocity.labels(self.label("project", event.project)).set(event.completed_points)

    def _health_changed(self, payload: Mapping[str, Any]) -> None:
        event = events.parse_health_changed(payload)
        self.health.labels(self.label("project", event.project)).set(event.score)
