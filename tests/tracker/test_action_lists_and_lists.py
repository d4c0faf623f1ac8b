"""Action lists and their items; list pages, filters, sorts and cursors; idempotent POSTs."""

from __future__ import annotations

from typing import Any

from tests.tracker.conftest import Api, problem_pointers


def walk(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        result = api.get(path, params=query)
        assert result.status_code == 200, result.text
        page = result.json
        rows.extend(page["items"])
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            assert "link" not in result.headers
            return rows
        assert 'rel="next"' in result.headers["link"] and "cursor=" in result.headers["link"]
        cursor = page["next_cursor"]


def test_action_list_ids_are_chosen_by_the_server(api: Api) -> None:
    created = api.created("/action-lists", {"title": "Retro", "items": [{"text": "a"}, {"text": "b", "done": True}]})
    assert created["id"].startswith("AL-") and created["status"] == "active"
    assert [(i["text"], i["done"], i["task_id"], i["task"]) for i in created["items"]] == [
        ("a", False, None, None),
        ("b", True, None, None),
    ]
    assert "/id" in problem_pointers(api.post("/action-lists", {"id": "AL-mine", "title": "x"}))


def test_action_list_items_add_edit_delete_reorder_complete(api: Api) -> None:
    list_id = api.created("/action-lists", {"title": "Retro", "items": [{"text": "a"}, {"text": "b"}]})["id"]
    path = f"/action-lists/{list_id}"
    added = api.post(f"{path}/items", {"text": "c"}).json["items"][-1]
    assert (added["text"], added["done"]) == ("c", False) and added["id"].startswith("I-")
    first = api.patch(f"{path}/items/0", {"done": True}).json["items"][0]
    assert (first["text"], first["done"]) == ("a", True)
    reordered = api.post(f"{path}/items/reorder", {"order": [2, 0, 1]})
    assert [i["text"] for i in reordered.json["items"]] == ["c", "a", "b"]
    for bad in ([0, 1], [0, 1, 1], [0, 1, 3], [2, 1, 0, 3]):
        assert "/order" in problem_pointers(api.post(f"{path}/items/reorder", {"order": bad})), bad
    deleted = api.delete(f"{path}/items/1", headers={"If-Match": f'"{reordered.json["version"]}"'})
    assert [i["text"] for i in deleted.json["items"]] == ["c", "b"]
    assert api.delete(f"{path}/items/9").status_code == 404
    assert api.patch(f"{path}/items/9", {"done": True}).status_code == 404
    assert api.get(f"{path}/items/x").status_code in (404, 405)
    completed = api.post(f"{path}/complete")
    assert completed.json["status"] == "completed" and completed.json["completed_at"] is not None
    assert ("action_list.completed", {"action_list_id": list_id}) in api.events


def test_action_list_references_must_exist_and_agree(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint("S-2", "P-2")
    assert "/project_id" in problem_pointers(api.post("/action-lists", {"title": "x", "project_id": "P-9"}))
    assert "/sprint_id" in problem_pointers(api.post("/action-lists", {"title": "x", "sprint_id": "S-9"}))
    result = api.post("/action-lists", {"title": "x", "project_id": "P-1", "sprint_id": "S-2"})
    assert "/sprint_id" in problem_pointers(result)


def test_walking_every_page_returns_every_row_once(api: Api) -> None:
    api.project()
    for n in range(23):
        api.task(
            f"T-{n:02d}",
            priority=("p0", "p1", "p2", "p3")[n % 4],
            **({"due_at": f"2026-12-{n + 1:02d}T00:00:00Z"} if n % 3 else {}),
        )
    everything = {f"T-{n:02d}" for n in range(23)}
    for sort in (None, "-created_at", "due_at", "-due_at", "-priority,due_at", "title", "estimate_points,-id"):
        rows = walk(api, "/tasks", limit="4", **({"sort": sort} if sort else {}))
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)) == 23, sort
        assert set(ids) == everything
    by_due = [row["due_at"] for row in walk(api, "/tasks", limit="5", sort="due_at")]
    dated = [d for d in by_due if d is not None]
    assert dated == sorted(dated) and by_due[len(dated) :] == [None] * (23 - len(dated))
    priorities = [row["priority"] for row in walk(api, "/tasks", limit="6", sort="-priority")]
    assert priorities == sorted(priorities, reverse=True)


def test_filters_combine_with_and(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.sprint("S-1")
    api.task(
        "T-1", labels=["bug", "ui"], assignees=["ann"], owner="ann", sprint_id="S-1", due_at="2026-12-01T00:00:00Z"
    )
    api.task("T-2", labels=["bug"], assignees=["bob"], priority="p0", title="Fix the login", summary="crash")
    api.task("T-3", "P-2", labels=["ui"], description="Login page redesign")
    api.move("T-2", "ready")

    def ids(**params: str) -> list[str]:
        result = api.get("/tasks", params=params)
        assert result.status_code == 200, result.text
        return [row["id"] for row in result.json["items"]]

    assert ids(label="bug") == ["T-1", "T-2"]
    assert ids(label="bug", assignee="bob") == ["T-2"]
    assert ids(label="ui", project_id="P-1") == ["T-1"]
    assert ids(status="new,ready", priority="p0") == ["T-2"]
    assert ids(status="new") == ["T-1", "T-3"]
    assert ids(sprint_id="none") == ["T-2", "T-3"]
    assert ids(sprint_id="S-1") == ["T-1"]
    assert ids(owner="ann") == ["T-1"]
    assert ids(due_before="2026-12-02") == ["T-1"]
    assert ids(due_after="2026-12-02T00:00:00Z") == []
    assert ids(q="login") == ["T-2", "T-3"]
    assert ids(q="%") == []
    assert ids(updated_since="2000-01-01") == ["T-1", "T-2", "T-3"]


def test_bad_list_queries_are_400_never_ignored(api: Api) -> None:
    for params in (
        {"colour": "red"},
        {"status": "open"},
        {"priority": "P0"},
        {"sort": "colour"},
        {"sort": "-title,title"},
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"cursor": "garbage"},
        {"due_before": "soon"},
        {"project_id": "X-1"},
        {"sprint_id": "nothing"},
        {"q": ""},
    ):
        result = api.get("/tasks", params=params)
        assert result.status_code == 400, params
        assert result.headers["content-type"] == "application/problem+json"
        assert result.json["errors"][0]["parameter"] in params
    repeated = api.client.simulate_get("/api/v1/tasks", query_string="status=new&status=ready")
    assert repeated.status_code == 400


def test_a_cursor_only_works_for_the_query_that_made_it(api: Api) -> None:
    api.project()
    for n in range(3):
        api.task(f"T-{n}")
    cursor = api.get("/tasks", params={"limit": "1"}).json["next_cursor"]
    assert api.get("/tasks", params={"limit": "1", "cursor": cursor}).status_code == 200
    assert api.get("/tasks", params={"limit": "1", "cursor": cursor, "sort": "title"}).status_code == 400
    assert api.get("/tasks", params={"limit": "1", "cursor": cursor, "status": "new"}).status_code == 400


def test_lists_of_each_collection(api: Api) -> None:
    api.project("P-1", status="active")
    api.project("P-2")
    api.sprint("S-1")
    api.created("/action-lists", {"title": "a", "project_id": "P-1"})
    assert [p["id"] for p in api.get("/projects", params={"status": "active"}).json["items"]] == ["P-1"]
    assert [s["id"] for s in api.get("/sprints", params={"project_id": "P-1"}).json["items"]] == ["S-1"]
    assert len(api.get("/action-lists", params={"project_id": "P-1"}).json["items"]) == 1
    assert api.get("/action-lists", params={"project_id": "none"}).json["items"] == []


def test_idempotent_post_replays_and_refuses_another_body(api: Api) -> None:
    api.project()
    body = {"id": "T-1", "title": "once", "project_id": "P-1"}
    first = api.post("/tasks", body, headers={"Idempotency-Key": "abc-123"})
    api.events.clear()
    again = api.post("/tasks", body, headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert api.events == []
    other = api.post("/tasks", {**body, "title": "twice"}, headers={"Idempotency-Key": "abc-123"})
    assert other.status_code == 422
    assert api.post("/tasks", body, headers={"Idempotency-Key": "other"}).status_code == 409
    assert api.post("/tasks", body, headers={"Idempotency-Key": "bad key"}).status_code == 400


def test_idempotent_state_changes_replay_too(api: Api) -> None:
    api.project()
    api.task()
    first = api.post("/tasks/T-1/status", {"status": "ready"}, headers={"Idempotency-Key": "k"})
    again = api.post("/tasks/T-1/status", {"status": "ready"}, headers={"Idempotency-Key": "k"})
    assert first.status_code == again.status_code == 200 and again.json["version"] == 2
    assert api.get("/tasks/T-1").json["version"] == 2


def test_a_failed_idempotent_post_can_be_retried(api: Api) -> None:
    body = {"id": "T-1", "title": "x", "project_id": "P-1"}
    assert api.post("/tasks", body, headers={"Idempotency-Key": "k"}).status_code == 422  # no project yet
    api.project()
    assert api.post("/tasks", body, headers={"Idempotency-Key": "k"}).status_code == 201
