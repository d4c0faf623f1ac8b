"""Sprint progress (issue 15), and every report as its typed schema in the OpenAPI document says."""

from __future__ import annotations

import datetime
from typing import Any

import jsonschema
import pytest

from tests.tracker.conftest import Api

SHARED = ("as_of", "completed_points", "remaining_points", "days_total", "days_elapsed", "days_remaining")


def at(day: str, hour: int = 12) -> datetime.datetime:
    return datetime.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def report(api: Api, path: str) -> dict[str, Any]:
    result = api.get(path)
    assert result.status_code == 200, result.text
    return dict(result.json)


def progress_and_burndown(api: Api, sprint: str = "S-1") -> tuple[dict[str, Any], dict[str, Any]]:
    progress = report(api, f"/sprints/{sprint}/progress")
    burndown = report(api, f"/sprints/{sprint}/burndown")
    for key in (*SHARED, "days_past_end", "on_track", "sprint_id", "status"):
        assert progress[key] == burndown[key], key
    assert progress["committed_points"] == burndown["total_points"]
    return progress, burndown


def test_progress_of_an_active_sprint(api: Api, clock: Any) -> None:
    api.project()
    api.sprint("S-1", start_date="2026-11-09", end_date="2026-11-15")
    for task_id, points in (("T-1", 4), ("T-2", 6), ("T-3", 2), ("T-4", 3)):
        api.task(task_id, sprint_id="S-1", estimate_points=points)
    api.task("T-5", sprint_id="S-1")  # no estimate
    api.post("/sprints/S-1/start")
    api.done("T-1")
    api.move("T-2", "ready", "in_progress", "blocked")
    api.move("T-4", "dropped")
    progress, _ = progress_and_burndown(api)
    assert progress["tasks_by_status"] == {
        "new": 2,
        "ready": 0,
        "in_progress": 0,
        "blocked": 1,
        "review": 0,
        "done": 1,
        "dropped": 1,
    }
    assert progress["total_tasks"] == 5
    assert (progress["committed_points"], progress["completed_points"], progress["remaining_points"]) == (12, 4, 8)
    assert progress["completion_percentage"] == 33.33
    assert (progress["days_total"], progress["days_elapsed"], progress["days_remaining"]) == (7, 2, 5)
    assert progress["as_of"] == "2026-11-10" and progress["status"] == "active"
    clock.move_to(at("2026-11-18"))
    api.done("T-3")
    late, _ = progress_and_burndown(api)
    assert (late["completed_points"], late["days_remaining"], late["days_past_end"]) == (6, 0, 3)


def test_progress_of_a_planned_and_of_a_closed_sprint(api: Api, clock: Any) -> None:
    api.project()
    api.sprint("S-1", start_date="2026-11-20", end_date="2026-11-30")
    empty, _ = progress_and_burndown(api)
    assert (empty["total_tasks"], empty["committed_points"], empty["completion_percentage"]) == (0, 0, 0)
    assert (empty["as_of"], empty["days_elapsed"]) == ("2026-11-20", 0)
    api.sprint("S-2", start_date="2026-11-09", end_date="2026-11-13")
    api.task("T-1", sprint_id="S-2", estimate_points=5)
    api.task("T-2", sprint_id="S-2", estimate_points=5)
    api.post("/sprints/S-2/start")
    api.done("T-1")
    clock.move_to(at("2026-11-12"))
    api.post("/sprints/S-2/close")
    clock.move_to(at("2026-12-25"))
    closed, _ = progress_and_burndown(api, "S-2")
    assert closed["as_of"] == "2026-11-12", "a closed sprint stands where it closed"
    assert closed["tasks_by_status"]["done"] == 1 and closed["total_tasks"] == 1, "T-2 was carried over"
    assert (closed["committed_points"], closed["completed_points"], closed["completion_percentage"]) == (10, 5, 50)


def test_progress_of_an_unknown_sprint_is_404(api: Api) -> None:
    assert api.get("/sprints/S-9/progress").status_code == 404
    assert api.get(f"/sprints/S-{'x' * 80}/progress").status_code == 404
    api.project()
    api.sprint()
    assert api.get("/sprints/S-1/progress", params={"as_of": "2026-11-11"}).status_code == 400


def resolved(document: dict[str, Any], name: str) -> dict[str, Any]:
    """A component schema with the document's other components reachable for its $refs."""
    return {**document["components"]["schemas"][name], "components": document["components"]}


@pytest.mark.parametrize(
    ("template", "path", "schema"),
    [
        ("/projects/{project_id}/metrics", "/projects/P-1/metrics", "ProjectMetrics"),
        ("/projects/{project_id}/velocity", "/projects/P-1/velocity", "Velocity"),
        ("/sprints/{sprint_id}/burndown", "/sprints/S-1/burndown", "Burndown"),
        ("/sprints/{sprint_id}/progress", "/sprints/S-1/progress", "SprintProgress"),
        ("/sprints/{sprint_id}/progress", "/sprints/S-2/progress", "SprintProgress"),
    ],
)
def test_every_report_is_typed_and_answers_as_its_schema_says(api: Api, template: str, path: str, schema: str) -> None:
    document = api.client.simulate_get("/api/openapi.json").json
    api.project()
    api.sprint("S-1")
    api.sprint("S-2", start_date="2026-11-09", end_date="2026-11-12")
    api.task("T-1", sprint_id="S-2", estimate_points=3)
    api.post("/sprints/S-2/start")
    api.done("T-1")
    api.post("/sprints/S-2/close")
    operation = document["paths"]["/api/v1" + template]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{schema}"
    }
    typed = document["components"]["schemas"][schema]
    assert typed["type"] == "object" and set(typed["required"]) == set(typed["properties"])
    jsonschema.validate(report(api, path), resolved(document, schema))
