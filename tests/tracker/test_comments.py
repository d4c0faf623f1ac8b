"""Comments on tasks (issue 15): written as the caller, pages, edits by the author or an admin, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest
from taskman_plugins.auth import TokenStore

from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api, problem_pointers


@pytest.fixture
def team(make_client: Callable[..., falcon.testing.TestClient]) -> tuple[Api, dict[str, dict[str, str]]]:
    """The real auth plugin, no anonymous access, and three tokens: ann and bob write, root is an admin."""
    listener = LifecyclePlugin()
    api = Api(make_client(plugins=(listener,), environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"}), listener)
    tokens = {}
    for name, scopes in (("ann", "write"), ("bob", "write"), ("root", "admin")):
        token, _ = TokenStore().create(name, scopes)
        tokens[name] = {"Authorization": f"Bearer {token}"}
    api.post("/projects", {"id": "P-1", "name": "A", "mission": "M", "owner": "o"}, headers=tokens["root"])
    api.post("/tasks", {"id": "T-1", "title": "t", "project_id": "P-1"}, headers=tokens["root"])
    return api, tokens


def comment(api: Api, text: str, headers: dict[str, str] | None = None, task: str = "T-1") -> dict[str, Any]:
    result = api.post(f"/tasks/{task}/comments", {"body": text}, headers=headers or {})
    assert result.status_code == 201, result.text
    assert result.headers["location"] == f"/api/v1/tasks/{task}/comments/{result.json['id']}"
    return dict(result.json)


def test_the_author_is_the_callers_token_and_only_they_or_an_admin_change_it(
    team: tuple[Api, dict[str, dict[str, str]]],
) -> None:
    api, who = team
    api.events.clear()
    written = comment(api, "Looks good", who["ann"])
    assert written["author"] == "ann" and written["task_id"] == "T-1" and written["edited_at"] is None
    assert written["id"].startswith("C-") and written["version"] == 1
    path = f"/tasks/T-1/comments/{written['id']}"
    refused = api.patch(path, {"body": "Looks bad"}, headers=who["bob"])
    assert refused.status_code == 403 and "author" in refused.json["detail"]
    assert api.delete(path, headers=who["bob"]).status_code == 403
    edited = api.patch(path, {"body": "Looks great"}, headers=who["ann"])
    assert edited.status_code == 200 and edited.json["body"] == "Looks great"
    assert edited.json["edited_at"] is not None and edited.json["version"] == 2 and edited.json["author"] == "ann"
    moderated = api.patch(path, {"body": "[removed]"}, headers=who["root"])
    assert moderated.status_code == 200 and moderated.json["author"] == "ann", "an admin's edit keeps the author"
    assert api.get(path, headers=who["bob"]).json == moderated.json
    assert api.delete(path, headers=who["root"]).status_code == 204
    assert api.get(path, headers=who["ann"]).status_code == 404
    events = [(name, payload) for name, payload in api.events if name.startswith("comment.")]
    assert [name for name, _ in events] == ["comment.created", "comment.updated", "comment.updated", "comment.deleted"]
    assert events[0][1] == {"comment_id": written["id"], "task_id": "T-1", "project_id": "P-1", "author": "ann"}
    assert events[1][1]["changed"] == ["body"]


def test_reading_needs_read_and_writing_needs_write(team: tuple[Api, dict[str, dict[str, str]]]) -> None:
    api, _ = team
    reader, _ = TokenStore().create("reader", "read")
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert api.post("/tasks/T-1/comments", {"body": "x"}, headers=as_reader).status_code == 403
    assert api.get("/tasks/T-1/comments", headers=as_reader).status_code == 200
    assert api.get("/tasks/T-1/comments").status_code == 401


def test_anonymous_comments_have_no_author(api: Api) -> None:
    api.project()
    api.task()
    written = comment(api, "anon")
    assert written["author"] is None
    # Anonymous callers are one author: with no identities (auth off), everyone edits everything.
    path = f"/tasks/T-1/comments/{written['id']}"
    assert api.patch(path, {"body": "still anon"}).status_code == 200


def test_an_unchanged_body_is_no_edit(api: Api) -> None:
    api.project()
    api.task()
    written = comment(api, "same")
    again = api.patch(f"/tasks/T-1/comments/{written['id']}", {"body": "same"})
    assert again.status_code == 200 and again.json == written
    assert api.patch(f"/tasks/T-1/comments/{written['id']}", {}).json == written


def test_a_tasks_comments_come_in_keyset_pages(api: Api, clock: Any) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2")
    ids = []
    for n in range(5):
        clock.shift(1)
        ids.append(comment(api, f"c{n}")["id"])
    comment(api, "elsewhere", task="T-2")
    seen: list[str] = []
    params = {"limit": "2", "count": "true"}
    while True:
        page = api.get("/tasks/T-1/comments", params=params).json
        assert page["total"] == 5
        seen += [c["id"] for c in page["items"]]
        if not page["has_more"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == ids, "oldest first, each once, only this task's"
    newest = api.get("/tasks/T-1/comments", params={"sort": "-created_at", "limit": "1"}).json["items"]
    assert [c["id"] for c in newest] == [ids[-1]]
    assert api.get("/tasks/T-1/comments", params={"colour": "red"}).status_code == 400
    assert api.get("/tasks/T-9/comments").status_code == 404
    assert api.post("/tasks/T-9/comments", {"body": "x"}).status_code == 404


def test_a_comment_lives_under_its_own_task(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2")
    written = comment(api, "on T-1")
    other = f"/tasks/T-2/comments/{written['id']}"
    assert api.get(other).status_code == 404
    assert api.patch(other, {"body": "moved?"}).status_code == 404
    assert api.delete(other).status_code == 404
    assert api.get(f"/tasks/T-1/comments/C-{'x' * 60}").status_code == 404
    assert api.get("/tasks/T-1/comments/nonsense").status_code == 404


def test_comments_are_validated_and_conditional(api: Api) -> None:
    api.project()
    api.task()
    for body, pointer in (({}, "/body"), ({"body": ""}, "/body"), ({"body": "x" * 10_001}, "/body")):
        result = api.post("/tasks/T-1/comments", body)
        assert result.status_code == 422 and pointer in problem_pointers(result), body
    unknown = api.post("/tasks/T-1/comments", {"body": "x", "author": "someone else"})
    assert unknown.status_code == 422 and "/author" in problem_pointers(unknown), "the author is never the client's"
    written = comment(api, "v1")
    path = f"/tasks/T-1/comments/{written['id']}"
    assert api.get(path, headers={"If-None-Match": '"1"'}).status_code == 304
    assert api.patch(path, {"body": "v2"}, headers={"If-Match": '"1"'}).status_code == 200
    assert api.patch(path, {"body": "v3"}, headers={"If-Match": '"1"'}).status_code == 412
    assert api.delete(path, headers={"If-Match": 'W/"2"'}).status_code == 412
    assert api.delete(path, headers={"If-Match": '"2"'}).status_code == 204


def test_an_idempotent_comment_is_written_once(api: Api) -> None:
    api.project()
    api.task()
    key = {"Idempotency-Key": "comment-1"}
    first = api.post("/tasks/T-1/comments", {"body": "once"}, headers=key)
    again = api.post("/tasks/T-1/comments", {"body": "once"}, headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json
    assert len(api.get("/tasks/T-1/comments").json["items"]) == 1


def test_deleting_a_task_or_its_project_deletes_the_comments(api: Api) -> None:
    api.project()
    api.task("T-1")
    api.task("T-2")
    first = comment(api, "a", task="T-1")
    comment(api, "b", task="T-2")
    assert api.delete("/tasks/T-1").status_code == 204
    assert api.get(f"/tasks/T-1/comments/{first['id']}").status_code == 404
    assert api.delete("/projects/P-1", params={"cascade": "true"}).status_code == 204
    api.project()
    api.task("T-2")
    assert api.get("/tasks/T-2/comments").json["items"] == [], "nothing of the old T-2 is left"
