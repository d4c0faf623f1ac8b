"""The ``[tracker]`` settings section (``APP_TRACKER__*``), validated by attrs."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import validators as v

from taskman import settings_section

from .workflow import DEFAULT_TRANSITIONS, parse_transitions


def _check_transitions(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    parse_transitions(value)  # its ValueError names the entry or the status at fault


@settings_section("tracker")
@attrs.frozen
class TrackerSettings:
    """How long idempotency keys are remembered; the task workflow."""

    idempotency_ttl_hours: int = attrs.field(
        default=24,
        validator=[v.instance_of(int), v.ge(1), v.le(720)],
        metadata={"help": "a POST retried with the same Idempotency-Key within this many hours is replayed"},
    )
    transitions: tuple[str, ...] = attrs.field(
        default=DEFAULT_TRANSITIONS,
        validator=_check_transitions,
        metadata={
            "help": "the task workflow: 'from -> to | to' per status that can be left (comma-separated in the "
            "environment); every status reachable from new, and able to reach done or dropped"
        },
    )

    def transition_table(self) -> dict[str, tuple[str, ...]]:
        return parse_transitions(self.transitions)
