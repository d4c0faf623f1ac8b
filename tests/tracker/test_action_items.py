"""Action list items with stable ids that may link a task (issue 15); the index addressing stays as an alias."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskman_plugins import tracker

from taskman.migrations import Migrations
from tests.conftest import database_for
from tests.tracker.conftest import Api, problem_pointers


def new_list(api: Api, **fields: Any) -> dict[str, Any]:
    return api.created("/action-lists", {"title": "Retro", **fields})


def test_items_have_stable_ids_to_edit_delete_and_reorder_them_by(api: Api) -> None:
    made = new_list(api, items=[{"text": "a"}, {"text": "b"}, {"text": "c"}])
    path = f"/action-lists/{made['id']}"
    a, b, c = (item["id"] for item in made["items"])
    assert len({a, b, c}) == 3 and all(i.startswith("I-") for i in (a, b, c))
    reordered = api.post(f"{path}/items/reorder", {"order": [c, a, b]}).json
    assert [i["id"] for i in reordered["items"]] == [c, a, b], "ids travel with their items"
    edited = api.patch(f"{path}/items/{a}", {"done": True, "text": "A"}).json
    assert [(i["id"], i["text"], i["done"]) for i in edited["items"]] == [
        (c, "c", False),
        (a, "A", True),
        (b, "b", False),
    ]
    deleted = api.delete(f"{path}/items/{c}").json
    assert [i["id"] for i in deleted["items"]] == [a, b]
    # The position is still an alias: item 1 is b now.
    assert [i["id"] for i in api.delete(f"{path}/items/1").json["items"]] == [a]
    assert api.patch(f"{path}/items/{c}", {"done": True}).status_code == 404
    assert api.delete(f"{path}/items/I-nothere").status_code == 404
    assert api.get(path).json["version"] == 5


def test_an_item_may_carry_its_own_id_once(api: Api) -> None:
    made = new_list(api, items=[{"id": "I-first", "text": "a"}, {"text": "b"}])
    assert made["items"][0]["id"] == "I-first"
    twice = api.post("/action-lists", {"title": "x", "items": [{"id": "I-x", "text": "a"}, {"id": "I-x", "text": "b"}]})
    assert twice.status_code == 422 and problem_pointers(twice) == {"/items/1/id": "repeats the id of item 0"}
    added = api.post(f"/action-lists/{made['id']}/items", {"id": "I-first", "text": "again"})
    assert added.status_code == 422 and "/id" in problem_pointers(added)
    assert "/items/0/id" in problem_pointers(api.post("/action-lists", {"title": "x", "items": [{"id": "X-1"}]}))


def test_a_linked_item_shows_its_tasks_title_and_status_as_they_are_now(api: Api) -> None:
    api.project()
    api.task("T-1", title="Fix the build")
    made = new_list(api, items=[{"task_id": "T-1"}, {"text": "just text"}, {"text": "note", "task_id": "T-1"}])
    linked, text, both = made["items"]
    assert (linked["text"], linked["task_id"], linked["task"]) == (
        None,
        "T-1",
        {"title": "Fix the build", "status": "new"},
    )
    assert (text["task_id"], text["task"]) == (None, None)
    assert both["text"] == "note" and both["task"]["title"] == "Fix the build"
    api.move("T-1", "ready", "in_progress")
    api.patch("/tasks/T-1", {"title": "Fixed the build"})
    now = api.get(f"/action-lists/{made['id']}").json["items"][0]["task"]
    assert now == {"title": "Fixed the build", "status": "in_progress"}
    listed = api.get("/action-lists").json["items"][0]["items"][0]["task"]
    assert listed == now, "a list page shows the same"


def test_an_item_needs_text_or_an_existing_task(api: Api) -> None:
    api.project()
    api.task("T-1")
    empty = api.post("/action-lists", {"title": "x", "items": [{"done": True}]})
    assert empty.status_code == 422
    assert problem_pointers(empty) == {"/items/0/text": "is required unless the item links a task (task_id)"}
    missing = api.post("/action-lists", {"title": "x", "items": [{"text": "a"}, {"task_id": "T-9"}]})
    assert problem_pointers(missing) == {"/items/1/task_id": "task T-9 does not exist"}
    made = new_list(api, items=[{"task_id": "T-1"}])
    path = f"/action-lists/{made['id']}"
    assert problem_pointers(api.post(f"{path}/items", {"task_id": "T-9"})) == {"/task_id": "task T-9 does not exist"}
    assert "/text" in problem_pointers(api.post(f"{path}/items", {}))
    item = made["items"][0]["id"]
    unlinked = api.patch(f"{path}/items/{item}", {"task_id": None})
    assert unlinked.status_code == 422 and "/text" in problem_pointers(unlinked)
    relabelled = api.patch(f"{path}/items/{item}", {"task_id": None, "text": "done by hand"}).json["items"][0]
    assert (relabelled["text"], relabelled["task_id"], relabelled["task"]) == ("done by hand", None, None)
    assert api.get(path).json["version"] == 2, "the refused edits changed nothing"


def test_reorder_names_every_item_once_by_id_or_by_index(api: Api) -> None:
    made = new_list(api, items=[{"text": "a"}, {"text": "b"}])
    path = f"/action-lists/{made['id']}/items/reorder"
    a, b = (item["id"] for item in made["items"])
    for bad in ([a], [a, a], [a, b, "I-other"], [a, 0], ["I-x", "I-y"]):
        result = api.post(path, {"order": bad})
        assert result.status_code == 422 and "/order" in problem_pointers(result), bad
    assert [i["id"] for i in api.post(path, {"order": [1, 0]}).json["items"]] == [b, a]


def test_a_task_an_action_list_links_cannot_be_deleted(api: Api) -> None:
    api.project("P-1")
    api.project("P-2")
    api.task("T-1")
    api.task("T-2", "P-2")
    made = new_list(api, project_id="P-1", items=[{"task_id": "T-1"}])
    refused = api.delete("/tasks/T-1")
    assert refused.status_code == 409 and made["id"] in refused.json["detail"]
    other = new_list(api, project_id="P-1", items=[{"task_id": "T-2"}])
    cascade = api.delete("/projects/P-2", params={"cascade": "true"})
    assert cascade.status_code == 409 and other["id"] in cascade.json["detail"], "another project's list links it"
    assert api.delete(f"/action-lists/{other['id']}").status_code == 204
    assert api.delete("/projects/P-2", params={"cascade": "true"}).status_code == 204
    # A project's own lists go with it, links and all.
    assert api.delete("/projects/P-1", params={"cascade": "true"}).status_code == 204
    api.project("P-1")
    api.task("T-1")
    assert api.delete("/tasks/T-1").status_code == 204, "no link outlived its list"


def test_replacing_the_items_replaces_the_links(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2")
    made = new_list(api, items=[{"task_id": "T-1"}])
    path = f"/action-lists/{made['id']}"
    assert api.patch(path, {"items": [{"task_id": "T-2"}]}).status_code == 200
    assert api.delete("/tasks/T-1").status_code == 204
    assert api.delete("/tasks/T-2").status_code == 409
    assert api.delete(f"{path}/items/0").status_code == 200
    assert api.delete("/tasks/T-2").status_code == 204


def test_the_migration_gives_existing_items_ids(database_url: str) -> None:
    db = database_for(database_url)
    folder = Path(tracker.__file__).parent / "migrations"
    try:
        migrations = Migrations(db, [("tracker", folder)])

        def back_before_item_ids() -> None:
            while (name := migrations.rollback()) != "tracker:0004_action_item_ids":
                assert name is not None, "0004 was never applied"  # later migrations roll back first

        migrations.apply()
        back_before_item_ids()
        db.execute_sql(
            "INSERT INTO action_list (id, title, status, tags, items, created_at, updated_at, version) VALUES "
            f"('AL-old', 'Old', 'active', '[]', {db.param}, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)",
            (json.dumps([{"text": "a", "done": True}, {"text": "b", "done": False}]),),
        )
        migrations.apply()
        (items,) = db.execute_sql("SELECT items FROM action_list WHERE id = 'AL-old'").fetchone()
        migrated = json.loads(items)
        assert [(i["text"], i["done"], i["task_id"]) for i in migrated] == [("a", True, None), ("b", False, None)]
        assert len({i["id"] for i in migrated}) == 2 and all(i["id"].startswith("I-") for i in migrated)
        back_before_item_ids()
        (items,) = db.execute_sql("SELECT items FROM action_list WHERE id = 'AL-old'").fetchone()
        assert json.loads(items) == [{"text": "a", "done": True}, {"text": "b", "done": False}]
    finally:
        db.close_all()
