"""The server layer's plain parts, without a server: options, settings, proxy trust, framing, deadlines, late bodies.

The real-server side of each is in tests/test_servers.py and tests/faults/
(test_slow_clients.py, test_framing.py, test_shutdown.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import falcon
import falcon.asgi
import falcon.testing
import h11
import pytest
from gunicorn.http import errors as parse_errors

import taskman
from taskman import hookimpl
from taskman.config import Config, ConfigError, ServerSettings
from taskman.edge import TrustedProxies, problem_response
from taskman.gunicorn_worker import (
    BodyTimeout,
    EdgeReader,
    GuardedInput,
    HeadTimeout,
    HeadTooLarge,
    SyncWorker,
    ThreadWorker,
    refusal_status,
)
from taskman.plugins import PluginError, Plugins
from taskman.servers import (
    GUNICORN_MAX_REQUEST_LINE,
    ServerOptions,
    check_thread_pool,
    gunicorn_settings,
    server_options,
    uvicorn_settings,
)
from taskman.uvicorn_protocol import StrictConnection
from tests.faults.harness import responses_in

# -- taskman_server_options ------------------------------------------------------------------------------------------


class EdgePlugin:
    taskman_plugin_name = "edge_probe"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.flavours: list[str] = []

    @hookimpl
    def taskman_server_options(self, config: Any, flavour: str) -> dict[str, Any]:
        self.flavours.append(flavour)
        return self.options


def options_with(make_config: Callable[..., Config], plugin: EdgePlugin, flavour: str = "wsgi") -> ServerOptions:
    config = make_config(plugins=(plugin,))
    return server_options(Plugins.discover(config.plugins.disable, [plugin]), config, flavour)


def test_the_limits_plugin_contributes_its_sizes_and_timeouts(make_config: Callable[..., Config]) -> None:
    config = make_config()
    options = server_options(Plugins.discover(config.plugins.disable), config, "asgi")
    assert options == ServerOptions(
        max_request_target=8192, max_header_bytes=16384, header_timeout=10.0, body_timeout=30.0
    )
    assert options.max_head_bytes is not None and options.max_head_bytes > 8192 + 16384

    off = make_config(environ={"APP_LIMITS__MAX_URL_LENGTH": "0", "APP_LIMITS__BODY_TIMEOUT": "0"})
    options = server_options(Plugins.discover(off.plugins.disable), off, "wsgi")
    assert (options.max_request_target, options.body_timeout, options.max_head_bytes) == (None, None, None)

    disabled = make_config(environ={"APP_PLUGINS__DISABLE": "limits"})
    assert server_options(Plugins.discover(disabled.plugins.disable), disabled, "wsgi") == ServerOptions()


def test_sizes_take_the_largest_contribution_and_timeouts_the_smallest(make_config: Callable[..., Config]) -> None:
    plugin = EdgePlugin(
        {"max_request_target": 20_000, "max_header_bytes": 100, "body_timeout": 5, "header_timeout": 60}
    )
    options = options_with(make_config, plugin, "asgi")
    assert options == ServerOptions(
        max_request_target=20_000, max_header_bytes=16384, header_timeout=10.0, body_timeout=5.0
    )
    assert plugin.flavours == ["asgi"]


@pytest.mark.parametrize("options", [{"max_body": 1}, {"body_timeout": 0}, {"max_header_bytes": "big"}])
def test_an_unknown_or_bad_server_option_names_the_plugin(
    make_config: Callable[..., Config], options: dict[str, Any]
) -> None:
    with pytest.raises(PluginError) as failed:
        options_with(make_config, EdgePlugin(options))
    assert "plugin 'edge_probe'" in str(failed.value) and "taskman_server_options" in str(failed.value)


# -- [server] settings ------------------------------------------------------------------------------------------------


def test_server_settings_come_from_the_environment(make_config: Callable[..., Config]) -> None:
    server = make_config(
        environ={
            "APP_SERVER__WORKER_CLASS": "sync",
            "APP_SERVER__THREADS": "4",
            "APP_SERVER__KEEPALIVE": "15",
            "APP_SERVER__SEND_TIMEOUT": "12.5",
            "APP_SERVER__FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.7,2001:db8::/32",
        }
    ).server
    assert (server.worker_class, server.threads, server.keepalive, server.send_timeout) == ("sync", 4, 15, 12.5)
    assert server.forwarded_allow_ips == ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32")
    assert ServerSettings().forwarded_allow_ips == ()  # nobody is trusted by default, loopback included


@pytest.mark.parametrize(
    "var,value,reason",
    [
        ("APP_SERVER__WORKER_CLASS", "gevent", "must be one of gthread, sync"),
        ("APP_SERVER__THREADS", "0", "must be >= 1"),
        ("APP_SERVER__KEEPALIVE", "0", "must be >= 1"),
        ("APP_SERVER__FORWARDED_ALLOW_IPS", "10.0.0.1,proxy.internal", "entries must be IP addresses, networks"),
        ("APP_SERVER__FORWARDED_ALLOW_IPS", "10.0.0.1/8", "entries must be IP addresses, networks"),
    ],
)
def test_bad_server_settings_stop_start_up_naming_the_key(
    make_config: Callable[..., Config], var: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as failed:
        make_config(environ={var: value})
    key = "server." + var.removeprefix("APP_SERVER__").lower()
    assert f"{key} (from env {var}): " in str(failed.value) and reason in str(failed.value)


def test_more_threads_than_database_connections_is_refused(make_config: Callable[..., Config]) -> None:
    too_many = {"APP_SERVER__THREADS": "20", "APP_DATABASE__POOL_SIZE": "10"}
    with pytest.raises(ConfigError) as failed:
        check_thread_pool(make_config(environ=too_many), "asgi")
    assert "server.threads (from env APP_SERVER__THREADS): 20 threads per worker" in str(failed.value)
    assert "allow 15 connections" in str(failed.value)
    # gunicorn's sync worker runs one thread whatever server.threads says.
    check_thread_pool(make_config(environ={**too_many, "APP_SERVER__WORKER_CLASS": "sync"}), "wsgi")
    check_thread_pool(make_config(), "wsgi")


def test_gunicorn_gets_the_worker_model_and_limits_the_app_asks_for() -> None:
    server = ServerSettings(threads=6, keepalive=9, forwarded_allow_ips=("10.0.0.0/8",), send_timeout=7.0)
    options = ServerOptions(max_request_target=8192, max_header_bytes=16384, header_timeout=2.0, body_timeout=3.0)
    settings = gunicorn_settings(server, options)
    worker = settings["worker_class"]
    assert issubclass(worker, ThreadWorker)
    assert (worker.header_timeout, worker.body_timeout, worker.send_timeout) == (2.0, 3.0, 7.0)
    assert worker.head_budget == options.max_head_bytes
    assert worker.proxies.trusts("10.1.2.3") and not worker.proxies.trusts("127.0.0.1")
    assert (settings["threads"], settings["keepalive"], settings["forwarded_allow_ips"]) == (6, 9, "10.0.0.0/8")
    assert settings["limit_request_line"] == 0  # 8192 is past gunicorn's ceiling: the worker bounds the head
    assert settings["limit_request_field_size"] > 16384

    sync = gunicorn_settings(ServerSettings(worker_class="sync"), options)
    assert issubclass(sync["worker_class"], SyncWorker) and sync["threads"] == 1
    assert sync["limit_request_line"] == GUNICORN_MAX_REQUEST_LINE
    small = gunicorn_settings(ServerSettings(), ServerOptions(max_request_target=2000))
    assert small["limit_request_line"] == 2064 and "limit_request_field_size" not in small
    assert gunicorn_settings(ServerSettings(), ServerOptions())["forwarded_allow_ips"] == ""


def test_uvicorn_trusts_no_proxy_unless_told() -> None:
    default = uvicorn_settings(ServerSettings())
    assert default["proxy_headers"] is False and default["http"] == "taskman.uvicorn_protocol:H11Protocol"
    trusting = uvicorn_settings(ServerSettings(forwarded_allow_ips=("10.0.0.0/8", "192.0.2.7"), keepalive=8))
    assert (trusting["proxy_headers"], trusting["forwarded_allow_ips"]) == (True, "10.0.0.0/8,192.0.2.7")
    assert trusting["timeout_keep_alive"] == 8


# -- proxy trust ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trusted,forwarded,client",
    [
        (["10.0.0.0/8"], "203.0.113.9", "203.0.113.9"),
        (["10.0.0.0/8"], "198.51.100.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),  # the last untrusted hop
        (["10.0.0.0/8"], "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # every hop trusted: the first one
        (["10.0.0.0/8"], "203.0.113.9:4711", "203.0.113.9"),
        (["10.0.0.0/8"], "[2001:db8::1]:443", "2001:db8::1"),
        (["*"], "198.51.100.1, 203.0.113.9", "198.51.100.1"),
        (["10.0.0.0/8"], " , ", None),
    ],
)
def test_the_client_a_trusted_proxy_names(trusted: list[str], forwarded: str, client: str | None) -> None:
    assert TrustedProxies(trusted).client_of(forwarded) == client


def test_proxies_are_trusted_by_address_or_network() -> None:
    proxies = TrustedProxies(["192.0.2.7", "10.0.0.0/8", "2001:db8::/32"])
    assert [proxies.trusts(h) for h in ("192.0.2.7", "10.9.9.9", "2001:db8::5", "192.0.2.8", "unix:/x", "")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert not TrustedProxies(()) and TrustedProxies(["*"]).trusts("198.51.100.1")


# -- what the server layer answers itself --------------------------------------------------------------------------


def test_a_server_refusal_is_a_whole_problem_response_that_closes() -> None:
    (reply,) = responses_in(problem_response(431))
    assert reply.status == 431
    assert reply.headers["content-type"] == "application/problem+json"
    assert (reply.headers["connection"], reply.headers["x-content-type-options"]) == ("close", "nosniff")
    body = reply.json()
    assert body["status"] == 431 and body["title"] == "Request Header Fields Too Large"
    assert body["request_id"] == reply.headers["x-request-id"]


@pytest.mark.parametrize(
    "exc,status",
    [
        (HeadTimeout(), 408),
        (HeadTooLarge(in_line=True), 414),
        (HeadTooLarge(in_line=False), 431),
        (parse_errors.LimitRequestLine(9000, 8190), 414),
        (parse_errors.InvalidHeader("CONTENT-LENGTH"), 400),
        (parse_errors.UnsupportedTransferCoding("foo"), 501),
        (parse_errors.InvalidChunkSize("-1"), 400),
        (RuntimeError("a bug"), None),
    ],
)
def test_gunicorn_refusals_map_to_statuses(exc: BaseException, status: int | None) -> None:
    assert refusal_status(exc) == status


def request_event(data: bytes) -> Any:
    conn = StrictConnection(h11.SERVER)
    conn.receive_data(data)
    return conn.next_event()


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_the_uvicorn_protocol_refuses_ambiguous_framing(head: bytes) -> None:
    with pytest.raises(h11.RemoteProtocolError) as refused:
        request_event(head)
    assert refused.value.error_status_hint == 400


def test_the_uvicorn_protocol_takes_unambiguous_framing() -> None:
    assert isinstance(request_event(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), h11.Request)
    assert isinstance(request_event(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"), h11.Request)


# -- the gunicorn worker's deadlines ----------------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_head_that_does_not_arrive_in_time_is_a_head_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    reader = EdgeReader(server)
    reader.expect_head(0.2, budget=None)
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert reader.recv(100) == b"GET / HTTP/1.1\r\n"
    with pytest.raises(HeadTimeout):
        reader.recv(100)
    assert server.gettimeout() is None  # the socket's own timeout is left as it was


def test_a_head_over_its_budget_says_whether_the_request_line_ended(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    reader = EdgeReader(server)
    reader.expect_head(None, budget=10)
    client.sendall(b"GET /" + b"x" * 20)
    with pytest.raises(HeadTooLarge) as too_large:
        reader.recv(100)
    assert too_large.value.in_line
    reader.expect_head(None, budget=30)
    client.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"x" * 20)
    with pytest.raises(HeadTooLarge) as too_large:
        reader.recv(100)
    assert not too_large.value.in_line


def test_a_late_body_is_a_body_timeout_and_a_drain_a_plain_one(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    reader = EdgeReader(server)
    reader.expect_body(0.1)
    with pytest.raises(BodyTimeout):
        reader.recv(100)
    reader.expect_nothing()
    server.settimeout(0.1)  # what gunicorn's drain sets
    with pytest.raises(TimeoutError) as plain:
        reader.recv(100)
    assert not isinstance(plain.value, BodyTimeout)


class FailingBody:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def read(self, size: int | None = None) -> bytes:
        raise self.exc


@pytest.mark.parametrize(
    "exc,status",
    [(parse_errors.InvalidChunkSize("-1"), 400), (parse_errors.NoMoreData(b""), 400), (BodyTimeout(), 408)],
)
def test_a_body_the_client_got_wrong_is_its_4xx(exc: BaseException, status: int) -> None:
    with pytest.raises(falcon.HTTPError) as failed:
        GuardedInput(FailingBody(exc)).read()
    assert failed.value.status_code == status
    assert failed.value.headers == {"Connection": "close"}


# -- a late body, as each flavour's app sees it ------------------------------------------------------------------------


class Store:
    taskman_plugin_name = "store_probe"

    def __init__(self) -> None:
        self.stored: list[Any] = []

    def on_post(self, req: Any, resp: Any) -> None:
        self.stored.append(req.get_media())
        resp.media = {"stored": True}

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/store", self)]

    @hookimpl
    def taskman_server_options(self, config: Any, flavour: str) -> dict[str, Any]:
        return {"body_timeout": 0.3}


class Trickle:
    """An ASGI ``receive`` that gives one byte of ``body`` per call, slowly, and never the end."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent = 0

    async def __call__(self) -> dict[str, Any]:
        if self.sent:
            await asyncio.sleep(0.1)
        piece = self.body[self.sent : self.sent + 1]
        self.sent += 1
        return {"type": "http.request", "body": piece, "more_body": True}


def test_a_body_that_does_not_arrive_in_time_is_a_408_that_closes(
    asgi: bool, make_config: Callable[..., Config]
) -> None:
    store = Store()
    app: Any = taskman.create_app(make_config(plugins=(store,)), asgi=asgi, plugins=(store,))
    taskman.start(app)
    try:
        body = json.dumps({"x": "y" * 100}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if asgi:
            scope = falcon.testing.create_scope(path="/store", method="POST", headers=headers)
            collector = falcon.testing.ASGIResponseEventCollector()
            started = time.monotonic()
            asyncio.run(app(scope, Trickle(body), collector))
            assert time.monotonic() - started < 10
            status, sent = collector.status, dict(collector.headers)
            document = json.loads(b"".join(collector.body_chunks))
        else:
            # What taskman's gunicorn worker hands the app when the body's deadline passes.
            environ = falcon.testing.create_environ(path="/store", method="POST", headers=headers)
            environ["wsgi.input"] = GuardedInput(FailingBody(BodyTimeout()))
            start_response = falcon.testing.StartResponseMock()
            document = json.loads(b"".join(app(environ, start_response)))
            status, sent = int(start_response.status.split()[0]), dict(start_response.headers)
        assert status == 408 and document["status"] == 408
        assert sent["content-type"] == "application/problem+json" and sent["connection"] == "close"
        assert store.stored == []
    finally:
        taskman.stop(app)
