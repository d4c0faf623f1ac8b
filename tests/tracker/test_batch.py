"""POST /tasks/batch (issue 15): up to 500 tasks, all or none, errors per item, idempotent, one write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon.testing

from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api, problem_pointers


def tasks(count: int, start: int = 0, **fields: Any) -> list[dict[str, Any]]:
    return [{"id": f"T-{n}", "title": f"Task {n}", "project_id": "P-1", **fields} for n in range(start, start + count)]


def test_a_batch_creates_every_task_and_fires_an_event_each(api: Api) -> None:
    api.project()
    api.project("P-2")
    api.events.clear()
    items = [*tasks(3, labels=["seed"]), {"id": "T-9", "title": "Other", "project_id": "P-2", "depends_on": ["T-0"]}]
    result = api.post("/tasks/batch", {"items": items})
    assert result.status_code == 201, result.text
    assert [t["id"] for t in result.json["items"]] == ["T-0", "T-1", "T-2", "T-9"]
    assert result.json["items"][3]["depends_on"] == ["T-0"], "an item may depend on an earlier one"
    assert result.json["items"][0] == api.get("/tasks/T-0").json
    assert api.get("/tasks", params={"label": "seed", "count": "true"}).json["total"] == 3
    created = [payload["task_id"] for name, payload in api.events if name == "task.created"]
    assert created == ["T-0", "T-1", "T-2", "T-9"]
    health = [payload["project_id"] for name, payload in api.events if name == "project.health_changed"]
    assert health == ["P-1", "P-2"], "one health event per project, after the tasks"


def test_one_bad_item_refuses_the_batch_naming_every_problem_by_item(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.events.clear()
    items = tasks(5, start=10)
    items[1]["title"] = ""
    items[3]["project_id"] = "P-9"
    items.append({"id": "T-1", "title": "again", "project_id": "P-1"})
    items.append({"id": "T-20", "title": "later", "project_id": "P-1", "depends_on": ["T-21"]})
    result = api.post("/tasks/batch", {"items": items})
    assert result.status_code == 422
    assert problem_pointers(result) == {"/items/1/title": "must be at least 1 character long"}, "schema first"
    items[1]["title"] = "fixed"
    result = api.post("/tasks/batch", {"items": items})
    assert result.status_code == 422, result.text
    assert problem_pointers(result) == {
        "/items/3/project_id": "project P-9 does not exist",
        "/items/5/id": "Task T-1 already exists.",
        "/items/6/depends_on/0": "task T-21 does not exist",
    }
    assert result.json["detail"] == "No task was created: 3 items were refused."
    assert api.get("/tasks", params={"count": "true"}).json["total"] == 1, "nothing was half-written"
    assert api.events == []


def test_ids_repeated_within_a_batch_are_refused(api: Api) -> None:
    api.project()
    result = api.post("/tasks/batch", {"items": [*tasks(2), tasks(1)[0]]})
    assert problem_pointers(result) == {"/items/2/id": "repeats the id of item 0"}


def test_a_batch_holds_1_to_500_tasks(api: Api) -> None:
    api.project()
    assert "/items" in problem_pointers(api.post("/tasks/batch", {"items": []}))
    too_many = api.post("/tasks/batch", {"items": tasks(501)})
    assert too_many.status_code == 422 and problem_pointers(too_many) == {"/items": "must have at most 500 items"}
    assert api.post("/tasks/batch", {"tasks": tasks(1)}).status_code == 422
    assert api.post("/tasks/batch", {"items": tasks(500)}).status_code == 201
    assert api.get("/tasks", params={"count": "true", "limit": "1"}).json["total"] == 500


def test_a_batch_honours_idempotency_keys(api: Api) -> None:
    api.project()
    key = {"Idempotency-Key": "seed-1"}
    first = api.post("/tasks/batch", {"items": tasks(3)}, headers=key)
    again = api.post("/tasks/batch", {"items": tasks(3)}, headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json
    other = api.post("/tasks/batch", {"items": tasks(2)}, headers=key)
    assert other.status_code == 422, "the same key with another body"


def test_a_batch_is_one_write_for_the_rate_limiter(make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client(environ={"APP_RATELIMIT__ANONYMOUS_WRITES": "3/minute"})
    api = Api(client, LifecyclePlugin())
    api.project()
    result = api.post("/tasks/batch", {"items": tasks(200)})
    assert result.status_code == 201
    assert result.headers["ratelimit-limit"] == "3" and result.headers["ratelimit-remaining"] == "1"


def test_only_post_is_served_and_the_path_is_no_task(api: Api) -> None:
    assert api.get("/tasks/batch").status_code == 405
    assert api.patch("/tasks/batch", {}).status_code == 405
