"""The hooks the events plugin adds; documented in docs/events.md.

Resource plugins implement the first two so their changes show as each
record's activity; a plugin that follows the change feed durably (the
``webhooks`` plugin) implements the third.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskman import hookspec

if TYPE_CHECKING:
    from taskman import Runtime


@hookspec(firstresult=True)
def taskman_event_subject(runtime: Runtime, name: str, payload: dict[str, Any]) -> tuple[str, str] | None:
    """Name the record whose activity an event belongs to, as ``(kind, record_id)``; None: no record's."""


@hookspec
def taskman_activity_routes(runtime: Runtime) -> Sequence[Mapping[str, Any]] | None:
    """Declare activity routes: ``{"kind", "route", "tag", "exists"}`` for each kind of record with a history."""


@hookspec
def taskman_event_consumers(
    runtime: Runtime,
) -> Mapping[str, Callable[[list[dict[str, Any]]], Callable[[], None] | None]] | None:
    """Return durable consumers of the change feed, ``{name: consume}``: each gets every event once, in order."""
