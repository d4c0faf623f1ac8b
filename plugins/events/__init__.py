"""events: a transactional outbox, the change feed and each record's activity.

Every domain event a resource plugin records (``runtime.record_events``,
the core's ``taskman_record_events`` hook) is written in the transaction of
its change (:mod:`.outbox`): a rolled-back change leaves none, a committed
one always has its events, with increasing ids in commit order.  The
listeners (``taskman_event``) are fed from what committed, when the
responder returns; an event whose worker died first is delivered by any
worker's background round.  ``GET /api/v1/events`` is the change feed and
each record kind a plugin declares gets ``.../activity`` (:mod:`.web`).
Durable consumers (``taskman_event_consumers``, the ``webhooks`` plugin)
get every event once, in order.  See docs/events.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import taskman
from taskman import hookimpl

from . import hookspecs, openapi
from .outbox import Outbox, recording_actor
from .settings import EventsSettings
from .web import FEED_PATH, ActivityResource, FeedResource

__all__ = ["EventsSettings", "Outbox", "outbox"]

taskman_hookspecs = hookspecs

log = logging.getLogger("taskman.events")


def outbox(runtime: taskman.Runtime) -> Outbox:
    """This app's outbox (made on first use)."""
    return runtime.component(Outbox, lambda: Outbox(runtime, runtime.settings(EventsSettings), _subjects(runtime)))


def _subjects(runtime: taskman.Runtime) -> Callable[[str, dict[str, Any]], tuple[str, str] | None]:
    def subject_of(name: str, payload: dict[str, Any]) -> tuple[str, str] | None:
        found = runtime.plugins.call_first("taskman_event_subject", name=name, payload=payload)
        if found is None:
            return None
        if isinstance(found, (tuple, list)) and len(found) == 2 and all(isinstance(x, str) for x in found):
            return (found[0], found[1])
        # Recorded without a subject: a plugin's bad answer must not undo the change it describes.
        log.error("event_subject_invalid", extra={"event": name, "subject": repr(found)[:200]})
        return None

    return subject_of


class _ActivityRoute:
    def __init__(self, plugin: str, kind: str, route: str, tag: str, exists: Callable[[str], bool] | None) -> None:
        self.plugin, self.kind, self.route, self.tag, self.exists = plugin, kind, route, tag, exists


def _activity_routes(runtime: taskman.Runtime) -> list[_ActivityRoute]:
    found: list[_ActivityRoute] = []
    kinds: dict[str, str] = {}
    for plugin, declared in runtime.plugins.call_each("taskman_activity_routes"):
        for item in declared or ():
            if not isinstance(item, Mapping) or not all(isinstance(item.get(k), str) for k in ("kind", "route")):
                raise runtime.plugins.error(
                    plugin, f"activity route {item!r} needs a kind and a route", "taskman_activity_routes"
                )
            kind = item["kind"]
            if kind in kinds:
                raise runtime.plugins.error(
                    plugin,
                    f"activity of {kind!r} is already declared by plugin {kinds[kind]!r}",
                    "taskman_activity_routes",
                )
            if "{" not in item["route"]:
                raise runtime.plugins.error(
                    plugin, f"activity route {item['route']} has no record id field", "taskman_activity_routes"
                )
            exists = item.get("exists")
            kinds[kind] = plugin
            found.append(
                _ActivityRoute(
                    plugin, kind, item["route"], str(item.get("tag") or kind), exists if callable(exists) else None
                )
            )
    return found


@hookimpl
def taskman_settings() -> type:
    return EventsSettings


@hookimpl
def taskman_migrations() -> Path:
    return Path(__file__).parent / "migrations"


@hookimpl
def taskman_record_events(runtime: taskman.Runtime, events: Sequence[tuple[str, dict[str, Any]]]) -> Callable[[], None]:
    return outbox(runtime).record(events)


@hookimpl
def taskman_responder_wrappers() -> list[Any]:
    return [recording_actor]


@hookimpl
def taskman_routes(runtime: taskman.Runtime) -> list[tuple[str, object]]:
    def get() -> Outbox:
        return outbox(runtime)

    routes: list[tuple[str, object]] = [(FEED_PATH, FeedResource(get))]
    for declared in _activity_routes(runtime):
        field = openapi._openapi_template(declared.route)[1]
        routes.append((declared.route, ActivityResource(get, declared.kind, field, declared.exists)))
    return routes


@hookimpl
def taskman_access(runtime: taskman.Runtime) -> dict[str, str]:
    """For the auth plugin: reading the feed and any activity needs the ``read`` scope."""
    return {FEED_PATH: "read", **{declared.route: "read" for declared in _activity_routes(runtime)}}


@hookimpl
def taskman_openapi(runtime: taskman.Runtime) -> dict[str, Any]:
    max_wait = runtime.settings(EventsSettings).max_wait
    return openapi.fragment(((d.kind, d.route, d.tag) for d in _activity_routes(runtime)), max_wait)


@hookimpl
def taskman_startup(runtime: taskman.Runtime) -> None:
    box = outbox(runtime)
    consumers = {
        name: (plugin, consume)
        for plugin, declared in runtime.plugins.call_each("taskman_event_consumers")
        for name, consume in (declared or {}).items()
    }
    box.register_consumers(consumers)
    if box.settings.background:
        box.start()


@hookimpl
def taskman_shutdown(runtime: taskman.Runtime) -> None:
    box = runtime.find(Outbox)
    if box is not None:
        box.stop()
