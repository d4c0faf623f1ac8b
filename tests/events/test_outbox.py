"""The outbox: every change's events written in its transaction, the listeners fed from what committed, once.

Each test runs on both flavours and, with ``TASKMAN_TEST_DATABASE_URL``, on
PostgreSQL too.  Killed workers are imitated in-process: a transaction that
commits its events without delivering them is what a worker killed right
after its commit leaves behind.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from taskman_plugins.auth import TokenStore

import taskman
from taskman import hookimpl
from tests.events.conftest import EventsApi


def test_every_change_records_exactly_the_events_the_listeners_hear(api: EventsApi) -> None:
    api.project()
    api.sprint()
    api.task(sprint_id="S-1", estimate_points=3)
    assert api.patch("/tasks/T-1", {"title": "Renamed", "priority": "p1"}).status_code == 200
    api.done("T-1")
    assert api.post("/sprints/S-1/start").status_code == 200
    assert api.post("/sprints/S-1/close").status_code == 200
    stored = api.stored()
    assert stored == api.events, "the outbox holds exactly what the listeners heard, in the same order"
    names = [name for name, _ in stored]
    assert names[:3] == ["project.created", "sprint.created", "project.health_changed"]
    assert names.count("task.updated") == 4  # the patch and the three status moves
    assert names[-2:] == ["sprint.started", "sprint.closed"]
    ids = [event["id"] for event in api.walk()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_an_update_records_each_changed_field_old_and_new(api: EventsApi) -> None:
    api.project()
    api.task(due_at="2026-11-20T10:00:00Z")
    api.patch("/tasks/T-1", {"title": "New title", "due_at": None, "labels": ["x"]})
    updated = [payload for name, payload in api.stored() if name == "task.updated"][-1]
    assert updated["changed"] == ["due_at", "labels", "title"]
    assert updated["changes"] == {
        "due_at": {"old": "2026-11-20T10:00:00.000000Z", "new": None},
        "labels": {"old": [], "new": ["x"]},
        "title": {"old": "Task T-1", "new": "New title"},
    }


def test_a_refused_change_records_nothing(api: EventsApi) -> None:
    api.project()
    before = api.stored()
    assert api.post("/tasks", {"id": "T-1", "title": "x", "project_id": "P-9"}).status_code == 422
    assert api.patch("/projects/P-1", {"name": "y"}, headers={"If-Match": '"7"'}).status_code == 412
    assert api.post("/projects", {"id": "P-1", "name": "A", "mission": "m", "owner": "o"}).status_code == 409
    assert api.stored() == before


class SubjectThatFails:
    """Raises while the outbox records ``task.created``: the transaction, change and events, must roll back."""

    taskman_plugin_name = "failing_subject"

    @hookimpl(tryfirst=True)
    def taskman_event_subject(self, name: str) -> Any:
        if name == "task.created":
            raise RuntimeError("recording failed")
        return None


def test_a_change_whose_events_cannot_be_recorded_rolls_back_whole(make_api: Callable[..., EventsApi]) -> None:
    api = make_api(plugins=(SubjectThatFails(),))
    api.project()
    before = api.stored()
    heard = list(api.events)
    assert api.post("/tasks", {"id": "T-1", "title": "x", "project_id": "P-1"}).status_code == 500
    assert api.get("/tasks/T-1").status_code == 404, "no change without its events"
    assert api.stored() == before and api.events == heard, "and no event without its change"


def test_a_rolled_back_transaction_leaves_no_event(api: EventsApi) -> None:
    runtime = api.runtime
    with runtime.activated(), pytest.raises(RuntimeError), taskman.database.atomic():
        runtime.record_events([("thing.created", {"thing_id": "X-1"})])
        raise RuntimeError("rolled back after recording")
    taskman.release_connection(runtime.database)
    assert api.stored() == [] and api.events == []


def test_the_principal_is_the_token_that_made_the_change(make_api: Callable[..., EventsApi]) -> None:
    api = make_api(environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"})
    with api.runtime.activated():
        token, _ = TokenStore().create("deploy-bot", "read,write", None)
        taskman.release_connection(api.runtime.database)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"id": "P-1", "name": "A", "mission": "m", "owner": "o"}
    assert api.post("/projects", body, headers=headers).status_code == 201
    (event,) = api.get("/events", headers=headers).json["items"]
    assert event["principal"] == "deploy-bot" and event["request_id"]


def test_events_recorded_outside_a_request_reach_the_listeners_at_once(api: EventsApi) -> None:
    runtime = api.runtime
    with runtime.activated():
        with taskman.database.atomic():
            committed = runtime.record_events([("thing.created", {"thing_id": "X-1"})])
        assert api.events == []
        committed()
        taskman.release_connection(runtime.database)
    assert api.events == [("thing.created", {"thing_id": "X-1"})]
    (event,) = api.walk()
    assert event["principal"] is None and event["type"] == "thing.created"


def commit_without_delivering(api: EventsApi, events: list[tuple[str, dict[str, Any]]]) -> None:
    """What a worker killed between its commit and its listeners leaves: committed, undelivered events."""
    runtime = api.runtime
    with runtime.activated():
        with taskman.database.atomic():
            runtime.record_events(events)  # what it returns (the delivery) is never called
        taskman.release_connection(runtime.database)


def test_an_event_whose_worker_died_is_delivered_once_by_a_later_round(
    api: EventsApi, clock: time_machine.Traveller
) -> None:
    commit_without_delivering(api, [("task.created", {"task_id": "T-1"}), ("task.updated", {"task_id": "T-1"})])
    api.round()
    assert api.events == [], "its worker may still be about to deliver it: not before its lease runs out"
    clock.shift(datetime.timedelta(seconds=31))
    api.round()
    assert api.events == [("task.created", {"task_id": "T-1"}), ("task.updated", {"task_id": "T-1"})]
    clock.shift(datetime.timedelta(minutes=5))
    api.round()
    api.round()
    assert len(api.events) == 2, "acknowledged: never again"


def test_what_a_request_delivered_is_never_delivered_again(api: EventsApi, clock: time_machine.Traveller) -> None:
    api.project()
    api.task()
    heard = list(api.events)
    api.round()  # writes the acknowledgements
    clock.shift(datetime.timedelta(hours=1))
    api.round()
    assert api.events == heard


def test_an_event_heard_here_whose_acknowledgement_is_not_yet_written_is_not_redelivered(
    api: EventsApi, clock: time_machine.Traveller
) -> None:
    """A round that started before a request's acknowledgement came must not take its events for orphans."""
    api.project()
    heard = list(api.events)
    clock.shift(datetime.timedelta(hours=1))  # the lease ran out, the acknowledgement is still in memory
    assert api.outbox.redeliver() == 1
    assert api.events == heard
    api.round()
    assert api.events == heard


def test_acknowledgements_are_written_when_the_app_stops(make_api: Callable[..., EventsApi]) -> None:
    api = make_api()
    api.project()
    taskman.stop(api.client.app)
    with api.runtime.activated():
        rows = taskman.database.execute_sql("SELECT COUNT(*) FROM event_outbox WHERE NOT dispatched").fetchone()
        taskman.release_connection(api.runtime.database)
    assert rows[0] == 0


def test_old_events_are_pruned_and_undelivered_ones_kept(api: EventsApi, clock: time_machine.Traveller) -> None:
    api.project()
    commit_without_delivering(api, [("thing.created", {"thing_id": "X-1"})])
    api.round()
    clock.shift(datetime.timedelta(days=31))
    api.project("P-2")
    api.outbox.flush_acks()
    with api.runtime.activated():
        pruned = api.outbox.prune()
        taskman.release_connection(api.runtime.database)
    assert pruned == 1  # P-1's creation; the undelivered event waits for its listeners
    assert [e["type"] for e in api.walk()] == ["thing.created", "project.created"]


def test_without_the_events_plugin_the_listeners_still_hear_every_committed_change(
    make_api: Callable[..., EventsApi],
) -> None:
    api = make_api(environ={"APP_PLUGINS__DISABLE": "events,webhooks"})
    api.project()
    api.task()
    assert [name for name, _ in api.events] == ["project.created", "project.health_changed", "task.created"]
    assert api.get("/events").status_code == 404
    assert api.get("/tasks/T-1/activity").status_code == 404


class Consumer:
    """A durable consumer: what it writes commits with its position."""

    taskman_plugin_name = "consumer_probe"

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail_first = fail_first

    @hookimpl
    def taskman_event_consumers(self) -> dict[str, Any]:
        def consume(events: list[dict[str, Any]]) -> None:
            if self.fail_first:
                self.fail_first = False
                raise RuntimeError("consumer bug")
            self.batches.append([event["id"] for event in events])

        return {"probe": consume}


def test_a_consumer_gets_every_event_once_in_order_and_again_after_it_failed(
    make_api: Callable[..., EventsApi],
) -> None:
    consumer = Consumer(fail_first=True)
    api = make_api(plugins=(consumer,))
    api.project()
    api.task()
    api.round()  # the consumer raises: logged, counted, its position stays
    assert consumer.batches == []
    api.round()
    api.round()
    ids = [event["id"] for event in api.walk()]
    assert consumer.batches == [ids]
    api.patch("/tasks/T-1", {"title": "x"})
    api.round()
    assert [i for batch in consumer.batches for i in batch] == [event["id"] for event in api.walk()]


class OtherOutbox:
    """Any plugin may be the outbox: ``taskman_record_events`` gets the events inside the transaction."""

    taskman_plugin_name = "other_outbox"

    def __init__(self) -> None:
        self.recorded: list[list[str]] = []
        self.delivered = 0

    @hookimpl
    def taskman_record_events(self, runtime: taskman.Runtime, events: list[tuple[str, dict[str, Any]]]) -> Any:
        assert runtime.database.in_transaction()
        self.recorded.append([name for name, _ in events])

        def deliver() -> None:
            self.delivered += 1
            for name, payload in events:
                runtime.fire_event(name, payload)

        return deliver


def test_the_core_hands_a_changes_events_to_whichever_plugin_keeps_the_outbox(
    make_api: Callable[..., EventsApi],
) -> None:
    other = OtherOutbox()
    api = make_api(environ={"APP_PLUGINS__DISABLE": "events,webhooks"}, plugins=(other,))
    api.project()
    api.task()
    assert other.recorded == [["project.created"], ["project.health_changed", "task.created"]]
    assert other.delivered == 2 and [name for name, _ in api.events][-1] == "task.created"
