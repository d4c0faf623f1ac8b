"""Export and import (issue 15): one document, loaded atomically and idempotently, equal after a round trip.

The round trip runs on the suite's database (SQLite, or PostgreSQL with
TASKMAN_TEST_DATABASE_URL), into a second, empty one of the same kind; and
from SQLite into PostgreSQL when the suite runs on PostgreSQL.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import falcon.testing
import pytest
from taskman_plugins.auth import TokenStore

from tests.conftest import database_for
from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api, problem_pointers

Client = Callable[..., falcon.testing.TestClient]


@pytest.fixture
def empty_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the suite's kind."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'target.db'}"
        return
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") + "_target"
    admin = database_for(database_url)
    try:
        admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.close_all()
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin = database_for(database_url)
    try:
        admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close_all()


def app_on(make_client: Client, url: str) -> Api:
    listener = LifecyclePlugin()
    return Api(make_client(plugins=(listener,), overrides={"database": {"url": url}}), listener)


def seed(api: Api, clock: Any) -> None:
    """Every kind of record in most of its states, written through the API at different times."""
    api.project("P-1", status="active", tags=["core", "ünïcode"], start_date="2026-10-01", target_end_date="2027-03-31")
    api.project("P-2")
    api.sprint("S-1", goal="Ship", velocity_target_points=12.5)
    api.sprint("S-2", start_date="2026-11-16", end_date="2026-11-27")
    api.sprint("S-3", "P-2", start_date="2026-11-02", end_date="2026-11-06")
    clock.shift(3600)
    api.task("T-1", sprint_id="S-1", estimate_points=3, labels=["bug", "ui"], assignees=["ann", "bob"], priority="p0")
    api.task("T-2", sprint_id="S-1", estimate_points=1234.5678, depends_on=["T-1"], due_at="2026-12-01T09:30:00+02:00")
    api.task("T-3", description="Long " * 50, severity="sev2", owner="cy", summary="")
    api.task("T-4", "P-2", sprint_id="S-3", estimate_points=2)
    clock.shift(3600)
    api.post("/sprints/S-1/start")
    api.post("/sprints/S-3/start")
    api.done("T-1")
    api.move("T-2", "ready", "in_progress", "blocked")
    api.move("T-3", "dropped")
    api.done("T-4")
    clock.shift(86400)
    api.post("/sprints/S-3/close")
    listed = api.created("/action-lists", {"title": "Retro", "project_id": "P-1", "sprint_id": "S-1"})
    api.post(f"/action-lists/{listed['id']}/items", {"task_id": "T-2"})
    api.post(f"/action-lists/{listed['id']}/items", {"text": "Buy cake", "done": True})
    api.created("/action-lists", {"title": "Loose", "status": "completed", "tags": ["x"], "due_date": "2026-12-24"})
    first = api.created("/tasks/T-1/comments", {"body": "Fixed in 1.2"})
    clock.shift(60)
    api.patch(f"/tasks/T-1/comments/{first['id']}", {"body": "Fixed in 1.3"})
    api.created("/tasks/T-4/comments", {"body": "Done"})


def export(api: Api, **params: str) -> dict[str, Any]:
    result = api.get("/export", params=params)
    assert result.status_code == 200, result.text
    return dict(result.json)


def load(api: Api, document: dict[str, Any], **kwargs: Any) -> falcon.testing.Result:
    return api.post("/import", document, **kwargs)


def test_export_import_export_gives_the_same_document(
    api: Api, make_client: Client, empty_url: str, clock: Any
) -> None:
    seed(api, clock)
    document = export(api)
    assert document["format"] == "taskman-export" and document["version"] == 1 and document["project_id"] is None
    assert [len(document[k]) for k in ("projects", "sprints", "tasks", "action_lists", "comments")] == [2, 3, 4, 2, 2]
    tasks = {t["id"]: t for t in document["tasks"]}
    assert tasks["T-1"]["status"] == "done" and tasks["T-1"]["completed_at"] is not None
    assert (tasks["T-1"]["labels"], tasks["T-1"]["assignees"]) == (["bug", "ui"], ["ann", "bob"])
    assert tasks["T-2"]["depends_on"] == ["T-1"] and tasks["T-2"]["due_at"] == "2026-12-01T07:30:00.000000Z"
    assert all("task" not in item for lst in document["action_lists"] for item in lst["items"]), "derived: left out"

    target = app_on(make_client, empty_url)
    clock.shift(86400 * 30)  # the import keeps the document's times, not the clock's
    result = load(target, document)
    assert result.status_code == 200, result.text
    assert result.json == {
        "created": {"projects": 2, "sprints": 3, "tasks": 4, "action_lists": 2, "comments": 2},
        "unchanged": {"projects": 0, "sprints": 0, "tasks": 0, "action_lists": 0, "comments": 0},
    }
    assert export(target) == document
    # What the import wrote behaves as the original: filters, links, reports.
    assert [t["id"] for t in target.get("/tasks", params={"label": "bug"}).json["items"]] == ["T-1"]
    assert [t["id"] for t in target.get("/tasks", params={"assignee": "bob"}).json["items"]] == ["T-1"]
    assert target.delete("/tasks/T-1").status_code == 409, "T-2 depends on it"
    assert target.delete("/tasks/T-2").status_code == 409, "an action list links it"
    assert target.get("/sprints/S-3/burndown").json == api.get("/sprints/S-3/burndown").json
    assert target.get("/projects/P-1/metrics").json == api.get("/projects/P-1/metrics").json


def test_importing_twice_changes_nothing_the_second_time(
    api: Api, make_client: Client, empty_url: str, clock: Any
) -> None:
    seed(api, clock)
    document = export(api)
    target = app_on(make_client, empty_url)
    assert load(target, document).status_code == 200
    target.events.clear()
    again = load(target, document)
    assert again.status_code == 200
    assert again.json["created"] == dict.fromkeys(again.json["created"], 0)
    assert again.json["unchanged"] == {"projects": 2, "sprints": 3, "tasks": 4, "action_lists": 2, "comments": 2}
    assert target.events == []
    assert export(target) == document


def test_a_record_that_exists_with_other_values_refuses_the_import(
    api: Api, make_client: Client, empty_url: str, clock: Any
) -> None:
    seed(api, clock)
    document = export(api)
    target = app_on(make_client, empty_url)
    target.project("P-2", name="Someone else's")
    target.events.clear()
    refused = load(target, document)
    assert refused.status_code == 409 and "P-2" in refused.json["detail"]
    assert target.get("/tasks").json["items"] == [] and target.events == [], "nothing was written"
    # The same record, equal, is fine: importing over an earlier import of part of the data.
    target.delete("/projects/P-2")
    assert load(target, {**document, "tasks": [], "comments": [], "action_lists": []}).status_code == 200
    assert load(target, document).json["unchanged"]["projects"] == 2


def bad(**sections: Any) -> dict[str, Any]:
    return {"format": "taskman-export", "version": 1, **sections}


#: What every record of a hand-written document carries.
TIMES = {"created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "version": 1}


def project(project_id: str = "P-1", **fields: Any) -> dict[str, Any]:
    return {"id": project_id, "name": "A", "mission": "M", "owner": "o", **TIMES, **fields}


def task(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "title": "t", "project_id": "P-1", **TIMES, **fields}


def sprint(sprint_id: str, **fields: Any) -> dict[str, Any]:
    dates = {"start_date": "2026-11-02", "end_date": "2026-11-13", "status": "planned"}
    return {"id": sprint_id, "project_id": "P-1", "name": "s", **dates, **TIMES, **fields}


def action_list(list_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": list_id, "title": "l", **TIMES, **fields}


def comment(comment_id: str, task_id: str) -> dict[str, Any]:
    return {"id": comment_id, "task_id": task_id, "body": "b", **TIMES}


EMPTY = {key: [] for key in ("projects", "sprints", "tasks", "action_lists", "comments")}


def test_statuses_and_times_are_kept_as_given_and_imported_events_fire(api: Api) -> None:
    document = bad(
        projects=[project(created_at="2020-01-01T00:00:00Z", updated_at="2020-01-02T00:00:00Z", version=7)],
        sprints=[
            sprint(
                "S-1",
                start_date="2020-01-06",
                end_date="2020-01-17",
                status="closed",
                committed_points=5,
                completed_points=3,
                closed_at="2020-01-17T17:00:00Z",
            )
        ],
        # Done straight from nothing: the transition table is not replayed.
        tasks=[
            task(
                "T-1",
                title="Done long ago",
                sprint_id="S-1",
                status="done",
                estimate_points=3,
                completed_at="2020-01-10T10:00:00Z",
                created_at="2020-01-03T00:00:00Z",
                updated_at="2020-01-10T10:00:00Z",
                version=4,
            )
        ],
    )
    result = load(api, document)
    assert result.status_code == 200, result.text
    loaded = api.get("/tasks/T-1").json
    assert (loaded["status"], loaded["completed_at"], loaded["version"]) == ("done", "2020-01-10T10:00:00.000000Z", 4)
    assert loaded["created_at"] == "2020-01-03T00:00:00.000000Z"
    assert (loaded["labels"], loaded["priority"]) == ([], "p2")
    assert api.get("/projects/P-1").json["version"] == 7
    assert api.get("/sprints/S-1/burndown").json["as_of"] == "2020-01-17"
    names = [name for name, _ in api.events]
    assert names[:3] == ["project.imported", "sprint.imported", "task.imported"]
    assert dict(api.events)["task.imported"] == {
        "task_id": "T-1",
        "project_id": "P-1",
        "sprint_id": "S-1",
        "priority": "p2",
        "status": "done",
    }
    assert "project.health_changed" in names and not any(name.endswith(".created") for name in names)


@pytest.mark.parametrize(
    ("document", "pointers"),
    [
        (bad(format="other"), {"/format"}),
        (bad(projects=[project(), project()]), {"/projects/1/id"}),
        (bad(projects=[{**project(), "colour": "red"}]), {"/projects/0/colour"}),
        (bad(tasks=[task("T-1", project_id="P-9")]), {"/tasks/0/project_id"}),
        (
            bad(projects=[project()], tasks=[task("T-1", depends_on=["T-9", "T-1"])]),
            {"/tasks/0/depends_on/0", "/tasks/0/depends_on/1"},
        ),
        (
            bad(projects=[project()], tasks=[task("T-1", depends_on=["T-2"]), task("T-2", depends_on=["T-1"])]),
            {"/tasks/0/depends_on", "/tasks/1/depends_on"},
        ),
        (bad(projects=[project()], tasks=[task("T-1", sprint_id="S-9")]), {"/tasks/0/sprint_id"}),
        (
            bad(projects=[project()], sprints=[sprint("S-1", status="active"), sprint("S-2", status="active")]),
            {"/sprints/0/status", "/sprints/1/status"},
        ),
        (bad(projects=[project()], sprints=[sprint("S-1", end_date="2026-11-01")]), {"/sprints/0/end_date"}),
        (
            bad(action_lists=[action_list("AL-1", items=[{"id": "I-1"}, {"id": "I-2", "task_id": "T-9"}])]),
            {"/action_lists/0/items/0/text", "/action_lists/0/items/1/task_id"},
        ),
        (bad(comments=[comment("C-1", "T-9")]), {"/comments/0/task_id"}),
    ],
    ids=[
        "format",
        "repeated-id",
        "unknown-field",
        "project",
        "dependency",
        "cycle",
        "sprint",
        "two-active",
        "dates",
        "items",
        "comment",
    ],
)
def test_a_document_with_problems_imports_nothing_and_names_them(
    api: Api, document: dict[str, Any], pointers: set[str]
) -> None:
    result = load(api, document)
    assert result.status_code == 422, result.text
    assert set(problem_pointers(result)) == pointers
    assert export(api) == {**bad(project_id=None), **EMPTY}


def test_a_document_may_name_records_already_in_the_database(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.sprint("S-1")
    result = load(api, bad(tasks=[task("T-2", depends_on=["T-1"], sprint_id="S-1")]))
    assert result.status_code == 200, result.text
    assert api.get("/tasks/T-2").json["depends_on"] == ["T-1"]
    another = load(api, bad(sprints=[sprint("S-2", status="active")]))
    assert another.status_code == 200
    third = load(api, bad(sprints=[sprint("S-3", status="active")]))
    assert third.status_code == 422 and "S-2" in problem_pointers(third)["/sprints/0/status"]


def test_a_project_exports_alone(api: Api, clock: Any) -> None:
    seed(api, clock)
    document = export(api, project_id="P-2")
    assert document["project_id"] == "P-2"
    assert [p["id"] for p in document["projects"]] == ["P-2"]
    assert [s["id"] for s in document["sprints"]] == ["S-3"]
    assert [t["id"] for t in document["tasks"]] == ["T-4"]
    assert document["action_lists"] == [] and [c["task_id"] for c in document["comments"]] == ["T-4"]
    assert api.get("/export", params={"project_id": "P-9"}).status_code == 404
    for value in ("nope", "P-" + "x" * 60):
        assert api.get("/export", params={"project_id": value}).status_code == 400
    assert api.get("/export", params={"since": "2026-01-01"}).status_code == 400


def test_importing_needs_the_admin_scope(make_client: Client) -> None:
    api = Api(make_client(environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"}), LifecyclePlugin())
    writer, _ = TokenStore().create("writer", "write")
    admin, _ = TokenStore().create("admin", "admin")
    reader, _ = TokenStore().create("reader", "read")
    document = bad(projects=[project()])
    assert load(api, document, headers={"Authorization": f"Bearer {writer}"}).status_code == 403
    assert load(api, document, headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert api.get("/export", headers={"Authorization": f"Bearer {reader}"}).status_code == 200


def test_an_idempotency_key_replays_the_import(api: Api) -> None:
    document = bad(projects=[project()])
    first = load(api, document, headers={"Idempotency-Key": "import-1"})
    again = load(api, document, headers={"Idempotency-Key": "import-1"})
    assert again.headers["idempotent-replayed"] == "true" and again.json == first.json
    assert first.json["created"]["projects"] == 1


@pytest.mark.skipif(
    not os.environ.get("TASKMAN_TEST_DATABASE_URL"), reason="needs PostgreSQL (TASKMAN_TEST_DATABASE_URL)"
)
def test_from_sqlite_to_postgresql(make_client: Client, database_url: str, tmp_path: Path, clock: Any) -> None:
    assert database_url.startswith("postgresql")
    source = app_on(make_client, f"sqlite:///{tmp_path / 'source.db'}")
    seed(source, clock)
    document = export(source)
    target = app_on(make_client, database_url)
    assert load(target, copy.deepcopy(document)).status_code == 200
    assert export(target) == document
    assert load(target, document).json["created"]["tasks"] == 0


def test_an_export_has_no_etag(api: Api) -> None:
    """Its "version" is the format's, not a record's: no ETag says otherwise."""
    assert "etag" not in api.get("/export").headers


def test_versions_and_numbers_out_of_range_are_refused_not_stored(api: Api) -> None:
    for record, pointer in (
        (project(version=10**30), "/projects/0/version"),
        (project(version=1_000_000_001), "/projects/0/version"),
        (project(created_at="9999-12-31T23:00:00-05:00"), "/projects/0/created_at"),
        (project(name="x\u0000y"), "/projects/0/name"),
    ):
        result = load(api, bad(projects=[record]))
        assert result.status_code == 422 and pointer in problem_pointers(result), result.text
    assert api.get("/projects").json["items"] == []
