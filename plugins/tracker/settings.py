"""The ``[tracker]`` settings section (``APP_TRACKER__*``), validated by attrs."""

from __future__ import annotations

import attrs
from attrs import validators as v

from taskman import settings_section


@settings_section("tracker")
@attrs.frozen
class TrackerSettings:
    """How long idempotency keys are remembered."""

    idempotency_ttl_hours: int = attrs.field(
        default=24,
        validator=[v.instance_of(int), v.ge(1), v.le(720)],
        metadata={"help": "a POST retried with the same Idempotency-Key within this many hours is replayed"},
    )
