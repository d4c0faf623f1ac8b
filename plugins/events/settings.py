"""The ``[events]`` settings section (``APP_EVENTS__*``), validated by attrs."""

from __future__ import annotations

import attrs
from attrs import validators as v

from taskman import setting, settings_section

#: Long polls are bounded below the limits plugin's responder time limit (30 s by default).
MAX_WAIT_SECONDS = 25


@settings_section("events")
@attrs.frozen
class EventsSettings:
    """Retention, redelivery and the background work of the outbox."""

    retention_days: int = setting(
        30, "events older than this many days are pruned (in the background)", [v.instance_of(int), v.ge(1), v.le(3650)]
    )
    redeliver_after: float = setting(
        30.0,
        "seconds after which an event whose listeners never heard of it (its worker died) is delivered again",
        [v.instance_of(float), v.ge(1.0), v.le(3600.0)],
    )
    poll_interval: float = setting(
        1.0,
        "seconds between two rounds of the background work (redelivery, feed consumers, pruning) in each worker",
        [v.instance_of(float), v.ge(0.05), v.le(60.0)],
    )
    prune_interval: float = setting(
        600.0, "seconds between two prunings of old events", [v.instance_of(float), v.ge(1.0), v.le(86400.0)]
    )
    background: bool = setting(
        True,
        "run the background work in every worker (turn off only where something else runs it)",
        v.instance_of(bool),
    )
    max_wait: int = setting(
        20,
        "longest long poll of the change feed (wait=), in seconds",
        [v.instance_of(int), v.ge(0), v.le(MAX_WAIT_SECONDS)],
    )
    max_waiting: int = setting(
        2,
        "long polls one worker lets wait at once (each holds a thread); the others answer at once",
        [v.instance_of(int), v.ge(0), v.le(64)],
    )
