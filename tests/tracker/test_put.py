"""PUT replaces a record (issue 15): POST's validation, defaults for what is left out, If-Match, the workflow."""

from __future__ import annotations

from typing import Any

from tests.tracker.conftest import Api, problem_pointers


def put(api: Api, path: str, body: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("headers", {})
    kwargs["headers"] = {"content-type": "application/json", **kwargs["headers"]}
    return api.client.simulate_put("/api/v1" + path, json=body, **kwargs)


def test_put_replaces_a_task_and_resets_what_it_leaves_out(api: Api) -> None:
    api.project()
    api.sprint()
    api.task("T-0")
    api.task(
        "T-1",
        summary="s",
        owner="ann",
        labels=["bug"],
        assignees=["bob"],
        priority="p0",
        estimate_points=3,
        sprint_id="S-1",
        depends_on=["T-0"],
    )
    api.events.clear()
    result = put(api, "/tasks/T-1", {"id": "T-1", "project_id": "P-1", "title": "Rewritten"})
    assert result.status_code == 200, result.text
    task = result.json
    assert task["title"] == "Rewritten" and task["version"] == 2 and result.headers["etag"] == '"2"'
    assert (task["summary"], task["owner"], task["labels"], task["assignees"]) == (None, None, [], [])
    assert (task["priority"], task["estimate_points"], task["sprint_id"], task["depends_on"]) == ("p2", None, None, [])
    assert api.get("/tasks/T-1").json == task
    # The link tables follow: the label and assignee filters no longer find it.
    assert api.get("/tasks", params={"label": "bug"}).json["items"] == []
    assert api.delete("/tasks/T-0").status_code == 204, "T-1 no longer depends on T-0"
    updated = [payload for name, payload in api.events if name == "task.updated"]
    assert updated and set(updated[0]["changed"]) >= {"title", "labels", "depends_on", "sprint_id", "priority"}


def test_put_validates_as_post_does(api: Api) -> None:
    api.project()
    api.task()
    before = api.get("/tasks/T-1").json
    missing = put(api, "/tasks/T-1", {"id": "T-1", "project_id": "P-1"})
    assert missing.status_code == 422 and problem_pointers(missing) == {"/title": "is required"}
    read_only = put(api, "/tasks/T-1", {**before, "title": "x"})
    assert read_only.status_code == 422
    assert set(problem_pointers(read_only)) == {"/completed_at", "/created_at", "/updated_at", "/version"}
    assert put(api, "/tasks/T-1", {"id": "T-1", "project_id": "P-1", "title": ""}).status_code == 422
    bad_type = api.client.simulate_put("/api/v1/tasks/T-1", body="{}", headers={"content-type": "text/plain"})
    assert bad_type.status_code == 415
    merge = api.client.simulate_put(
        "/api/v1/tasks/T-1", body="{}", headers={"content-type": "application/merge-patch+json"}
    )
    assert merge.status_code == 415, "a replacement is a JSON document, not a merge patch"
    assert api.get("/tasks/T-1").json == before, "nothing was half-written"


def test_put_cannot_change_the_id_or_the_project(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.task()
    moved = put(api, "/tasks/T-1", {"id": "T-2", "project_id": "P-2", "title": "x"})
    assert moved.status_code == 422
    assert problem_pointers(moved) == {"/id": "cannot change: it is T-1", "/project_id": "cannot change: it is P-1"}
    assert api.get("/tasks/T-2").status_code == 404 and api.get("/tasks/T-1").json["version"] == 1


def test_put_of_a_missing_record_is_404(api: Api) -> None:
    api.project()
    result = put(api, "/tasks/T-9", {"id": "T-9", "project_id": "P-1", "title": "x"})
    assert result.status_code == 404
    assert api.get("/tasks/T-9").status_code == 404, "PUT replaces; it never creates"


def test_put_honours_if_match_strongly(api: Api) -> None:
    api.project()
    api.task()
    body = {"id": "T-1", "project_id": "P-1", "title": "x"}
    assert put(api, "/tasks/T-1", body, headers={"If-Match": '"1"'}).status_code == 200
    stale = put(api, "/tasks/T-1", {**body, "title": "y"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json["current_version"] == 2
    assert put(api, "/tasks/T-1", {**body, "title": "y"}, headers={"If-Match": 'W/"2"'}).status_code == 412
    assert put(api, "/tasks/T-1", {**body, "title": "y"}, headers={"If-Match": '"2"'}).status_code == 200


def test_put_follows_the_transition_table_as_patch_does(api: Api) -> None:
    api.project()
    api.task()
    base = {"id": "T-1", "project_id": "P-1", "title": "x"}
    jump = put(api, "/tasks/T-1", {**base, "status": "done"})
    assert jump.status_code == 422 and "cannot move from new to done" in problem_pointers(jump)["/status"]
    assert put(api, "/tasks/T-1", {**base, "status": "ready"}).json["status"] == "ready"
    # Leaving the status out means the default, new: a move the table refuses, as a PATCH to new would be.
    back = put(api, "/tasks/T-1", base)
    assert back.status_code == 422 and "cannot move from ready to new" in problem_pointers(back)["/status"]
    api.events.clear()
    assert put(api, "/tasks/T-1", {**base, "status": "in_progress"}).status_code == 200
    assert [n for n, _ in api.events if n == "task.status_changed"] == ["task.status_changed"]
    done = put(api, "/tasks/T-1", {**base, "status": "done"})
    assert done.status_code == 200 and done.json["completed_at"] is not None


def test_put_replaces_projects_sprints_and_action_lists(api: Api) -> None:
    api.project("P-1", status="active", tags=["a"], start_date="2026-11-01")
    project = put(api, "/projects/P-1", {"id": "P-1", "name": "N", "mission": "M", "owner": "o"})
    assert project.status_code == 200, project.text
    assert (project.json["status"], project.json["tags"], project.json["start_date"]) == ("discovery", [], None)

    api.sprint("S-1", goal="g", velocity_target_points=5)
    body = {"id": "S-1", "project_id": "P-1", "name": "Renamed", "start_date": "2026-11-02", "end_date": "2026-11-20"}
    sprint = put(api, "/sprints/S-1", body)
    assert sprint.status_code == 200, sprint.text
    replaced = sprint.json
    assert (replaced["goal"], replaced["velocity_target_points"], replaced["cadence"]) == (None, None, "biweekly")
    assert sprint.json["status"] == "planned"
    with_status = put(api, "/sprints/S-1", {**body, "status": "active"})
    assert with_status.status_code == 422 and "/status" in problem_pointers(with_status), "status is read-only"
    backwards = put(api, "/sprints/S-1", {**body, "end_date": "2026-11-01"})
    assert backwards.status_code == 422 and "/end_date" in problem_pointers(backwards)

    created = api.created("/action-lists", {"title": "t", "owner": "ann", "status": "completed", "tags": ["x"]})
    assert created["completed_at"] is not None
    replaced = put(api, f"/action-lists/{created['id']}", {"title": "u"})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json["owner"], replaced.json["status"], replaced.json["tags"]) == (None, "active", [])
    assert replaced.json["completed_at"] is None and replaced.json["id"] == created["id"]
    given_id = put(api, f"/action-lists/{created['id']}", {"title": "u", "id": created["id"]})
    assert given_id.status_code == 422 and "/id" in problem_pointers(given_id), "its id is the server's"
