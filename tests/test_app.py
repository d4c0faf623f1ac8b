"""The app factory on both flavours: sync plugins, problem details, connections."""

from __future__ import annotations

import contextvars
import datetime
import json
import threading
from collections.abc import Callable
from typing import Any

import falcon.inspect
import falcon.testing
import pytest

import taskman
from taskman import hookimpl
from taskman.app import wrap_responders
from taskman.db import database
from taskman.errors import PROBLEM_CONTENT_TYPE
from taskman.plugins import PluginError
from tests.sample_plugins import AsyncPlugin, EchoPlugin, LifecyclePlugin, MiddlewarePlugin

Client = Callable[..., falcon.testing.TestClient]

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def assert_problem(result: falcon.testing.Result, status: int) -> dict[str, Any]:
    assert result.status_code == status
    assert result.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = result.json
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["request_id"] == result.headers["x-request-id"]
    return body  # type: ignore[no-any-return]


def test_create_app_builds_the_requested_flavour(asgi: bool, make_config: Callable[..., Any]) -> None:
    app = taskman.create_app(make_config(), asgi=asgi)
    assert isinstance(app, falcon.asgi.App) == asgi
    assert isinstance(app, falcon.App)


def test_sync_responders_work_on_both_flavours(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),))
    assert client.simulate_get("/echo").json == {"status": "alive"}
    result = client.simulate_post("/echo", json={"title": "write tests"})
    assert result.status_code == 201
    assert result.json == {"received": {"title": "write tests"}}
    assert client.simulate_put("/echo", body="raw text").json == {"raw": "raw text"}


def test_async_responders_serve_asgi_and_fail_wsgi_startup_clearly(asgi: bool, make_config: Callable[..., Any]) -> None:
    config = make_config(plugins=(AsyncPlugin(),))
    if asgi:
        client = falcon.testing.TestClient(taskman.create_app(config, asgi=True, plugins=(AsyncPlugin(),)))
        assert client.simulate_get("/async").json == {"async": True}
    else:
        with pytest.raises(PluginError, match=r"plugin 'async_only'.*synchronous"):
            taskman.create_app(config, asgi=False, plugins=(AsyncPlugin(),))


def test_sync_middleware_runs_on_both_flavours(make_client: Client) -> None:
    plugin = MiddlewarePlugin()
    client = make_client(plugins=(EchoPlugin(), plugin))
    result = client.simulate_get("/echo")
    assert result.headers["x-sync-middleware"] == "yes"
    assert plugin.calls == ["request", "response"]


def test_middleware_also_runs_for_errors(make_client: Client) -> None:
    plugin = MiddlewarePlugin()
    client = make_client(plugins=(plugin,))
    result = client.simulate_get("/nowhere")
    assert result.status_code == 404
    assert result.headers["x-sync-middleware"] == "yes"


def test_routed_methods_are_what_falcon_inspect_finds_without_its_internal_responders(
    client: falcon.testing.TestClient,
) -> None:
    # falcon.inspect reads every responder's source: the core walks the router itself and must agree with it.
    expected = {
        route.path: frozenset(m.method for m in route.methods if not m.internal)
        for route in falcon.inspect.inspect_routes(client.app)
    }
    routed = taskman.routed_methods(client.app)
    assert routed == expected
    assert {"GET", "HEAD"} <= routed["/health/live"] and "OPTIONS" not in routed["/health/live"]


def test_unknown_route_is_a_problem(client: falcon.testing.TestClient) -> None:
    body = assert_problem(client.simulate_get("/no/such/thing"), 404)
    assert body["title"] == "Not Found"
    assert body["instance"] == "/no/such/thing"


def test_wrong_method_is_a_problem_with_allow(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),))
    result = client.simulate_delete("/echo")
    assert_problem(result, 405)
    assert set(result.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST", "PUT"}


def test_malformed_json_is_a_problem(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),))
    result = client.simulate_post("/echo", body="{not json", headers={"Content-Type": "application/json"})
    body = assert_problem(result, 400)
    assert "JSON" in body["detail"] or "json" in body["detail"]


def test_unsupported_media_type_is_a_problem(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),))
    result = client.simulate_post("/echo", body="<x/>", headers={"Content-Type": "application/xml"})
    assert_problem(result, 415)


def test_validation_error_is_422_with_pointers(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),))
    body = assert_problem(client.simulate_post("/invalid", json={}), 422)
    assert body["errors"] == [{"pointer": "/title", "detail": "must not be empty"}]


def test_problem_titles_and_status_lines_are_rfc_9110_names_on_every_python(make_client: Client, asgi: bool) -> None:
    # Python 3.13 renamed 413, 414, 416 and 422; the answer must not depend on the interpreter.
    client = make_client(plugins=(EchoPlugin(), ThreadPlugin()))
    for path, status, phrase in (("/invalid", 422, "Unprocessable Content"), ("/too-large", 413, "Content Too Large")):
        result = client.simulate_post(path, json={})
        assert (result.status_code, result.json["title"]) == (status, phrase)
        if not asgi:  # ASGI carries no reason phrase: the server writes its own
            assert result.status == f"{status} {phrase}"


def test_unhandled_exception_is_a_500_that_reveals_nothing(
    make_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(plugins=(EchoPlugin(),))
    result = client.simulate_get("/boom")
    body = assert_problem(result, 500)
    text = result.text
    for leak in ("hunter2", "/srv/secret", "RuntimeError", "Traceback", "/boom"):
        assert leak not in text
    assert body["instance"] == f"urn:taskman:request:{body['request_id']}"
    failures = [r for r in caplog.records if r.getMessage() == "request_failed"]
    assert failures and failures[0].exc_info is not None
    assert "hunter2" in str(failures[0].exc_info[1])  # the log keeps the full story


def test_request_id_header_is_echoed_in_problems(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/missing", headers={"X-Request-ID": "client-id-1"})
    assert result.headers["x-request-id"] == "client-id-1"
    assert result.json["request_id"] == "client-id-1"


def test_insane_request_id_is_replaced(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/missing", headers={"X-Request-ID": "bad id\twith spaces"})
    assert result.headers["x-request-id"] != "bad id\twith spaces"
    assert len(result.headers["x-request-id"]) == 36


# The outbox's and the webhooks' background rounds check connections out too: off here, so that
# the pool holds only what requests left behind.
NO_BACKGROUND_ROUNDS = {"plugins": {"disable": ["events", "webhooks"]}}


def test_database_query_in_a_sync_responder(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),), overrides=NO_BACKGROUND_ROUNDS)
    assert client.simulate_get("/db").json == {"value": 1}
    pool = database.obj
    assert pool._in_use == {}, "the connection went back to the pool"


def test_connection_is_returned_when_the_request_fails(make_client: Client) -> None:
    client = make_client(plugins=(EchoPlugin(),), overrides=NO_BACKGROUND_ROUNDS)
    client.simulate_get("/db")
    assert client.simulate_get("/boom").status_code == 500
    assert database.obj._in_use == {}


def test_disabled_plugin_leaves_no_trace(make_client: Client) -> None:
    client = make_client(
        plugins=(EchoPlugin(), MiddlewarePlugin()), overrides={"plugins": {"disable": ["echo", "headers"]}}
    )
    result = client.simulate_get("/echo")
    assert_problem(result, 404)
    assert "x-sync-middleware" not in result.headers


def test_disabling_a_builtin_plugin_by_env(make_client: Client) -> None:
    client = make_client(environ={"APP_PLUGINS__DISABLE": "request_id"})
    result = client.simulate_get("/missing", headers={"X-Request-ID": "kept-out"})
    assert "x-request-id" not in result.headers
    assert result.json["request_id"] != "kept-out"  # the core still names the occurrence


def test_events_reach_listeners(make_client: Client) -> None:
    listener = LifecyclePlugin()
    client = make_client(plugins=(listener,))
    client.app.taskman.fire_event("task.created", {"id": "T-1"})
    assert listener.events == [("task.created", {"id": "T-1"})]


class _FiringResource:
    def on_post(self, req: Any, resp: Any) -> None:
        req.taskman.fire_event("task.created", {"id": req.get_media()["id"]})
        resp.status = 202


class _FiringPlugin:
    taskman_plugin_name = "firing"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/fire", _FiringResource())]


def test_responders_fire_events_through_req_taskman(make_client: Client) -> None:
    listener = LifecyclePlugin()
    client = make_client(plugins=(listener, _FiringPlugin()))
    assert client.simulate_post("/fire", json={"id": "T-2"}).status_code == 202
    assert listener.events == [("task.created", {"id": "T-2"})]


def test_problem_bodies_are_json_documents(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/nope")
    assert json.loads(result.content)["type"] == "about:blank"


class ThreadReporter:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"thread": threading.current_thread().name}

    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = req.get_media()


class TooLarge:
    def on_post(self, req: Any, resp: Any) -> None:
        raise falcon.HTTPContentTooLarge()


class ThreadPlugin:
    taskman_plugin_name = "threads"

    @taskman.hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [
            ("/offloaded", ThreadReporter()),
            ("/inline", taskman.nonblocking(ThreadReporter())),
            ("/too-large", TooLarge()),
        ]


def test_sync_code_leaves_the_event_loop_unless_marked_nonblocking(make_client: Client, asgi: bool) -> None:
    client = make_client(plugins=(ThreadPlugin(),))
    here = threading.current_thread().name
    offloaded = client.simulate_get("/offloaded").json["thread"]
    inline = client.simulate_get("/inline").json["thread"]
    if asgi:
        assert offloaded != inline  # the loop thread never runs plain sync responders
    else:
        assert offloaded == inline == here


def test_nonblocking_code_cannot_read_the_body_under_asgi(make_client: Client, asgi: bool) -> None:
    client = make_client(plugins=(ThreadPlugin(),))
    result = client.simulate_post("/inline", json={"a": 1})
    if asgi:
        assert_problem(result, 500)  # a programming error, reported without details
    else:
        assert result.json == {"a": 1}


def test_content_too_large_is_a_problem(make_client: Client) -> None:
    client = make_client(plugins=(ThreadPlugin(),))
    assert_problem(client.simulate_post("/too-large", json={}), 413)


CURRENT_USER: contextvars.ContextVar[str] = contextvars.ContextVar("current_user", default="nobody")


class ContextReader:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"user": CURRENT_USER.get()}


class ContextWriter:
    async def process_request_async(self, req: Any, resp: Any) -> None:
        CURRENT_USER.set("ada")

    def process_request(self, req: Any, resp: Any) -> None:
        CURRENT_USER.set("ada")


class ContextPlugin:
    taskman_plugin_name = "context"

    @taskman.hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/whoami", ContextReader())]

    @taskman.hookimpl
    def taskman_middleware(self, config: Any) -> list[object]:
        return [ContextWriter()]


def test_context_variables_reach_sync_responders(make_client: Client) -> None:
    """Log and trace context set by middleware must be visible in thread-pool responders."""
    client = make_client(plugins=(ContextPlugin(),))
    assert client.simulate_get("/whoami").json == {"user": "ada"}


# -- responder wrappers --------------------------------------------------------


class ThreadRecorder:
    """Records where each responder ran, and whether a wrapper saw it."""

    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"thread": threading.get_ident(), "wrapped_by": getattr(req.context, "wrapped_by", [])}

    @taskman.nonblocking
    def on_head(self, req: Any, resp: Any) -> None:
        resp.set_header("X-Wrapped-By", ",".join(getattr(req.context, "wrapped_by", [])))


def tagging(tag: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrapper(responder: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(req: Any, resp: Any, **params: Any) -> Any:
            req.context.wrapped_by = [*getattr(req.context, "wrapped_by", []), tag]
            req.context.wrapper_thread = threading.get_ident()
            return responder(req, resp, **params)

        return wrapped

    return wrapper


class WrappingPlugin:
    taskman_plugin_name = "wrapping"

    @taskman.hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/recorded", ThreadRecorder())]

    @taskman.hookimpl
    def taskman_responder_wrappers(self, config: Any) -> list[Any]:
        return [tagging("outer"), tagging("inner")]


def test_responder_wrappers_decorate_blocking_responders_outermost_first(make_client: Client) -> None:
    client = make_client(plugins=(WrappingPlugin(),))
    assert client.simulate_get("/recorded").json["wrapped_by"] == ["outer", "inner"]
    # nonblocking responders run on the event loop: a decorator made for threads must not touch them.
    assert client.simulate_head("/recorded").headers["X-Wrapped-By"] == ""


def test_responder_wrappers_leave_coroutine_responders_and_the_resource_alone() -> None:
    class Mixed:
        def on_get(self, req: Any, resp: Any) -> None: ...

        async def on_put(self, req: Any, resp: Any) -> None: ...

    resource = Mixed()
    stand_in: Any = wrap_responders(resource, [tagging("t")])
    assert stand_in.wrapped is resource
    assert stand_in.on_put == resource.on_put
    assert stand_in.on_get != resource.on_get
    assert Mixed.on_get is not None and "on_get" not in vars(resource)  # the plugin's object is untouched
    assert wrap_responders(resource, []) is resource


def test_a_wrapper_that_is_not_callable_names_its_plugin(make_config: Any) -> None:
    class Broken:
        taskman_plugin_name = "broken_wrapper"

        @taskman.hookimpl
        def taskman_responder_wrappers(self, config: Any) -> list[Any]:
            return ["not a function"]

    with pytest.raises(PluginError, match="broken_wrapper"):
        taskman.create_app(make_config(plugins=(Broken(),)), plugins=(Broken(),))


def test_json_responses_are_written_by_orjson_with_the_stdlib_as_fallback() -> None:
    from taskman.app import dump_json

    media = {"id": "T-1", "n": 3, "x": 1.5, "when": None, "caf\u00e9": ["\u2603"], 7: True}
    assert json.loads(dump_json(media)) == json.loads(json.dumps(media, ensure_ascii=False))
    assert dump_json({"big": 2**70}) == json.dumps({"big": 2**70}).encode()  # past 64 bits: json.dumps writes it
    with pytest.raises(TypeError):  # a type JSON has no form for stays a 500, as with json.dumps
        dump_json({"at": datetime.datetime(2026, 1, 1)})
