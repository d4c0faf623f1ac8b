"""Fixtures for the tracker plugin: a client on both flavours (and both databases) and record builders."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

from tests.sample_plugins import LifecyclePlugin

API = "/api/v1"


class Api:
    """A test client for the tracker routes, with builders for valid records."""

    def __init__(self, client: falcon.testing.TestClient, listener: LifecyclePlugin) -> None:
        self.client = client
        self.listener = listener

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return self.listener.events

    def get(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.client.simulate_get(API + path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> falcon.testing.Result:
        if body is not None:
            self._as_json(body, kwargs)
        return self.client.simulate_post(API + path, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> falcon.testing.Result:
        self._as_json(body, kwargs)
        return self.client.simulate_patch(API + path, **kwargs)

    @staticmethod
    def _as_json(body: Any, kwargs: dict[str, Any]) -> None:
        # ASCII escapes, so that a lone surrogate travels as the JSON text a client would send.
        kwargs["body"] = json.dumps(body)
        kwargs["headers"] = {"content-type": "application/json", **kwargs.get("headers", {})}

    def delete(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.client.simulate_delete(API + path, **kwargs)

    def created(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self.post(path, body)
        assert result.status_code == 201, result.text
        return dict(result.json)

    def project(self, project_id: str = "P-1", **fields: Any) -> dict[str, Any]:
        return self.created(
            "/projects", {"id": project_id, "name": "Apollo", "mission": "Land", "owner": "ann", **fields}
        )

    def sprint(self, sprint_id: str = "S-1", project_id: str = "P-1", **fields: Any) -> dict[str, Any]:
        body = {"id": sprint_id, "project_id": project_id, "name": sprint_id, "start_date": "2026-11-02"}
        return self.created("/sprints", {**body, "end_date": "2026-11-13", **fields})

    def task(self, task_id: str = "T-1", project_id: str = "P-1", **fields: Any) -> dict[str, Any]:
        return self.created("/tasks", {"id": task_id, "title": f"Task {task_id}", "project_id": project_id, **fields})

    def move(self, task_id: str, *statuses: str) -> falcon.testing.Result:
        """Walk a task through ``statuses``; every step but the last must succeed."""
        result = None
        for index, status in enumerate(statuses):
            result = self.post(f"/tasks/{task_id}/status", {"status": status})
            if index < len(statuses) - 1:
                assert result.status_code == 200, result.text
        assert result is not None
        return result

    def done(self, task_id: str) -> None:
        assert self.move(task_id, "ready", "in_progress", "done").status_code == 200


@pytest.fixture(autouse=True)
def _calendar(request: pytest.FixtureRequest) -> None:
    """The fixture records carry fixed dates: every in-process tracker test runs on the clock they assume.

    Real servers (``servers`` tests) run on the real clock, which the test
    process must share: those tests date their records relative to today.
    """
    if request.node.get_closest_marker("servers") is None:
        request.getfixturevalue("clock")


@pytest.fixture
def api(make_client: Callable[..., falcon.testing.TestClient]) -> Api:
    listener = LifecyclePlugin()
    return Api(make_client(plugins=(listener,)), listener)


def problem_pointers(result: falcon.testing.Result) -> dict[str, str]:
    assert result.headers["content-type"] == "application/problem+json", result.text
    return {error["pointer"]: error["detail"] for error in result.json.get("errors", [])}
