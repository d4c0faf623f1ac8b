"""The request_id plugin: accept or replace ``X-Request-ID``, echo it everywhere, bind it into the log context."""

from __future__ import annotations

import string
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import falcon.testing
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from taskman_plugins.request_id import HEADER, MAX_LENGTH, RequestIdMiddleware, accept_request_id

import taskman
from taskman.errors import PROBLEM_CONTENT_TYPE
from tests.logcapture import Lines, LogProbe, events
from tests.sample_plugins import EchoPlugin

Client = Callable[..., falcon.testing.TestClient]

pytestmark = pytest.mark.usefixtures("fresh_logging")

ALLOWED = string.ascii_letters + string.digits + "._:-"
INVALID = ["", "bad id", "x" * (MAX_LENGTH + 1), "naïve", "a/b", "<script>", "id\twith\ttabs", "semi;colon"]


def is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
    except ValueError:
        return False


# -- the plain part ------------------------------------------------------------------


@given(st.text(alphabet=ALLOWED, min_size=1, max_size=MAX_LENGTH))
def test_a_sane_id_is_kept(value: str) -> None:
    assert accept_request_id(value) == (value, False)


@given(st.text(min_size=0, max_size=200).filter(lambda s: not (1 <= len(s) <= MAX_LENGTH and set(s) <= set(ALLOWED))))
def test_anything_else_is_replaced_by_a_fresh_uuid4(value: str) -> None:
    request_id, replaced = accept_request_id(value)
    assert replaced and is_uuid4(request_id)


def test_no_header_mints_an_id_without_calling_it_a_replacement() -> None:
    first, replaced = accept_request_id(None)
    assert not replaced and is_uuid4(first)
    assert accept_request_id(None)[0] != first


def test_the_middleware_binds_the_id_for_the_request_and_resets_it_after() -> None:
    headers: dict[str, str] = {}
    req = SimpleNamespace(get_header=lambda name: "mw-1", context=SimpleNamespace())
    resp = SimpleNamespace(set_header=headers.__setitem__)
    structlog.contextvars.bind_contextvars(request_id="outer")
    try:
        middleware = RequestIdMiddleware()
        middleware.process_request(req, resp)
        assert structlog.contextvars.get_contextvars()["request_id"] == "mw-1"
        middleware.process_response(req, resp, None, True)
        assert headers == {HEADER: "mw-1"}
        assert structlog.contextvars.get_contextvars()["request_id"] == "outer"
    finally:
        structlog.contextvars.clear_contextvars()


# -- over HTTP, both flavours -----------------------------------------------------------


def test_a_sane_id_is_echoed_on_every_response(make_client: Client) -> None:
    client = make_client(plugins=(LogProbe(), EchoPlugin()))
    longest = "a" * MAX_LENGTH
    responses = {
        200: client.simulate_get("/items/1", headers={HEADER: "id-200"}),
        404: client.simulate_get("/missing", headers={HEADER: "id-404"}),
        405: client.simulate_delete("/items/1", headers={HEADER: "id-405"}),
        422: client.simulate_post("/invalid", json={}, headers={HEADER: "id-422"}),
        500: client.simulate_get("/failing", headers={HEADER: "id-500"}),
    }
    for status, result in responses.items():
        assert result.status_code == status
        assert result.headers["x-request-id"] == f"id-{status}"
        if status >= 400:
            assert result.headers["content-type"] == PROBLEM_CONTENT_TYPE
            assert result.json["request_id"] == f"id-{status}"
    assert client.simulate_get("/items/1", headers={HEADER: longest}).headers["x-request-id"] == longest


def test_without_a_header_a_fresh_id_is_minted_per_request(make_client: Client) -> None:
    client = make_client(plugins=(LogProbe(),))
    first = client.simulate_get("/items/1").headers["x-request-id"]
    second = client.simulate_get("/missing")
    assert is_uuid4(first) and is_uuid4(second.headers["x-request-id"])
    assert first != second.headers["x-request-id"] == second.json["request_id"]


@pytest.mark.parametrize("bad", INVALID, ids=repr)
def test_an_insane_id_is_replaced_and_never_logged(make_client: Client, logs: Lines, bad: str) -> None:
    client = make_client(plugins=(LogProbe(),))
    logs()
    result = client.simulate_get("/missing", headers={HEADER: bad})
    request_id = result.headers["x-request-id"]
    assert is_uuid4(request_id) and result.json["request_id"] == request_id
    lines = logs()
    (replaced,) = events(lines, "request_id_replaced")
    assert replaced["request_id"] == request_id and replaced["rejected_length"] == len(bad)
    assert replaced["logger"] == "taskman.request_id"
    if bad.strip():
        assert all(bad not in str(value) for line in lines for value in line.values())


def test_the_id_is_on_every_line_logged_while_serving(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),))
    logs()
    client.simulate_get("/items/9", headers={HEADER: "bound-1"})
    client.simulate_get("/failing", headers={HEADER: "bound-2"})
    lines = logs()
    assert {line["event"] for line in lines} >= {
        "item_viewed",
        "item_viewed_stdlib",
        "request_failed",
        "request_completed",
    }
    for line in lines:
        assert line["request_id"] in ("bound-1", "bound-2"), line
    (failed,) = events(lines, "request_failed")
    assert failed["request_id"] == "bound-2"


def test_the_binding_ends_with_the_request(make_client: Client) -> None:
    client = make_client(plugins=(LogProbe(),))
    assert client.simulate_get("/context", headers={HEADER: "ctx-1"}).json == {"request_id": "ctx-1"}
    assert client.simulate_get("/context", headers={HEADER: "ctx-2"}).json == {"request_id": "ctx-2"}
    assert "request_id" not in structlog.contextvars.get_contextvars()


def test_it_works_without_the_logging_plugin(make_client: Client) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_PLUGINS__DISABLE": "logging"})
    result = client.simulate_get("/context", headers={HEADER: "alone-1"})
    assert result.headers["x-request-id"] == "alone-1"
    assert result.json == {"request_id": "alone-1"}  # bound into the log context all the same
    problem = client.simulate_get("/missing", headers={HEADER: "alone-2"})
    assert problem.headers["x-request-id"] == problem.json["request_id"] == "alone-2"
    assert is_uuid4(client.simulate_get("/missing", headers={HEADER: "bad id"}).json["request_id"])
    assert "request_id" not in structlog.contextvars.get_contextvars()


class Peek:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any]] = []

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.seen.append((req.context.request_id, structlog.contextvars.get_contextvars().get("request_id")))


class PeekPlugin:
    taskman_plugin_name = "peek"

    def __init__(self) -> None:
        self.middleware = Peek()

    @taskman.hookimpl
    def taskman_middleware(self, config: Any) -> list[object]:
        return [self.middleware]


def test_other_middleware_sees_the_id_in_req_context_and_the_log_context(make_client: Client) -> None:
    plugin = PeekPlugin()
    client = make_client(plugins=(plugin,))
    client.simulate_get("/missing", headers={HEADER: "peek-1"})
    assert plugin.middleware.seen == [("peek-1", "peek-1")]
