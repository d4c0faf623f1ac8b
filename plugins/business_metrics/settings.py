"""The ``[business_metrics]`` settings section (``APP_BUSINESS_METRICS__*``), validated by attrs."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

import attrs
from attrs import validators as v

from taskman import setting, settings_section


def check_buckets(instance: object, attribute: attrs.Attribute, value: Sequence[float]) -> None:  # type: ignore[type-arg]
    """Histogram bounds as Prometheus needs them (this plugin's own: plugins share no code, only hooks)."""
    if not value or any(not isinstance(b, (int, float)) or isinstance(b, bool) or not math.isfinite(b) for b in value):
        raise ValueError(f"'{attribute.name}' must list finite numbers: {list(value)!r}")
    if min(value) < 0 or any(a >= b for a, b in itertools.pairwise(value)):
        raise ValueError(f"'{attribute.name}' bounds must be >= 0 and strictly increasing: {list(value)!r}")


#: ``task_duration_seconds`` buckets: 1 minute to 30 days.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
    172800.0,
    345600.0,
    604800.0,
    1209600.0,
    2592000.0,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _check_table(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    parts = value.split(".") if isinstance(value, str) else [""]
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(f"'{attribute.name}' must be a table name, optionally schema-qualified: {value!r}")


def _check_identifier(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"'{attribute.name}' must be a column name (letters, digits, _): {value!r}")


def _check_statuses(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    if any(not isinstance(s, str) or not s for s in value):
        raise ValueError(f"'{attribute.name}' must list non-empty status names: {list(value)!r}")


@settings_section("business_metrics")
@attrs.frozen
class BusinessMetricsSettings:
    """Where ``active_tasks`` counts, how task durations are bucketed, how many label values are kept."""

    tasks_table: str = setting("task", "table of tasks that active_tasks counts (schema.table allowed)", _check_table)
    status_column: str = setting("status", "column holding a task's status", _check_identifier)
    terminal_statuses: tuple[str, ...] = setting(
        ("done", "dropped"), "statuses of finished tasks: every other row (NULL too) is active", _check_statuses
    )
    duration_buckets: tuple[float, ...] = setting(
        DEFAULT_DURATION_BUCKETS, "bucket bounds (seconds) of task_duration_seconds", check_buckets
    )
    label_values: int = setting(
        100,
        "distinct values kept per label (priority, status, project) in each process; later ones become 'other'",
        [v.instance_of(int), v.ge(1), v.le(10_000)],
    )
