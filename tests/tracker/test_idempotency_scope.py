"""An ``Idempotency-Key`` belongs to the caller that sent it (issue 12).

The tracker reads the caller generically from ``req.context.auth`` (an
object with a ``name``, or None): here a small identity plugin puts one
there from a test header, with the auth plugin disabled, so the tracker is
shown to need no particular auth plugin.  ``tests/test_auth.py`` repeats
the essentials with real tokens.  Both flavours; both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import falcon.testing
import pytest
from taskman_plugins.tracker.idempotency import scope_of

from taskman import hookimpl
from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api

CALLER = "X-Test-Caller"


class Identify:
    """What an identity plugin does: name the caller on ``req.context.auth`` (None: anonymous)."""

    def process_request(self, req: Any, resp: Any) -> None:
        name = req.get_header(CALLER)
        req.context.auth = None if name is None else SimpleNamespace(name=name, scopes=frozenset({"write"}))


class IdentityPlugin:
    taskman_plugin_name = "test_identity"

    @hookimpl
    def taskman_middleware(self, config: Any) -> list[object]:
        return [Identify()]


@pytest.fixture
def callers(make_client: Callable[..., falcon.testing.TestClient]) -> Api:
    listener = LifecyclePlugin()
    client = make_client(plugins=(listener, IdentityPlugin()), environ={"APP_PLUGINS__DISABLE": "auth"})
    api = Api(client, listener)
    api.project()
    return api


def as_caller(name: str | None, key: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **({CALLER: name} if name is not None else {})}


def task(task_id: str) -> dict[str, Any]:
    return {"id": task_id, "title": f"Task {task_id}", "project_id": "P-1"}


def test_scopes_differ_by_caller_and_fit_any_column() -> None:
    scopes = {scope_of(caller, "POST", "/api/v1/tasks") for caller in (None, "a", "b", "None", "")}
    assert len(scopes) == 5
    assert len(scope_of("x" * 10_000, "POST", "/" + "p" * 10_000)) == 64


def test_another_caller_s_key_is_not_replayed_to_you(callers: Api) -> None:
    first = callers.post("/tasks", task("T-1"), headers=as_caller("alice", "k"))
    assert first.status_code == 201
    # bob's "k" is bob's own: his request runs (and meets alice's task), nothing of alice's is replayed.
    bob = callers.post("/tasks", task("T-1"), headers=as_caller("bob", "k"))
    assert bob.status_code == 409 and "idempotent-replayed" not in bob.headers
    again = callers.post("/tasks", task("T-1"), headers=as_caller("alice", "k"))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json


def test_another_caller_s_key_tells_you_nothing_and_cannot_be_squatted(callers: Api) -> None:
    assert callers.post("/tasks", task("T-1"), headers=as_caller("alice", "k")).status_code == 201
    # Not a 422 "used with a different request": that would tell bob that alice used "k".
    bob = callers.post("/tasks", task("T-2"), headers=as_caller("bob", "k"))
    assert bob.status_code == 201 and bob.json["id"] == "T-2"
    # bob used "k2" first; alice's "k2" is still hers to use.
    assert callers.post("/tasks", task("T-3"), headers=as_caller("bob", "k2")).status_code == 201
    alice = callers.post("/tasks", task("T-4"), headers=as_caller("alice", "k2"))
    assert alice.status_code == 201 and alice.json["id"] == "T-4"
    assert sorted(t["id"] for t in callers.get("/tasks").json["items"]) == ["T-1", "T-2", "T-3", "T-4"]


def test_anonymous_callers_have_a_scope_of_their_own(callers: Api) -> None:
    assert callers.post("/tasks", task("T-1"), headers=as_caller("alice", "k")).status_code == 201
    anonymous = callers.post("/tasks", task("T-2"), headers=as_caller(None, "k"))
    assert anonymous.status_code == 201 and "idempotent-replayed" not in anonymous.headers
    replayed = callers.post("/tasks", task("T-2"), headers=as_caller(None, "k"))
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.json == anonymous.json
    assert callers.post("/tasks", task("T-9"), headers=as_caller(None, "k")).status_code == 422


def test_state_changes_are_scoped_too(callers: Api) -> None:
    callers.task("T-1")
    ready = callers.post("/tasks/T-1/status", {"status": "ready"}, headers=as_caller("alice", "move"))
    assert ready.status_code == 200 and ready.json["version"] == 2
    # bob's "move" with another body is his own request, not alice's key reused (422): it runs.
    bob = callers.post("/tasks/T-1/status", {"status": "in_progress"}, headers=as_caller("bob", "move"))
    assert bob.status_code == 200 and bob.json["version"] == 3 and "idempotent-replayed" not in bob.headers
    again = callers.post("/tasks/T-1/status", {"status": "ready"}, headers=as_caller("alice", "move"))
    assert again.headers["idempotent-replayed"] == "true" and again.json["version"] == 2
