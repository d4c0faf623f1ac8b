"""Fixtures of the events and webhooks tests: a tracker client whose background work the test drives itself.

The background threads are off (``events.background``, ``webhooks.deliver``)
so that a test runs each round when it means to (:func:`rounds`); the real
threads run in the tests with real servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest
import time_machine
from taskman_plugins.events import Outbox, outbox

import taskman
from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api

#: What every test app of this folder runs with: nothing in the background unless the test runs it.
QUIET = {"APP_EVENTS__BACKGROUND": "false", "APP_WEBHOOKS__DELIVER": "false", "APP_EVENTS__MAX_WAIT": "20"}


class EventsApi(Api):
    """The tracker's test client, plus the outbox of its app."""

    @property
    def runtime(self) -> taskman.Runtime:
        return self.client.app.taskman  # type: ignore[no-any-return]

    @property
    def outbox(self) -> Outbox:
        return outbox(self.runtime)

    def feed(self, **params: Any) -> dict[str, Any]:
        result = self.get("/events", params={k: str(v) for k, v in params.items()})
        assert result.status_code == 200, result.text
        return dict(result.json)

    def walk(self, after: int = 0, **params: Any) -> list[dict[str, Any]]:
        """Every event after ``after``, page by page."""
        seen: list[dict[str, Any]] = []
        while True:
            page = self.feed(after=after, **params)
            seen += page["items"]
            assert page["next_after"] >= after
            after = page["next_after"]
            if not page["has_more"]:
                return seen

    def stored(self) -> list[tuple[str, dict[str, Any]]]:
        """``(type, payload)`` of every event in the outbox, in id order."""
        return [(event["type"], event["data"]) for event in self.walk()]

    def round(self, **kwargs: Any) -> None:
        self.outbox.run_once(**kwargs)


@pytest.fixture
def make_api(make_client: Callable[..., falcon.testing.TestClient]) -> Callable[..., EventsApi]:
    def make(environ: dict[str, str] | None = None, plugins: tuple[object, ...] = ()) -> EventsApi:
        listener = LifecyclePlugin()
        client = make_client(plugins=(listener, *plugins), environ={**QUIET, **(environ or {})})
        return EventsApi(client, listener)

    return make


@pytest.fixture
def api(make_api: Callable[..., EventsApi], clock: time_machine.Traveller) -> EventsApi:
    return make_api()
