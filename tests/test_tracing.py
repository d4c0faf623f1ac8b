"""The tracing plugin: request and query spans, W3C propagation, OTLP export, on and off.

Most tests collect spans with the SDK's in-memory exporter, handed to
:func:`taskman_plugins.tracing.setup` before the app starts (start-up then
reuses that runtime: one per process).  The OTLP tests send real
OTLP/HTTP protobuf to a small receiver on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import falcon.testing
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from taskman_plugins import tracing
from taskman_plugins.tracing.spans import is_instrumented, operation_name, span_name

import taskman
from taskman.config import ConfigError
from taskman.db import database, is_sqlite_url
from tests.sample_plugins import EchoPlugin

Client = Callable[..., falcon.testing.TestClient]

ROOT = Path(__file__).resolve().parent.parent
# Any URL turns tracing on; with an injected exporter nothing is ever sent to it.
ON = {"APP_TRACING__OTLP_ENDPOINT": "http://127.0.0.1:4318"}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
SECRET = "s3cret-param-value"


class ThingResource:
    def on_get(self, req: Any, resp: Any, thing_id: str) -> None:
        resp.media = {"id": thing_id}


class ParamQueryResource:
    def on_get(self, req: Any, resp: Any) -> None:
        (value,) = database.execute_sql(f"SELECT {database.param}", (SECRET,)).fetchone()
        resp.media = {"echoed": value == SECRET}


class ThingsPlugin:
    taskman_plugin_name = "things"

    @taskman.hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/things/{thing_id}", ThingResource()), ("/param-query", ParamQueryResource())]


PLUGINS = (EchoPlugin(), ThingsPlugin())


@attrs.define
class Collected:
    exporter: InMemorySpanExporter
    runtime: tracing.TracingRuntime

    def spans(self) -> list[ReadableSpan]:
        assert self.runtime.force_flush()
        return list(self.exporter.get_finished_spans())

    def one(self, kind: SpanKind, name: str | None = None) -> ReadableSpan:
        found = [s for s in self.spans() if s.kind == kind and (name is None or s.name == name)]
        assert len(found) == 1, [(s.name, s.kind) for s in self.spans()]
        return found[0]


@pytest.fixture(autouse=True)
def _no_runtime_leaks() -> Iterator[None]:
    assert tracing.active() is None
    yield
    assert tracing.active() is None, "a test left the tracing runtime running"


@pytest.fixture
def collected() -> Iterator[Collected]:
    exporter = InMemorySpanExporter()
    runtime = tracing.setup(tracing.TracingSettings(otlp_endpoint=ON["APP_TRACING__OTLP_ENDPOINT"]), exporter=exporter)
    yield Collected(exporter, runtime)
    tracing.release()


def traced_client(make_client: Client, **environ: str) -> falcon.testing.TestClient:
    return make_client(plugins=PLUGINS, environ={**ON, **environ})


def app_of(client: falcon.testing.TestClient) -> Any:
    """The taskman app behind a test client (``app.taskman`` is the runtime)."""
    return client.app


def all_attribute_text(span: ReadableSpan) -> str:
    parts = [span.name, str(dict(span.attributes or {})), str(span.status.description)]
    parts += [str(dict(e.attributes or {})) for e in span.events]
    return " ".join(parts)


# -- settings and plain helpers ------------------------------------------------------


def test_settings_are_off_by_default_and_parsed_from_the_environment(make_config: Callable[..., Any]) -> None:
    assert make_config().tracing == tracing.TracingSettings()
    assert not tracing.TracingSettings().enabled
    config = make_config(
        environ={
            "APP_TRACING__OTLP_ENDPOINT": "https://collector.internal:4318",
            "APP_TRACING__SERVICE_NAME": "taskman-api",
            "APP_TRACING__SAMPLE_RATIO": "0.25",
            "APP_TRACING__EXPORT_TIMEOUT": "3",
            "APP_TRACING__TRACE_DATABASE": "no",
        }
    )
    assert config.tracing == tracing.TracingSettings(
        otlp_endpoint="https://collector.internal:4318",
        service_name="taskman-api",
        sample_ratio=0.25,
        export_timeout=3.0,
        trace_database=False,
    )
    assert config.tracing.enabled
    assert config.sources["tracing.sample_ratio"] == "env APP_TRACING__SAMPLE_RATIO"


@pytest.mark.parametrize(
    "var,value,reason",
    [
        ("APP_TRACING__SAMPLE_RATIO", "1.5", "'sample_ratio' must be <= 1.0: 1.5"),
        ("APP_TRACING__SAMPLE_RATIO", "half", "must be a number, got 'half'"),
        ("APP_TRACING__OTLP_ENDPOINT", "collector:4318", "must be empty (tracing off) or an http:// or https:// URL"),
        ("APP_TRACING__EXPORT_TIMEOUT", "0", "'export_timeout' must be > 0: 0.0"),
        ("APP_TRACING__TRACE_DATABASE", "maybe", "must be a boolean"),
        ("APP_TRACING__COLOUR", "blue", "unknown setting"),
    ],
)
def test_bad_settings_stop_startup_naming_the_key(
    make_config: Callable[..., Any], var: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        make_config(environ={var: value})
    assert var in str(exc.value)
    assert reason in str(exc.value)


@pytest.mark.parametrize(
    "endpoint,url",
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/otlp", "https://otel.example/otlp/v1/traces"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
        ("http://collector:4318/v1/traces/", "http://collector:4318/v1/traces"),
    ],
)
def test_the_traces_url_is_derived_like_otel_exporter_otlp_endpoint(endpoint: str, url: str) -> None:
    assert tracing.traces_url(endpoint) == url


def test_span_names_use_the_route_template_never_the_path() -> None:
    assert span_name("GET", "/things/{thing_id}") == "GET /things/{thing_id}"
    assert span_name("DELETE", None) == "DELETE"
    assert span_name("BREW", "/pot") == "HTTP /pot"
    assert operation_name("  select * from t") == "SELECT"
    assert operation_name("(SELECT 1) UNION (SELECT 2)") == "SELECT"
    assert operation_name("") is None


def test_setup_is_once_per_process_and_the_last_release_flushes() -> None:
    exporter = InMemorySpanExporter()
    settings = tracing.TracingSettings(otlp_endpoint="http://127.0.0.1:4318")
    first = tracing.setup(settings, exporter=exporter)
    assert tracing.setup(settings, exporter=InMemorySpanExporter()) is first
    assert tracing.active() is first
    first.tracer.start_span("queued").end()
    tracing.release()
    assert tracing.active() is first  # one user left
    assert exporter.get_finished_spans() == ()  # still queued in the batch processor
    tracing.release()
    assert tracing.active() is None
    assert first.closed
    assert [s.name for s in exporter.get_finished_spans()] == ["queued"]  # shut-down flushed it
    tracing.release()  # an extra release is harmless
    assert tracing.active() is None


def test_a_runtime_inherited_from_another_process_is_replaced() -> None:
    settings = tracing.TracingSettings(otlp_endpoint="http://127.0.0.1:4318")
    inherited = tracing.setup(settings, exporter=InMemorySpanExporter())
    inherited.pid = -1  # as if built in the parent before a fork
    assert tracing.active() is None
    own = tracing.setup(settings, exporter=InMemorySpanExporter())
    assert own is not inherited
    assert own.pid == os.getpid()
    assert not inherited.closed  # the parent's: left alone
    tracing.release()
    assert own.closed
    inherited.pid = os.getpid()
    inherited.shutdown()


# -- requests, on both flavours ----------------------------------------------------------


def test_the_server_span_is_named_by_route_template(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    assert client.simulate_get("/things/42").json == {"id": "42"}
    span = collected.one(SpanKind.SERVER)
    assert span.name == "GET /things/{thing_id}"
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.route"] == "/things/{thing_id}"
    assert span.attributes["url.path"] == "/things/42"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code == StatusCode.UNSET
    assert span.parent is None


def test_an_unmatched_route_is_named_by_method_only(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    assert client.simulate_post("/no/such/thing/123").status_code == 404
    span = collected.one(SpanKind.SERVER)
    assert span.name == "POST"
    assert span.attributes is not None
    assert "http.route" not in span.attributes
    assert span.attributes["url.path"] == "/no/such/thing/123"
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code == StatusCode.UNSET  # 4xx is the client's error, not the server's


def test_an_incoming_traceparent_is_the_parent(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    result = client.simulate_get("/echo", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert result.status_code == 200
    span = collected.one(SpanKind.SERVER)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert span.parent.is_remote
    assert format(span.parent.span_id, "016x") == PARENT_ID


def test_a_malformed_traceparent_starts_a_new_trace(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    assert client.simulate_get("/echo", headers={"traceparent": "00-nonsense-01"}).status_code == 200
    span = collected.one(SpanKind.SERVER)
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != TRACE_ID


def test_database_spans_nest_under_the_request_span(
    make_client: Client, collected: Collected, database_url: str
) -> None:
    client = traced_client(make_client)
    result = client.simulate_get("/db", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert result.json == {"value": 1}
    server = collected.one(SpanKind.SERVER)
    query = collected.one(SpanKind.CLIENT)
    assert query.context.trace_id == server.context.trace_id
    assert format(query.context.trace_id, "032x") == TRACE_ID
    assert query.parent is not None
    assert query.parent.span_id == server.context.span_id
    system = "sqlite" if is_sqlite_url(database_url) else "postgresql"
    assert query.attributes is not None
    assert query.attributes["db.system"] == system
    assert query.attributes["db.system.name"] == system
    assert query.attributes["db.query.text"] == "SELECT 1"
    assert query.attributes["db.operation.name"] == "SELECT"
    assert query.name.startswith("SELECT")
    assert server.start_time is not None and query.start_time is not None
    assert server.end_time is not None and query.end_time is not None
    assert server.start_time <= query.start_time <= query.end_time <= server.end_time


def test_query_parameters_never_reach_a_span(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    assert client.simulate_get("/param-query").json == {"echoed": True}
    query = collected.one(SpanKind.CLIENT)
    assert query.attributes is not None
    assert query.attributes["db.query.text"] == f"SELECT {database.param}"
    assert all(SECRET not in all_attribute_text(span) for span in collected.spans())


def test_a_failing_query_marks_its_span_without_the_message(make_client: Client, collected: Collected) -> None:
    class BadQuery:
        def on_get(self, req: Any, resp: Any) -> None:
            database.execute_sql(f"SELECT * FROM no_such_table WHERE x = {database.param}", (SECRET,))

    class BadQueryPlugin:
        taskman_plugin_name = "bad_query"

        @taskman.hookimpl
        def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
            return [("/bad-query", BadQuery())]

    client = make_client(plugins=(BadQueryPlugin(),), environ=ON)
    # SQLite reports a missing table as OperationalError, which the core answers with 503.
    assert client.simulate_get("/bad-query").status_code in (500, 503)
    query = collected.one(SpanKind.CLIENT)
    assert query.status.status_code == StatusCode.ERROR
    assert query.attributes is not None
    assert query.attributes["error.type"] in ("OperationalError", "ProgrammingError")
    assert "no_such_table" not in str(query.status.description)
    assert all(SECRET not in all_attribute_text(span) for span in collected.spans())


def test_a_500_is_an_error_span_without_the_exception_text(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    assert client.simulate_get("/boom").status_code == 500
    span = collected.one(SpanKind.SERVER)
    assert span.name == "GET /boom"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "500"
    assert span.status.status_code == StatusCode.ERROR
    assert "hunter2" not in all_attribute_text(span)


def test_the_request_id_is_an_attribute(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    result = client.simulate_get("/echo", headers={"X-Request-ID": "req-abc-123"})
    assert result.headers["x-request-id"] == "req-abc-123"
    span = collected.one(SpanKind.SERVER)
    assert span.attributes is not None
    assert span.attributes[tracing.REQUEST_ID_ATTRIBUTE] == "req-abc-123"
    minted = client.simulate_get("/echo").headers["x-request-id"]
    assert minted in [(s.attributes or {}).get(tracing.REQUEST_ID_ATTRIBUTE) for s in collected.spans()]


def test_without_the_request_id_plugin_there_is_no_request_id_attribute(
    make_client: Client, collected: Collected
) -> None:
    client = traced_client(make_client, APP_PLUGINS__DISABLE="request_id")
    assert client.simulate_get("/echo").status_code == 200
    span = collected.one(SpanKind.SERVER)
    assert span.attributes is not None
    assert tracing.REQUEST_ID_ATTRIBUTE not in span.attributes


def test_trace_database_off_keeps_the_database_untouched(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client, APP_TRACING__TRACE_DATABASE="false")
    assert client.simulate_get("/db").json == {"value": 1}
    assert [s.kind for s in collected.spans()] == [SpanKind.SERVER]
    assert "execute_sql" not in vars(app_of(client).taskman.database)


def test_a_zero_sample_ratio_records_only_what_the_caller_sampled(make_client: Client) -> None:
    exporter = InMemorySpanExporter()
    settings = tracing.TracingSettings(otlp_endpoint="http://127.0.0.1:4318", sample_ratio=0.0)
    runtime = tracing.setup(settings, exporter=exporter)
    try:
        client = traced_client(make_client)
        assert client.simulate_get("/db").status_code == 200
        assert client.simulate_get("/db", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}).status_code == 200
        runtime.force_flush()
        assert exporter.get_finished_spans() == ()
        assert client.simulate_get("/db", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}).status_code == 200
        runtime.force_flush()
        spans = exporter.get_finished_spans()
        assert sorted(s.kind.name for s in spans) == ["CLIENT", "SERVER"]
        assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    finally:
        tracing.release()


def test_shutdown_unwraps_the_database(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client)
    db = app_of(client).taskman.database
    assert is_instrumented(db)
    assert "execute_sql" in vars(db)
    taskman.stop(client.app)
    assert not is_instrumented(db)
    assert "execute_sql" not in vars(db)
    assert tracing.active() is collected.runtime  # the fixture still holds it


# -- off -----------------------------------------------------------------------------------


def test_without_an_endpoint_nothing_is_installed(make_client: Client) -> None:
    client = make_client(plugins=PLUGINS)
    app = app_of(client)
    assert "tracing" in app.taskman.plugins.names
    middleware = [type(mw) for _, mw in app.taskman.plugins.middleware(app.taskman.config)]
    assert tracing.TracingMiddleware not in middleware
    assert client.simulate_get("/db").json == {"value": 1}
    assert tracing.active() is None  # start-up built no provider
    assert "execute_sql" not in vars(app.taskman.database)


def test_without_an_endpoint_no_spans_are_recorded(make_client: Client, collected: Collected) -> None:
    # Even with a runtime running in the process (another app's), this app records nothing.
    client = make_client(plugins=PLUGINS)
    assert client.simulate_get("/db").json == {"value": 1}
    assert client.simulate_get("/boom").status_code == 500
    assert collected.spans() == []


def test_disabling_the_plugin_removes_it_and_nothing_else(make_client: Client, collected: Collected) -> None:
    client = traced_client(make_client, APP_PLUGINS__DISABLE="tracing", APP_TRACING__SAMPLE_RATIO="oops")
    app = app_of(client)
    assert "tracing" not in app.taskman.plugins.names
    assert "request_id" in app.taskman.plugins.names
    assert "tracing" not in app.taskman.config.sections
    result = client.simulate_get("/db", headers={"X-Request-ID": "still-here"})
    assert result.json == {"value": 1}
    assert result.headers["x-request-id"] == "still-here"
    assert client.simulate_get("/things/7").json == {"id": "7"}
    assert client.simulate_get("/boom").status_code == 500
    assert "execute_sql" not in vars(app.taskman.database)
    assert collected.spans() == []


# -- OTLP over HTTP, to a real receiver --------------------------------------------------


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf on ``POST /v1/traces`` and keeps what it decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.content_types.append(self.headers.get("Content-Type", ""))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """``(resource_attributes, span)`` for every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope_spans.spans]
        return found


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    for var in list(os.environ):
        if var.startswith("OTEL_") or var.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = OtlpReceiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join()


def test_spans_reach_an_otlp_receiver_when_the_app_stops(
    make_client: Client, receiver: OtlpReceiver, database_url: str
) -> None:
    client = make_client(
        plugins=PLUGINS,
        environ={"APP_TRACING__OTLP_ENDPOINT": receiver.endpoint, "APP_TRACING__SERVICE_NAME": "taskman-otlp-test"},
    )
    assert isinstance(tracing.active(), tracing.TracingRuntime)
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "X-Request-ID": "otlp-req-1"}
    assert client.simulate_get("/db", headers=headers).json == {"value": 1}
    assert client.simulate_get("/things/9").status_code == 200
    taskman.stop(client.app)  # shut-down flushes the batch processor
    assert tracing.active() is None

    received = receiver.spans()
    assert receiver.content_types and set(receiver.content_types) == {"application/x-protobuf"}
    assert {resource["service.name"] for resource, _ in received} == {"taskman-otlp-test"}
    assert {resource["process.pid"] for resource, _ in received} == {os.getpid()}
    by_name = {span.name: span for _, span in received}
    server, thing = by_name["GET /db"], by_name["GET /things/{thing_id}"]
    query = next(span for _, span in received if span.kind == span.SPAN_KIND_CLIENT)
    assert len(received) == 3
    assert server.kind == server.SPAN_KIND_SERVER
    assert server.trace_id.hex() == TRACE_ID
    assert server.parent_span_id.hex() == PARENT_ID
    assert attributes_of(server.attributes) == {
        "http.request.method": "GET",
        "http.route": "/db",
        "url.path": "/db",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "taskman.request_id": "otlp-req-1",
    }
    assert query.trace_id == server.trace_id
    assert query.parent_span_id == server.span_id
    query_attributes = attributes_of(query.attributes)
    assert query_attributes["db.query.text"] == "SELECT 1"
    assert query_attributes["db.system"] == ("sqlite" if is_sqlite_url(database_url) else "postgresql")
    assert attributes_of(thing.attributes)["http.route"] == "/things/{thing_id}"
    assert thing.trace_id != server.trace_id


FORKING_WORKER = """
import json, os, sys
import falcon.testing
import taskman
from taskman.config import load_config
from taskman_plugins import tracing
from tests.helpers import TEST_ENVIRON
from tests.sample_plugins import EchoPlugin

plugins = (EchoPlugin(),)
environ = {**TEST_ENVIRON, "APP_TRACING__OTLP_ENDPOINT": sys.argv[2]}
config = load_config(environ=environ, overrides={"environment": "testing", "database": {"url": sys.argv[1]}},
                     extra_plugins=plugins)
app = taskman.create_app(config, asgi=False, plugins=plugins)
taskman.start(app)  # gunicorn --preload: the master starts, then forks
inherited = tracing.active()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:  # the worker
    status = falcon.testing.simulate_get(app, "/echo").status_code
    own = tracing.active()
    report = {"status": status, "pid": os.getpid(), "own": own is not None and own is not inherited,
              "own_pid": own.pid if own else None}
    taskman.stop(app)
    os.write(write_end, json.dumps(report).encode())
    os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as pipe:
    worker = json.loads(pipe.read())
os.waitpid(pid, 0)
same = tracing.active() is inherited
taskman.stop(app)
print(json.dumps({"worker": worker, "parent": os.getpid(), "parent_kept_its_runtime": same}))
"""


def test_a_forked_worker_exports_through_its_own_provider(receiver: OtlpReceiver, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", FORKING_WORKER, database_url, receiver.endpoint],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    worker = result["worker"]
    assert worker["status"] == 200
    assert worker["own"] is True
    assert worker["own_pid"] == worker["pid"] != result["parent"]
    assert result["parent_kept_its_runtime"] is True
    received = receiver.spans()
    assert [span.name for _, span in received] == ["GET /echo"]
    assert [resource["process.pid"] for resource, _ in received] == [worker["pid"]]
