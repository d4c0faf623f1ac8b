"""The tracker's write paths of issue 15 record their events in the outbox like every other change.

PUT, batches, comments, action-list items, imports and a project's cascade:
each writes exactly the events its listeners hear, in its own transaction,
with each changed field's old and new value; a refused one writes none.
Both flavours, and PostgreSQL with ``TASKMAN_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from taskman_plugins.auth import TokenStore

import taskman
from tests.events.conftest import EventsApi


def put(api: EventsApi, path: str, body: Any, **kwargs: Any) -> Any:
    return api.client.simulate_put("/api/v1" + path, json=body, **kwargs)


def changes(entry: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["old"], c["new"]) for c in entry["changes"]}


def activity(api: EventsApi, path: str, **kwargs: Any) -> list[dict[str, Any]]:
    result = api.get(f"{path}/activity", **kwargs)
    assert result.status_code == 200, result.text
    return list(result.json["items"])


def test_put_records_the_fields_it_changed_and_nothing_when_it_changes_nothing(api: EventsApi) -> None:
    api.project()
    api.sprint()
    api.task(priority="p0", labels=["bug"])
    before = api.stored()
    result = put(api, "/tasks/T-1", {"id": "T-1", "project_id": "P-1", "title": "Rewritten"})
    assert result.status_code == 200, result.text
    result = put(api, "/projects/P-1", {"id": "P-1", "name": "Apollo 2", "mission": "Land", "owner": "ann"})
    assert result.status_code == 200, result.text
    body = {"id": "S-1", "project_id": "P-1", "name": "S-1", "start_date": "2026-11-02", "end_date": "2026-11-20"}
    assert put(api, "/sprints/S-1", body).status_code == 200
    assert put(api, "/sprints/S-1", body).status_code == 200, "the same body again: no change"
    refused = put(
        api, "/projects/P-1", {"id": "P-1", "name": "x", "mission": "m", "owner": "o"}, headers={"If-Match": 'W/"2"'}
    )
    assert refused.status_code == 412
    new = api.stored()[len(before) :]
    assert new == api.events[len(before) :], "the outbox holds what the listeners heard"
    assert [name for name, _ in new] == ["task.updated", "project.updated", "sprint.updated"]
    assert new[0][1]["changes"] == {
        "labels": {"old": ["bug"], "new": []},
        "priority": {"old": "p0", "new": "p2"},
        "title": {"old": "Task T-1", "new": "Rewritten"},
    }
    assert new[1][1]["changes"] == {"name": {"old": "Apollo", "new": "Apollo 2"}}
    assert new[2][1]["changes"] == {"end_date": {"old": "2026-11-13", "new": "2026-11-20"}}
    assert changes(activity(api, "/tasks/T-1")[-1])["title"] == ("Task T-1", "Rewritten")


def test_a_batch_records_a_creation_each_and_a_refused_one_nothing(api: EventsApi) -> None:
    api.project()
    before = api.stored()
    items = [{"id": f"T-{n}", "title": f"Task {n}", "project_id": "P-1"} for n in range(3)]
    assert api.post("/tasks/batch", {"items": items}).status_code == 201
    new = api.stored()[len(before) :]
    assert new == api.events[len(before) :]
    assert [(name, data.get("task_id")) for name, data in new] == [
        ("task.created", "T-0"),
        ("task.created", "T-1"),
        ("task.created", "T-2"),
        ("project.health_changed", None),
    ]
    assert [e["type"] for e in activity(api, "/tasks/T-1")] == ["task.created"]
    stored = api.stored()
    bad = [{"id": "T-7", "title": "fine", "project_id": "P-1"}, {"id": "T-8", "title": "x", "project_id": "P-9"}]
    assert api.post("/tasks/batch", {"items": bad}).status_code == 422
    assert api.stored() == stored, "the valid item's event went with its rolled-back creation"


def test_comments_are_in_their_tasks_activity_with_who_when_and_the_edit(make_api: Callable[..., EventsApi]) -> None:
    api = make_api(environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"})
    with api.runtime.activated():
        ann, _ = TokenStore().create("ann", "read,write", None)
        root, _ = TokenStore().create("root", "admin", None)
        taskman.release_connection(api.runtime.database)
    as_ann, as_root = {"Authorization": f"Bearer {ann}"}, {"Authorization": f"Bearer {root}"}
    api.post("/projects", {"id": "P-1", "name": "A", "mission": "m", "owner": "o"}, headers=as_root)
    api.post("/tasks", {"id": "T-1", "title": "t", "project_id": "P-1"}, headers=as_root)
    written = api.post("/tasks/T-1/comments", {"body": "Looks good"}, headers=as_ann)
    assert written.status_code == 201, written.text
    path = f"/tasks/T-1/comments/{written.json['id']}"
    assert api.patch(path, {"body": "Looks great"}, headers=as_ann).status_code == 200
    assert api.patch(path, {"body": "Looks great"}, headers=as_ann).status_code == 200, "no change: no event"
    assert api.delete(path, headers=as_root).status_code == 204

    entries = activity(api, "/tasks/T-1", headers=as_ann)
    assert [(e["type"], e["principal"]) for e in entries] == [
        ("task.created", "root"),
        ("comment.created", "ann"),
        ("comment.updated", "ann"),
        ("comment.deleted", "root"),
    ]
    assert all(e["occurred_at"] for e in entries)
    assert entries[1]["data"]["comment_id"] == written.json["id"] and entries[1]["data"]["author"] == "ann"
    assert entries[2]["changes"] == [{"field": "body", "old": "Looks good", "new": "Looks great"}]
    assert entries[3]["subject"] == {"kind": "task", "id": "T-1"}
    heard = [(name, data) for name, data in api.events if name.startswith("comment.")]
    assert [(e["type"], e["data"]) for e in entries[1:]] == heard


def test_action_list_items_record_the_items_old_and_new(api: EventsApi) -> None:
    api.project()
    api.task()
    made = api.created("/action-lists", {"title": "Retro", "items": [{"text": "a"}, {"text": "b"}]})
    path = f"/action-lists/{made['id']}"
    a, b = (item["id"] for item in made["items"])
    assert api.post(f"{path}/items", {"task_id": "T-1"}).status_code == 200
    assert api.patch(f"{path}/items/{a}", {"done": True}).status_code == 200
    assert api.post(f"{path}/items/reorder", {"order": [2, 1, 0]}).status_code == 200
    assert api.delete(f"{path}/items/{b}").status_code == 200
    entries = activity(api, path)
    assert [e["type"] for e in entries] == ["action_list.created", *["action_list.updated"] * 4]
    steps = [changes(e)["items"] for e in entries[1:]]
    assert [len(old) for old, _ in steps] == [2, 3, 3, 3] and [len(new) for _, new in steps] == [3, 3, 3, 2]
    assert steps[0][1][2]["task_id"] == "T-1"
    assert [(i["id"], i["done"]) for i in steps[1][1] if i["id"] == a] == [(a, True)]
    assert [i["id"] for i in steps[2][1]][::-1] == [i["id"] for i in steps[2][0]]
    assert b not in [i["id"] for i in steps[3][1]]
    assert api.stored() == api.events


def test_a_cascade_records_the_change_to_a_list_outside_the_project(api: EventsApi) -> None:
    api.project()
    api.sprint()
    elsewhere = api.created("/action-lists", {"title": "Retro", "sprint_id": "S-1"})  # of no project: kept
    assert api.delete("/projects/P-1", params={"cascade": "true"}).status_code == 204
    after = api.get(f"/action-lists/{elsewhere['id']}").json
    assert after["sprint_id"] is None and after["version"] == elsewhere["version"] + 1
    last = activity(api, f"/action-lists/{elsewhere['id']}")[-1]
    assert last["type"] == "action_list.updated" and changes(last) == {"sprint_id": ("S-1", None)}
    assert api.stored() == api.events


def test_an_import_records_an_event_per_record_in_statements_of_a_few(
    api: EventsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.project()
    api.sprint()
    items = [{"id": f"T-{n}", "title": f"Task {n}", "project_id": "P-1"} for n in range(20)]
    assert api.post("/tasks/batch", {"items": items}).status_code == 201
    api.created("/tasks/T-3/comments", {"body": "note"})
    document = api.get("/export").json
    assert api.delete("/projects/P-1", params={"cascade": "true"}).status_code == 204
    before = api.stored()
    # An import's events span several statements. (The package's ``outbox`` is the function of that name.)
    monkeypatch.setattr(importlib.import_module("taskman_plugins.events.outbox"), "INSERT_ROWS", 7)
    stray = {**document["tasks"][0], "id": "T-x", "project_id": "P-9"}
    refused = api.post("/import", {**document, "tasks": [*document["tasks"], stray]})
    assert refused.status_code == 422, refused.text
    assert api.stored() == before, "a refused import records nothing"
    result = api.post("/import", document)
    assert result.status_code == 200, result.text
    new = api.walk(after=api.walk()[len(before) - 1]["id"])
    assert [(e["type"], e["data"]) for e in new] == api.events[len(before) :]
    names = [e["type"] for e in new]
    assert names == [
        "project.imported",
        "sprint.imported",
        *["task.imported"] * 20,
        "comment.imported",
        "project.health_changed",
    ]
    ids = [e["id"] for e in new]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e["type"] for e in activity(api, "/tasks/T-3")][-2:] == ["task.imported", "comment.imported"]
    assert [e["type"] for e in activity(api, "/projects/P-1")][-1] == "project.imported"


def test_one_change_may_record_more_events_than_one_statement_takes_parameters(api: EventsApi) -> None:
    """7,000 events of 10 parameters each: past PostgreSQL's 65,535 parameters per statement, as a big import is."""
    runtime = api.runtime
    events = [("thing.created", {"thing_id": f"X-{n}"}) for n in range(7000)]
    with runtime.activated():
        with taskman.database.atomic():
            committed = runtime.record_events(events)
        committed()
        taskman.release_connection(runtime.database)
    assert api.events == events
    walked = api.walk(limit=500)
    assert [e["data"]["thing_id"] for e in walked] == [data["thing_id"] for _, data in events]
    assert [e["id"] for e in walked] == sorted({e["id"] for e in walked})
