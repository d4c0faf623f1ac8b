"""Sprints (start, close with carry-over, burndown) and projects (cascade delete, metrics, velocity)."""

from __future__ import annotations

from tests.tracker.conftest import Api, problem_pointers


def test_full_flow_project_sprint_tasks_close_sprint(api: Api) -> None:
    api.project()
    api.sprint("S-1", velocity_target_points=10)
    api.sprint("S-2", start_date="2026-11-16", end_date="2026-11-27")
    for task_id, points in (("T-1", 3), ("T-2", 5), ("T-3", 2), ("T-4", 1)):
        api.task(task_id, sprint_id="S-1", estimate_points=points)
    assert api.post("/sprints/S-1/start").json["status"] == "active"
    api.done("T-1")
    api.move("T-3", "dropped")
    api.move("T-2", "ready", "in_progress", "blocked")
    api.events.clear()

    closed = api.post("/sprints/S-1/close", {"carry_over": "S-2"})
    assert closed.status_code == 200, closed.text
    sprint = closed.json
    assert sprint["status"] == "closed"
    assert sprint["committed_points"] == 9.0  # the dropped task's points are not committed
    assert sprint["completed_points"] == 3.0
    assert api.get("/tasks/T-2").json["sprint_id"] == "S-2"
    assert api.get("/tasks/T-4").json["sprint_id"] == "S-2"
    assert api.get("/tasks/T-1").json["sprint_id"] == "S-1"
    assert api.get("/tasks/T-3").json["sprint_id"] == "S-1"
    event = dict(api.events)["sprint.closed"]
    assert event["completed_points"] == 3.0 and event["project_id"] == "P-1"
    assert sorted(event["carried_over_task_ids"]) == ["T-2", "T-4"]

    velocity = api.get("/projects/P-1/velocity").json
    assert velocity["sprints"] == [
        {"sprint_id": "S-1", "name": "S-1", "end_date": "2026-11-13", "committed_points": 9.0, "completed_points": 3.0}
    ]
    assert velocity["average_completed_points"] == 3.0


def test_close_to_the_backlog_is_the_default(api: Api) -> None:
    api.project()
    api.sprint()
    api.task(sprint_id="S-1")
    api.post("/sprints/S-1/start")
    assert api.post("/sprints/S-1/close").status_code == 200
    assert api.get("/tasks/T-1").json["sprint_id"] is None


def test_only_a_planned_sprint_starts_and_only_an_active_one_closes(api: Api) -> None:
    api.project()
    api.sprint()
    assert api.post("/sprints/S-1/close").status_code == 409
    assert api.post("/sprints/S-1/start").status_code == 200
    again = api.post("/sprints/S-1/start")
    assert again.status_code == 409 and "active" in again.json["detail"]
    assert api.post("/sprints/S-1/close").status_code == 200
    assert api.post("/sprints/S-1/close").status_code == 409
    assert api.post("/sprints/S-1/start").status_code == 409


def test_one_active_sprint_per_project(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint("S-1")
    api.sprint("S-2")
    api.sprint("S-3", "P-2")
    assert api.post("/sprints/S-1/start").status_code == 200
    refused = api.post("/sprints/S-2/start")
    assert refused.status_code == 409 and "S-1" in refused.json["detail"]
    assert api.post("/sprints/S-3/start").status_code == 200  # another project


def test_carry_over_target_must_be_a_planned_sprint_of_the_project(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint("S-1")
    api.sprint("S-9", "P-2")
    api.post("/sprints/S-1/start")
    for target in ("S-404", "S-9", "S-1"):
        result = api.post("/sprints/S-1/close", {"carry_over": target})
        assert result.status_code == 422, target
        assert "/carry_over" in problem_pointers(result)
    assert "/carry_over" in problem_pointers(api.post("/sprints/S-1/close", {"carry_over": "elsewhere"}))
    assert api.get("/sprints/S-1").json["status"] == "active"


def test_a_closed_sprints_tasks_cannot_move_in_or_out(api: Api) -> None:
    api.project()
    api.sprint("S-1")
    api.sprint("S-2")
    api.task("T-1", sprint_id="S-1")
    api.task("T-2")
    api.done("T-1")
    api.post("/sprints/S-1/start")
    api.post("/sprints/S-1/close")
    assert api.patch("/tasks/T-1", {"sprint_id": "S-2"}).status_code == 409
    assert api.patch("/tasks/T-2", {"sprint_id": "S-1"}).status_code == 409
    assert api.post("/tasks", {"id": "T-3", "title": "x", "project_id": "P-1", "sprint_id": "S-1"}).status_code == 409


def test_sprint_dates_and_project(api: Api) -> None:
    api.project()
    body = {"id": "S-1", "project_id": "P-1", "name": "s", "start_date": "2026-11-10", "end_date": "2026-11-09"}
    assert "/end_date" in problem_pointers(api.post("/sprints", body))
    assert "/project_id" in problem_pointers(
        api.post("/sprints", {**body, "project_id": "P-2", "end_date": "2026-11-11"})
    )
    assert "/status" in problem_pointers(api.post("/sprints", {**body, "end_date": "2026-11-11", "status": "active"}))
    api.sprint()
    assert "/end_date" in problem_pointers(api.patch("/sprints/S-1", {"end_date": "2026-11-01"}))


def test_deleting_sprints(api: Api) -> None:
    api.project()
    api.sprint("S-1")
    api.sprint("S-2")
    api.task("T-1", sprint_id="S-2")
    api.post("/sprints/S-1/start")
    assert api.delete("/sprints/S-1").status_code == 409
    assert api.delete("/sprints/S-2").status_code == 204
    task = api.get("/tasks/T-1").json
    assert task["sprint_id"] is None and task["version"] == 2


def test_project_metrics_health(api: Api) -> None:
    api.project()
    assert api.get("/projects/P-1/metrics").json["health_status"] == "green"  # empty
    for n in range(10):
        api.task(f"T-{n}")
    api.move("T-0", "ready", "in_progress", "blocked")
    api.move("T-1", "ready", "in_progress", "blocked")
    api.move("T-2", "ready", "in_progress", "blocked")
    metrics = api.get("/projects/P-1/metrics").json
    assert metrics["total_tasks"] == 10
    assert metrics["tasks_by_status"]["blocked"] == 3 and metrics["tasks_by_status"]["new"] == 7
    assert metrics["blocked_percentage"] == 30.0 and metrics["health_status"] == "red"
    health = [p for name, p in api.events if name == "project.health_changed"]
    assert health and all(0 <= p["score"] <= 100 for p in health)


def test_project_delete_needs_cascade_when_it_has_children(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint()
    api.task("T-1", sprint_id="S-1", labels=["x"], assignees=["ann"])
    api.task("T-2", depends_on=["T-1"])
    api.created("/action-lists", {"title": "retro", "project_id": "P-1", "sprint_id": "S-1"})
    refused = api.delete("/projects/P-1")
    assert refused.status_code == 409 and "cascade" in refused.json["detail"]
    assert api.delete("/projects/P-1", params={"cascade": "maybe"}).status_code == 400
    assert api.delete("/projects/P-1", params={"cascade": "true"}).status_code == 204
    for path in ("/projects/P-1", "/sprints/S-1", "/tasks/T-1", "/tasks/T-2"):
        assert api.get(path).status_code == 404, path
    assert api.get("/action-lists").json["items"] == []
    assert api.delete("/projects/P-2").status_code == 204


def test_project_dates_and_validation(api: Api) -> None:
    body = {"id": "P-1", "name": "n", "mission": "m", "owner": "o", "start_date": "2026-11-10"}
    assert "/target_end_date" in problem_pointers(api.post("/projects", {**body, "target_end_date": "2026-11-01"}))
    assert "/mission" in problem_pointers(api.post("/projects", {"id": "P-1", "name": "n", "owner": "o"}))
    assert "/status" in problem_pointers(api.post("/projects", {**body, "status": "archived"}))
    api.project(status="active", tags=["a"])
    assert api.patch("/projects/P-1", {"status": "paused", "tags": []}).json["tags"] == []


def test_a_read_returns_exactly_what_the_write_returned(api: Api) -> None:
    project = api.project(start_date="2026-11-01", target_end_date="2026-12-24", tags=["x"])
    sprint = api.sprint(goal="ship", velocity_target_points=8.5)
    task = api.task(due_at="2026-12-01T09:30:00+01:00", labels=["a"], estimate_points=2)
    listed = api.created("/action-lists", {"title": "t", "due_date": "2026-12-02", "items": [{"text": "a"}]})
    patched = api.patch("/tasks/T-1", {"summary": "s"}).json
    for path, written in (
        ("/projects/P-1", project),
        ("/sprints/S-1", sprint),
        ("/tasks/T-1", patched),
        (f"/action-lists/{listed['id']}", listed),
    ):
        read = api.get(path)
        assert read.json == written, path
        assert read.headers["etag"] == f'"{written["version"]}"'
    assert task["due_at"] == "2026-12-01T08:30:00.000000Z"


def test_conflict_messages_count_in_good_grammar(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2", depends_on=["T-1"])
    one = api.delete("/tasks/T-1")
    assert one.status_code == 409 and "T-2 depends on it" in one.json["detail"]
    api.task("T-3", depends_on=["T-1"])
    two = api.delete("/tasks/T-1")
    assert "T-2 and T-3 depend on it" in two.json["detail"]
    api.created("/action-lists", {"title": "retro", "project_id": "P-1"})
    held = api.delete("/projects/P-1").json["detail"]
    assert "still has 3 tasks and 1 action list;" in held
