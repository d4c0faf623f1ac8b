"""Lists (issue 15): totals on request, the completed_at and updated_at sort keys, priority by urgency."""

from __future__ import annotations

from typing import Any

from tests.tracker.conftest import Api


def walk(api: Api, path: str, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = api.get(path, params=params)
        assert page.status_code == 200, page.text
        rows += page.json["items"]
        if not page.json["has_more"]:
            return rows
        params["cursor"] = page.json["next_cursor"]


def test_count_true_adds_the_exact_total_of_the_filters_on_every_page(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    for n in range(7):
        api.task(f"T-{n}", "P-1" if n < 5 else "P-2", labels=["bug"] if n % 2 else [])
    plain = api.get("/tasks")
    assert "total" not in plain.json, "a list without count=true costs what it always did"
    assert "total" not in api.get("/tasks", params={"count": "false"}).json
    first = api.get("/tasks", params={"count": "true", "project_id": "P-1", "limit": "2"})
    assert first.json["total"] == 5 and len(first.json["items"]) == 2
    assert "count=true" in first.headers["link"], "the next page's link keeps asking for the total"
    second = api.get(
        "/tasks", params={"count": "true", "project_id": "P-1", "limit": "2", "cursor": first.json["next_cursor"]}
    )
    assert second.json["total"] == 5, "the total counts the whole walk, not what is left of it"
    assert api.get("/tasks", params={"count": "true", "label": "bug"}).json["total"] == 3
    assert api.get("/tasks", params={"count": "true", "q": "nothing like it"}).json == {
        "items": [],
        "next_cursor": None,
        "has_more": False,
        "total": 0,
    }
    for path in ("/projects", "/sprints", "/action-lists"):
        assert "total" in api.get(path, params={"count": "true"}).json, path
    assert api.get("/projects", params={"count": "true"}).json["total"] == 2


def test_count_takes_true_or_false_only(api: Api) -> None:
    for value in ("1", "TRUE", "yes", ""):
        result = api.get("/tasks", params={"count": value})
        assert result.status_code == 400, value
        assert result.json["errors"] == [{"parameter": "count", "detail": "must be true or false"}]
    repeated = api.client.simulate_get("/api/v1/tasks", query_string="count=true&count=true")
    assert repeated.status_code == 400


def test_a_cursor_made_with_count_works_without_it(api: Api) -> None:
    api.project()
    for n in range(3):
        api.task(f"T-{n}")
    cursor = api.get("/tasks", params={"limit": "1", "count": "true"}).json["next_cursor"]
    assert [t["id"] for t in api.get("/tasks", params={"limit": "2", "cursor": cursor}).json["items"]] == ["T-1", "T-2"]


def test_tasks_sort_by_completed_at_with_open_tasks_last(api: Api, clock: Any) -> None:
    api.project()
    for n in range(5):
        api.task(f"T-{n}")
    for task_id in ("T-3", "T-1", "T-4"):
        clock.shift(60)
        api.done(task_id)
    done_order = [t["id"] for t in walk(api, "/tasks", sort="completed_at", limit="2")]
    assert done_order == ["T-3", "T-1", "T-4", "T-0", "T-2"]
    latest_first = [t["id"] for t in walk(api, "/tasks", sort="-completed_at", limit="2")]
    assert latest_first == ["T-4", "T-1", "T-3", "T-2", "T-0"], "newest first, open tasks still last"


def test_updated_at_sorts_every_collection(api: Api, clock: Any) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint("S-1")
    api.sprint("S-2")
    first = api.created("/action-lists", {"title": "a"})
    second = api.created("/action-lists", {"title": "b"})
    api.task("T-1")
    api.task("T-2")
    clock.shift(60)
    for path, field in (
        ("/projects/P-1", "name"),
        ("/sprints/S-1", "name"),
        (f"/action-lists/{first['id']}", "title"),
        ("/tasks/T-1", "title"),
    ):
        assert api.patch(path, {field: "new"}).status_code == 200
    expected = {
        "/projects": ["P-2", "P-1"],
        "/sprints": ["S-2", "S-1"],
        "/action-lists": [second["id"], first["id"]],
        "/tasks": ["T-2", "T-1"],
    }
    for path, order in expected.items():
        assert [row["id"] for row in walk(api, path, sort="updated_at", limit="1")] == order, path
        assert [row["id"] for row in walk(api, path, sort="-updated_at", limit="1")] == order[::-1], path


def test_action_lists_sort_by_completed_at(api: Api, clock: Any) -> None:
    lists = [api.created("/action-lists", {"title": f"l{n}"})["id"] for n in range(3)]
    clock.shift(60)
    assert api.post(f"/action-lists/{lists[2]}/complete").status_code == 200
    clock.shift(60)
    assert api.post(f"/action-lists/{lists[0]}/complete").status_code == 200
    assert [row["id"] for row in walk(api, "/action-lists", sort="completed_at")] == [lists[2], lists[0], lists[1]]


def test_priority_sorts_by_urgency_p0_first(api: Api) -> None:
    api.project()
    for n, priority in enumerate(("p2", "p0", "p3", "p1")):
        api.task(f"T-{n}", priority=priority)
    assert [t["priority"] for t in walk(api, "/tasks", sort="priority")] == ["p0", "p1", "p2", "p3"]
    assert [t["priority"] for t in walk(api, "/tasks", sort="-priority")] == ["p3", "p2", "p1", "p0"]
