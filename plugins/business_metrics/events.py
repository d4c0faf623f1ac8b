"""The domain events business_metrics understands, and how their payloads are read.

Plain Python, no Falcon, no Prometheus: each ``parse_*`` function turns a
payload into a small record or raises :class:`InvalidEvent` saying which
field is wrong.  docs/business_metrics.md is the contract the tracker
plugin fires against.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

TASK_CREATED = "task.created"
TASK_STATUS_CHANGED = "task.status_changed"
TASK_COMPLETED = "task.completed"
SPRINT_CLOSED = "sprint.closed"
PROJECT_HEALTH_CHANGED = "project.health_changed"

#: Label value for a missing optional field (``priority`` not given, say).
NONE = "none"


class InvalidEvent(ValueError):
    """A payload this plugin cannot use; the message names the field."""


@attrs.frozen
class TaskCreated:
    priority: str


@attrs.frozen
class StatusChanged:
    from_status: str
    to_status: str


@attrs.frozen
class TaskCompleted:
    priority: str
    #: Seconds from creation to completion; ``None`` when the payload gives no ``created_at``.
    duration: float | None


@attrs.frozen
class SprintClosed:
    project: str
    completed_points: float


@attrs.frozen
class HealthChanged:
    project: str
    score: float


def timestamp(value: Any, field: str) -> float:
    """Seconds since the epoch from a ``datetime`` (naive = UTC), an ISO 8601 string or a number."""
    if isinstance(value, bool):
        raise InvalidEvent(f"{field} must be a datetime, an ISO 8601 string or epoch seconds, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidEvent(f"{field} must be finite, got {value!r}")
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent(f"{field} is not an ISO 8601 date-time: {value!r}") from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return float(value.timestamp())
    raise InvalidEvent(f"{field} must be a datetime, an ISO 8601 string or epoch seconds, got {value!r}")


def number(payload: Mapping[str, Any], field: str, *, minimum: float | None = None) -> float:
    value = payload.get(field)
    if value is None:
        raise InvalidEvent(f"{field} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidEvent(f"{field} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidEvent(f"{field} must be >= {minimum:g}, got {value!r}")
    return float(value)


def text(payload: Mapping[str, Any], field: str, *, required: bool = False) -> str:
    """A label value: a string or a number, stripped; ``none`` when absent and optional."""
    value = payload.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidEvent(f"{field} is required")
        return NONE
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"{field} must be a string, got {value!r}")
    return str(value).strip()


def parse_task_created(payload: Mapping[str, Any]) -> TaskCreated:
    return TaskCreated(priority=text(payload, "priority"))


def parse_status_changed(payload: Mapping[str, Any]) -> StatusChanged:
    return StatusChanged(text(payload, "from", required=True), text(payload, "to", required=True))


def parse_task_completed(payload: Mapping[str, Any], now: Callable[[], float] = time.time) -> TaskCompleted:
    duration: float | None = None
    if payload.get("duration_seconds") is not None:
        duration = number(payload, "duration_seconds", minimum=0)
    elif payload.get("created_at") is not None:
        created = timestamp(payload["created_at"], "created_at")
        completed = now() if payload.get("completed_at") is None else timestamp(payload["completed_at"], "completed_at")
        duration = completed - created
        if duration < 0:
            raise InvalidEvent("completed_at is before created_at")
    return TaskCompleted(priority=text(payload, "priority"), duration=duration)


def parse_sprint_closed(payload: Mapping[str, Any]) -> SprintClosed:
    return SprintClosed(text(payload, "project_id", required=True), number(payload, "completed_points", minimum=0))


def parse_health_changed(payload: Mapping[str, Any]) -> HealthChanged:
    return HealthChanged(text(payload, "project_id", required=True), number(payload, "score"))
