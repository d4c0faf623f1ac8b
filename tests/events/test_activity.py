"""Activity: each record's history, who changed which field from what to what, and when."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import time_machine
from taskman_plugins.auth import TokenStore

import taskman
from taskman import hookimpl
from tests.conftest import CLOCK_START
from tests.events.conftest import EventsApi


def when(moment: datetime.datetime) -> datetime.datetime:
    return datetime.datetime.fromisoformat(moment.isoformat()).astimezone(datetime.UTC)


def parsed(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_tasks_activity_lists_each_change_with_who_and_when(
    make_api: Callable[..., EventsApi], clock: time_machine.Traveller
) -> None:
    api = make_api(environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"})
    with api.runtime.activated():
        ann, _ = TokenStore().create("ann", "read,write", None)
        bob, _ = TokenStore().create("bob", "read,write", None)
        taskman.release_connection(api.runtime.database)
    as_ann, as_bob = {"Authorization": f"Bearer {ann}"}, {"Authorization": f"Bearer {bob}"}
    body = {"id": "P-1", "name": "A", "mission": "m", "owner": "o"}
    assert api.post("/projects", body, headers=as_ann).status_code == 201
    assert api.post("/tasks", {"id": "T-1", "title": "First", "project_id": "P-1"}, headers=as_ann).status_code == 201
    clock.shift(datetime.timedelta(hours=2))
    assert api.patch("/tasks/T-1", {"title": "Second", "priority": "p0"}, headers=as_bob).status_code == 200
    clock.shift(datetime.timedelta(hours=1))
    assert api.post("/tasks/T-1/status", {"status": "ready"}, headers=as_ann).status_code == 200

    result = api.get("/tasks/T-1/activity", headers=as_bob)
    assert result.status_code == 200, result.text
    entries = result.json["items"]
    assert [(e["type"], e["principal"]) for e in entries] == [
        ("task.created", "ann"),
        ("task.updated", "bob"),
        ("task.updated", "ann"),
    ]
    assert entries[1]["changes"] == [
        {"field": "priority", "old": "p2", "new": "p0"},
        {"field": "title", "old": "First", "new": "Second"},
    ]
    assert entries[2]["changes"] == [{"field": "status", "old": "new", "new": "ready"}]
    start = CLOCK_START
    assert start <= parsed(entries[0]["occurred_at"]) < start + datetime.timedelta(hours=1)
    assert (
        start + datetime.timedelta(hours=2) <= parsed(entries[1]["occurred_at"]) < start + datetime.timedelta(hours=3)
    )
    assert parsed(entries[2]["occurred_at"]) >= start + datetime.timedelta(hours=3)
    assert result.json["has_more"] is False


def test_activity_pages_by_id(api: EventsApi) -> None:
    api.project()
    api.task()
    for n in range(4):
        api.patch("/tasks/T-1", {"title": f"Title {n}"})
    walked, after = [], 0
    while True:
        page = api.get("/tasks/T-1/activity", params={"after": str(after), "limit": "2"}).json
        walked += page["items"]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert [e["type"] for e in walked] == ["task.created"] + ["task.updated"] * 4
    ids = [e["id"] for e in walked]
    assert ids == sorted(set(ids))
    assert [c["new"] for e in walked[1:] for c in e["changes"]] == [f"Title {n}" for n in range(4)]


def test_a_deleted_record_keeps_its_history_and_an_unknown_one_is_404(api: EventsApi) -> None:
    api.project()
    api.task()
    assert api.delete("/tasks/T-1").status_code == 204
    types = [e["type"] for e in api.get("/tasks/T-1/activity").json["items"]]
    assert types == ["task.created", "task.deleted"]
    assert api.get("/tasks/T-404/activity").status_code == 404
    assert api.get("/tasks/not%20an%20id/activity").status_code == 404
    assert api.get("/tasks/T-1/activity", params={"after": "x"}).status_code == 400
    assert api.get("/tasks/T-1/activity", params={"limit": "201"}).status_code == 400


def test_sprint_and_project_activity(api: EventsApi) -> None:
    api.project()
    api.sprint()
    api.patch("/projects/P-1", {"name": "Renamed"})
    api.post("/sprints/S-1/start", {"end_date": "2026-11-20"})
    api.post("/sprints/S-1/close")
    sprint = api.get("/sprints/S-1/activity").json["items"]
    assert [e["type"] for e in sprint] == ["sprint.created", "sprint.updated", "sprint.started", "sprint.closed"]
    assert sprint[1]["changes"] == [{"field": "end_date", "old": "2026-11-13", "new": "2026-11-20"}]
    assert {c["field"]: (c["old"], c["new"]) for c in sprint[2]["changes"]}["status"] == ("planned", "active")
    assert {c["field"]: (c["old"], c["new"]) for c in sprint[3]["changes"]}["status"] == ("active", "closed")
    project = api.get("/projects/P-1/activity").json["items"]
    assert [e["type"] for e in project] == ["project.created", "project.updated"]
    assert project[1]["changes"] == [{"field": "name", "old": "Apollo", "new": "Renamed"}]


class Comments:
    """A stand-in for a comments plugin: its events join the task's activity through taskman_event_subject."""

    taskman_plugin_name = "comments_probe"

    @hookimpl
    def taskman_event_subject(self, name: str, payload: dict[str, Any]) -> tuple[str, str] | None:
        if name.startswith("comment."):
            return ("task", payload["task_id"])
        return None


def test_another_plugins_events_can_join_a_records_activity(make_api: Callable[..., EventsApi]) -> None:
    api = make_api(plugins=(Comments(),))
    api.project()
    api.task()
    runtime = api.runtime
    with runtime.activated():
        with taskman.database.atomic():
            committed = runtime.record_events([("comment.created", {"task_id": "T-1", "comment_id": "C-1"})])
        committed()
        taskman.release_connection(runtime.database)
    entries = api.get("/tasks/T-1/activity").json["items"]
    assert [e["type"] for e in entries] == ["task.created", "comment.created"]
    assert entries[1]["data"] == {"task_id": "T-1", "comment_id": "C-1"} and entries[1]["changes"] == []


class BadActivity:
    taskman_plugin_name = "bad_activity"

    @hookimpl
    def taskman_activity_routes(self) -> list[dict[str, Any]]:
        return [{"kind": "task", "route": "/api/v1/elsewhere/{id}/activity"}]


def test_two_plugins_declaring_one_kinds_activity_stop_start_up(make_config: Callable[..., Any]) -> None:
    config = make_config(plugins=(BadActivity(),))
    try:
        taskman.create_app(config, plugins=(BadActivity(),))
    except taskman.PluginError as exc:
        assert "already declared" in str(exc) and "task" in str(exc)
    else:
        raise AssertionError("start-up should have failed")
