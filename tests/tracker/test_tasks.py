"""Tasks over HTTP: CRUD, merge patch, the transition table on every path, dependencies, conditional requests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import falcon.testing
import pytest
from taskman_plugins.tracker.tasks import TRANSITIONS

from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api, problem_pointers

STATUSES = list(TRANSITIONS)

#: A workflow of one's own (``[tracker] transitions``): the default one, where a done task may be reopened.
REOPENING = {**TRANSITIONS, "done": ("ready",)}
REOPENING_SETTING = "new->ready|dropped,ready->in_progress|dropped,in_progress->blocked|review|done|dropped,"
REOPENING_SETTING += "blocked->in_progress|dropped,review->in_progress|done|dropped,done->ready"


def test_create_returns_201_location_etag_and_the_full_record(api: Api) -> None:
    api.project()
    result = api.post("/tasks", {"id": "T-1", "title": "Write", "project_id": "P-1", "estimate_points": 3})
    assert result.status_code == 201
    assert result.headers["location"] == "/api/v1/tasks/T-1"
    assert result.headers["etag"] == '"1"'
    task = result.json
    assert task["status"] == "new" and task["priority"] == "p2" and task["version"] == 1
    assert task["labels"] == [] and task["sprint_id"] is None and task["completed_at"] is None
    assert task["created_at"].endswith("Z") and task["created_at"] == task["updated_at"]
    assert api.get("/tasks/T-1").json == task


def test_strings_are_stored_and_returned_exactly(api: Api) -> None:
    api.project()
    title = '\'; DROP TABLE task; -- "quoted" ünïcödé 🚀 \\ %_'
    created = api.task(title=title, description="line\nbreak\ttab", labels=["🚀", "a b"])
    fetched = api.get("/tasks/T-1").json
    assert fetched["title"] == created["title"] == title
    assert fetched["description"] == "line\nbreak\ttab"
    assert fetched["labels"] == ["🚀", "a b"]


def test_duplicate_id_is_409(api: Api) -> None:
    api.project()
    api.task()
    result = api.post("/tasks", {"id": "T-1", "title": "again", "project_id": "P-1"})
    assert result.status_code == 409
    assert "T-1" in result.json["detail"]


BAD_FIELDS = [
    ({"title": "x", "project_id": "P-1"}, "/id"),
    ({"id": "X-1", "title": "x", "project_id": "P-1"}, "/id"),
    ({"id": "T-1\n", "title": "x", "project_id": "P-1"}, "/id"),
    ({"id": "T-" + "a" * 48, "title": "x", "project_id": "P-1"}, "/id"),
    ({"id": "T-1", "title": "", "project_id": "P-1"}, "/title"),
    ({"id": "T-1", "title": "x" * 501, "project_id": "P-1"}, "/title"),
    ({"id": "T-1", "title": 5, "project_id": "P-1"}, "/title"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "priority": "P1"}, "/priority"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "severity": "sev5"}, "/severity"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "estimate_points": -1}, "/estimate_points"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "estimate_points": "3"}, "/estimate_points"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "due_at": "tomorrow"}, "/due_at"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "due_at": "2026-11-31T10:00:00Z"}, "/due_at"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "due_at": "2026-11-30T10:00:00"}, "/due_at"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "labels": ["a", "a"]}, "/labels"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "labels": [""]}, "/labels/0"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "unknown": 1}, "/unknown"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "completed_at": "2026-11-30T10:00:00Z"}, "/completed_at"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "version": 7}, "/version"),
    ({"id": "T-1", "title": "x", "project_id": "P-9"}, "/project_id"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "sprint_id": "S-9"}, "/sprint_id"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "depends_on": ["T-9"]}, "/depends_on/0"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "depends_on": ["T-1"]}, "/depends_on/0"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "status": "done"}, "/status"),
    ({"id": "T-1", "title": "nul\u0000", "project_id": "P-1"}, "/title"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "summary": "\ud800"}, "/summary"),
    ({"id": "T-1", "title": "x", "project_id": "P-1", "due_at": "9999-12-31T23:30:00-01:00"}, "/due_at"),
]


def test_bad_fields_are_422_with_a_pointer_each(api: Api) -> None:
    api.project()
    for body, pointer in BAD_FIELDS:
        result = api.post("/tasks", body)
        assert result.status_code == 422, (body, result.text)
        assert pointer in problem_pointers(result), (body, result.text)
    assert api.get("/tasks/T-1").status_code == 404


def test_every_bad_field_is_reported_at_once(api: Api) -> None:
    result = api.post("/tasks", {"id": "bad", "title": "", "priority": "urgent", "extra": True})
    assert result.status_code == 422
    assert set(problem_pointers(result)) == {"/id", "/title", "/priority", "/extra", "/project_id"}


def test_body_must_be_a_json_object(api: Api) -> None:
    for body in ([], "text", 3, None):
        result = api.client.simulate_post(
            "/api/v1/tasks", body=__import__("json").dumps(body), headers={"content-type": "application/json"}
        )
        assert result.status_code == 422, body
        assert "" in problem_pointers(result)


def test_malformed_json_and_wrong_media_type(api: Api) -> None:
    bad = api.client.simulate_post("/api/v1/tasks", body="{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    nan = api.client.simulate_post("/api/v1/tasks", body='{"title": NaN}', headers={"content-type": "application/json"})
    assert nan.status_code == 400
    text = api.client.simulate_post("/api/v1/tasks", body="title=x", headers={"content-type": "text/plain"})
    assert text.status_code == 415


def test_missing_task_is_404_and_ids_that_cannot_exist_too(api: Api) -> None:
    assert api.get("/tasks/T-404").status_code == 404
    assert api.get("/tasks/not-an-id").status_code == 404
    assert api.get("/tasks/T-%00").status_code == 404
    assert api.patch("/tasks/T-%00", {"title": "x"}).status_code == 404
    assert api.post("/tasks/T-%00/status", {"status": "ready"}).status_code == 404
    assert api.patch("/tasks/T-404", {"title": "x"}).status_code == 404
    assert api.delete("/tasks/T-404").status_code == 404


def test_merge_patch_leaves_absent_fields_and_null_clears(api: Api) -> None:
    api.project()
    api.task(summary="keep", description="drop", owner="bob", labels=["x"])
    result = api.patch("/tasks/T-1", {"description": None, "owner": "carol", "labels": ["y", "z"]})
    assert result.status_code == 200
    task = result.json
    assert task["summary"] == "keep" and task["description"] is None and task["owner"] == "carol"
    assert task["labels"] == ["y", "z"] and task["version"] == 2
    assert result.headers["etag"] == '"2"'


def test_merge_patch_content_type_is_accepted(api: Api) -> None:
    api.project()
    api.task()
    result = api.client.simulate_patch(
        "/api/v1/tasks/T-1", body='{"owner": "dan"}', headers={"content-type": "application/merge-patch+json"}
    )
    assert result.status_code == 200 and result.json["owner"] == "dan"


def test_patch_cannot_null_required_fields_or_change_immutable_ones(api: Api) -> None:
    api.project()
    api.project("P-2")
    api.task()
    assert "/title" in problem_pointers(api.patch("/tasks/T-1", {"title": None}))
    assert "/priority" in problem_pointers(api.patch("/tasks/T-1", {"priority": None}))
    assert "/project_id" in problem_pointers(api.patch("/tasks/T-1", {"project_id": "P-2"}))
    assert "/id" in problem_pointers(api.patch("/tasks/T-1", {"id": "T-2"}))
    assert api.get("/tasks/T-1").json["version"] == 1


def test_an_empty_patch_changes_nothing(api: Api) -> None:
    api.project()
    api.task()
    result = api.patch("/tasks/T-1", {})
    assert result.status_code == 200 and result.json["version"] == 1


PATHS = {
    "new": [],
    "ready": ["ready"],
    "in_progress": ["ready", "in_progress"],
    "blocked": ["ready", "in_progress", "blocked"],
    "review": ["ready", "in_progress", "review"],
    "done": ["ready", "in_progress", "done"],
    "dropped": ["dropped"],
}


@pytest.fixture(params=["default", "reopening"])
def workflow(
    request: pytest.FixtureRequest, make_client: Callable[..., falcon.testing.TestClient]
) -> tuple[Api, dict[str, tuple[str, ...]]]:
    """A client of the default workflow, and one of a configured workflow (APP_TRACKER__TRANSITIONS)."""
    listener = LifecyclePlugin()
    if request.param == "default":
        return Api(make_client(plugins=(listener,)), listener), TRANSITIONS
    environ = {"APP_TRACKER__TRANSITIONS": REOPENING_SETTING}
    return Api(make_client(plugins=(listener,), environ=environ), listener), REOPENING


@pytest.mark.parametrize("current", STATUSES)
def test_every_transition_is_allowed_or_refused_by_the_table_on_both_paths(
    workflow: tuple[Api, dict[str, tuple[str, ...]]], current: str
) -> None:
    api, table = workflow
    api.project()
    for number, (wanted, via_patch) in enumerate(itertools.product(STATUSES, (False, True))):
        if wanted == current:
            continue
        task_id = f"T-{number}"
        api.task(task_id)
        if PATHS[current]:
            assert api.move(task_id, *PATHS[current]).status_code == 200
        if via_patch:
            result = api.patch(f"/tasks/{task_id}", {"status": wanted})
        else:
            result = api.post(f"/tasks/{task_id}/status", {"status": wanted})
        if wanted in table[current]:
            assert result.status_code == 200, result.text
            assert result.json["status"] == wanted
            assert (result.json["completed_at"] is not None) == (wanted == "done")
        else:
            assert result.status_code == 422, result.text
            detail = problem_pointers(result)["/status"]
            assert current in detail and all(allowed in detail for allowed in table[current])
            assert api.get(f"/tasks/{task_id}").json["status"] == current


def test_done_sets_completed_at_and_fires_the_business_events(api: Api) -> None:
    api.project()
    api.task(priority="p1")
    api.events.clear()
    api.done("T-1")
    task = api.get("/tasks/T-1").json
    assert task["completed_at"] is not None and task["completed_at"] >= task["created_at"]
    names = [name for name, _ in api.events]
    assert names.count("task.status_changed") == 3
    completed = [payload for name, payload in api.events if name == "task.completed"]
    assert completed == [
        {
            "task_id": "T-1",
            "project_id": "P-1",
            "priority": "p1",
            "created_at": task["created_at"],
            "completed_at": task["completed_at"],
        }
    ]
    changes = [(p["from"], p["to"]) for name, p in api.events if name == "task.status_changed"]
    assert changes == [("new", "ready"), ("ready", "in_progress"), ("in_progress", "done")]


def test_a_refused_change_fires_no_event(api: Api) -> None:
    api.project()
    api.task()
    api.events.clear()
    assert api.post("/tasks/T-1/status", {"status": "done"}).status_code == 422
    assert api.patch("/tasks/T-1", {"status": "done", "title": "changed"}).status_code == 422
    assert api.events == []
    assert api.get("/tasks/T-1").json["title"] == "Task T-1"


def test_a_task_cannot_be_done_before_what_it_depends_on(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2", depends_on=["T-1"])
    result = api.move("T-2", "ready", "in_progress", "done")
    assert result.status_code == 422
    assert "T-1" in problem_pointers(result)["/status"]
    api.done("T-1")
    assert api.post("/tasks/T-2/status", {"status": "done"}).status_code == 200


def test_dependency_cycles_are_refused_with_the_cycle_named(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2", depends_on=["T-1"])
    api.task("T-3", depends_on=["T-2"])
    result = api.patch("/tasks/T-1", {"depends_on": ["T-3"]})
    assert result.status_code == 422
    assert problem_pointers(result)["/depends_on"].endswith("T-1 -> T-3 -> T-2 -> T-1")
    assert api.patch("/tasks/T-3", {"depends_on": ["T-1"]}).status_code == 200


def test_a_task_others_depend_on_cannot_be_deleted(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2", depends_on=["T-1"])
    result = api.delete("/tasks/T-1")
    assert result.status_code == 409 and "T-2" in result.json["detail"]
    assert api.delete("/tasks/T-2").status_code == 204
    assert api.delete("/tasks/T-1").status_code == 204
    assert api.get("/tasks/T-1").status_code == 404


def test_sprint_must_exist_and_belong_to_the_same_project(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint("S-2", "P-2")
    result = api.post("/tasks", {"id": "T-1", "title": "x", "project_id": "P-1", "sprint_id": "S-2"})
    assert result.status_code == 422 and "P-2" in problem_pointers(result)["/sprint_id"]
    api.task("T-1")
    assert "/sprint_id" in problem_pointers(api.patch("/tasks/T-1", {"sprint_id": "S-9"}))
    api.sprint("S-1", "P-1")
    assert api.patch("/tasks/T-1", {"sprint_id": "S-1"}).json["sprint_id"] == "S-1"
    assert api.patch("/tasks/T-1", {"sprint_id": None}).json["sprint_id"] is None


def test_if_match_guards_patch_delete_and_status(api: Api) -> None:
    api.project()
    api.task()
    assert api.patch("/tasks/T-1", {"owner": "a"}, headers={"If-Match": '"1"'}).status_code == 200
    stale = api.patch("/tasks/T-1", {"owner": "b"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json["current_version"] == 2 and stale.headers["etag"] == '"2"'
    assert api.post("/tasks/T-1/status", {"status": "ready"}, headers={"If-Match": '"1"'}).status_code == 412
    assert api.delete("/tasks/T-1", headers={"If-Match": '"1"'}).status_code == 412
    # If-Match compares strongly (RFC 9110 section 13.1.1): a weak tag never matches, even the current version's.
    weak = api.patch("/tasks/T-1", {"owner": "c"}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 412 and weak.json["current_version"] == 2
    assert api.patch("/tasks/T-1", {"owner": "c"}, headers={"If-Match": 'W/"2", "2", "9"'}).status_code == 200
    assert api.patch("/tasks/T-1", {"owner": "d"}, headers={"If-Match": "*"}).status_code == 200
    assert api.delete("/tasks/T-1", headers={"If-Match": '"4"'}).status_code == 204


def test_if_none_match_gives_304(api: Api) -> None:
    api.project()
    api.task()
    result = api.get("/tasks/T-1", headers={"If-None-Match": '"1"'})
    assert result.status_code == 304 and result.headers["etag"] == '"1"' and result.text == ""
    assert api.get("/tasks/T-1", headers={"If-None-Match": '"2"'}).status_code == 200
    # If-None-Match compares weakly.
    assert api.get("/tasks/T-1", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_etags_stay_strong_and_work_through_compression(api: Api) -> None:
    api.project()
    api.task(description="words " * 500)  # well above the compression threshold
    first = api.get("/tasks/T-1", headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip" and first.headers["etag"] == '"1"'
    tag = first.headers["etag"]
    again = api.get("/tasks/T-1", headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag
    changed = api.patch("/tasks/T-1", {"owner": "a"}, headers={"Accept-Encoding": "gzip", "If-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] == '"2"'
    assert api.patch("/tasks/T-1", {"owner": "b"}, headers={"If-Match": 'W/"2"'}).status_code == 412


def test_unknown_query_parameters_are_refused_on_item_routes(api: Api) -> None:
    api.project()
    api.task()
    result = api.get("/tasks/T-1", params={"expand": "all"})
    assert result.status_code == 400
    assert result.json["errors"] == [{"parameter": "expand", "detail": "is not a parameter of this route"}]


def test_events_are_fired_after_commit_with_ids_not_bodies(api: Api) -> None:
    api.project()
    api.events.clear()
    api.task(labels=["a"])
    names = [name for name, _ in api.events]
    assert names == ["project.health_changed", "task.created"]
    created = dict(api.events)["task.created"]
    assert created == {"task_id": "T-1", "project_id": "P-1", "sprint_id": None, "priority": "p2", "status": "new"}


def test_points_come_back_as_they_were_written_on_both_databases(api: Api) -> None:
    """PostgreSQL's FLOAT was a 4-byte REAL: 1234.5678 came back 1234.5677 (migration 0005)."""
    api.project()
    api.sprint(velocity_target_points=98765.4321)
    for n, points in enumerate((1234.5678, 0.1, 99999.99, 12345.678901, 1e-7)):
        created = api.task(f"T-{n}", estimate_points=points)
        assert created["estimate_points"] == points
        assert api.get(f"/tasks/T-{n}").json["estimate_points"] == points
    assert api.get("/sprints/S-1").json["velocity_target_points"] == 98765.4321
