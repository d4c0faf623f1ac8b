"""The logging plugin: structlog for the whole process, stdlib and servers included, one access line per request.

Output is checked as rendered: the plugin writes to the current
``sys.stderr`` (captured with ``capsys``) or, for the plain part, to a
``StringIO``.  HTTP tests run on both flavours.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi
import falcon.testing
import pytest
import structlog
from taskman_plugins.logging import LoggingSettings, log_processors
from taskman_plugins.logging.middleware import UNMATCHED_ROUTE, access_fields
from taskman_plugins.logging.pipeline import configure_logging, current_setup, reset_logging
from taskman_plugins.redaction import Redactor

import taskman
from taskman.config import ConfigError, DatabaseSettings, load_config
from taskman.db import make_database
from taskman.migrations import Migrations
from taskman.plugins import PluginError, Plugins
from tests.logcapture import (
    ACCESS_FIELDS,
    STANDARD_FIELDS,
    Lines,
    LogProbe,
    assert_utc_iso,
    events,
    json_lines,
)
from tests.servers import ServerLauncher

pytestmark = pytest.mark.usefixtures("fresh_logging")

Client = Callable[..., falcon.testing.TestClient]


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


# -- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "environment,expected",
    [("development", "console"), ("testing", "json"), ("staging", "json"), ("production", "json")],
)
def test_auto_format_follows_the_environment(environment: str, expected: str) -> None:
    assert LoggingSettings().resolved_format(environment) == expected
    assert LoggingSettings(format="json").resolved_format("development") == "json"
    assert LoggingSettings(format="console").resolved_format("production") == "console"


def test_settings_come_from_the_environment() -> None:
    config = load_config(environ={"APP_LOGGING__FORMAT": "console", "APP_LOGGING__LEVEL": "WARNING"})
    assert config.logging == LoggingSettings(format="console", level="WARNING")
    assert config.logging.level_number == logging.WARNING
    assert config.sources["logging.format"] == "env APP_LOGGING__FORMAT"


@pytest.mark.parametrize("var,value", [("APP_LOGGING__FORMAT", "xml"), ("APP_LOGGING__LEVEL", "loud")])
def test_bad_settings_name_the_key(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(environ={var: value})
    assert var in str(exc.value)
    assert value in str(exc.value)


# -- the pipeline, without Falcon -------------------------------------------------------


def test_json_lines_carry_the_standard_fields(stream: io.StringIO) -> None:
    configure_logging(format="json", static={"app_name": "demo", "environment": "staging"}, stream=stream)
    structlog.get_logger("demo.part").info("hello", answer=42)
    (line,) = json_lines(stream.getvalue())
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["level"] == "info" and line["logger"] == "demo.part" and line["event"] == "hello"
    assert line["app_name"] == "demo" and line["environment"] == "staging" and line["answer"] == 42
    assert_utc_iso(line["timestamp"])


def test_stdlib_records_go_through_the_same_pipeline_with_their_traceback(stream: io.StringIO) -> None:
    configure_logging(format="json", static={"app_name": "demo", "environment": "production"}, stream=stream)
    structlog.contextvars.bind_contextvars(request_id="rid-7")
    try:
        raise ValueError("no good")
    except ValueError as exc:
        logging.getLogger("taskman.errors").error(
            "request_failed", exc_info=exc, extra={"method": "GET", "path": "/x", "color_message": "noise"}
        )
    (line,) = json_lines(stream.getvalue())
    assert line.keys() >= STANDARD_FIELDS
    assert line["logger"] == "taskman.errors" and line["level"] == "error" and line["event"] == "request_failed"
    assert line["request_id"] == "rid-7" and line["method"] == "GET" and line["path"] == "/x"
    assert "color_message" not in line
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: no good" in line["exception"]


def test_console_format_is_readable_text(stream: io.StringIO) -> None:
    configure_logging(format="console", static={"app_name": "demo", "environment": "development"}, stream=stream)
    structlog.get_logger("demo").info("hello", answer=42)
    logging.getLogger("demo.stdlib").warning("careful")
    first, second = stream.getvalue().splitlines()
    assert not first.startswith("{")
    assert "hello" in first and "answer=42" in first and "app_name=demo" in first
    assert "careful" in second and "warning" in second
    assert "\x1b[" not in first, "no colours when the stream is not a terminal"


#: Control characters a request can carry into a line: ESC (terminal sequences), NUL, BEL, CR, LF, DEL, the C1
#: CSI, and a right-to-left override.
CONTROLS = "\x1b\x00\x07\r\n\x7f\x9b\u202e"


def assert_no_raw_controls(text: str) -> None:
    """No control character but the newlines between lines (and inside a traceback, which is laid out in lines)."""
    for char in CONTROLS:
        if char == "\n":
            continue
        assert char not in text, (char, text)


def test_the_console_escapes_control_characters_in_every_field(stream: io.StringIO) -> None:
    configure_logging(format="console", stream=stream)
    hostile = "/x\x1b[2J\x1b]0;owned\x07\x00\r\nfake line\x7f\x9b\u202e"

    class Shady:
        def __repr__(self) -> str:
            return "Shady(\x1b[31m)"

    structlog.get_logger("demo").info("seen " + hostile, path=hostile, nested={"k": hostile}, obj=Shady())
    structlog.get_logger("demo").info("keys", **{"k\x1by": 1})
    logging.getLogger("demo.stdlib").warning("stdlib %s", hostile, extra={"path": hostile})
    try:
        raise ValueError(hostile)
    except ValueError:
        logging.getLogger("demo.stdlib").exception("failed")
    text = stream.getvalue()
    assert_no_raw_controls(text)
    lines = text.splitlines()
    before_the_traceback = lines[: next(i for i, line in enumerate(lines) if "failed" in line) + 1]
    assert len(before_the_traceback) == 4, "a newline in a value started a line of its own"
    assert "\\x1b[2J" in lines[0] and "\\x00" in lines[0] and "\\u202e" in lines[0]
    assert "Shady(\\x1b[31m)" in lines[0] and "k\\x1by=1" in lines[1]
    # The traceback keeps its own line breaks (its layout); what the exception says is escaped.
    failed = text[text.index("failed") :]
    assert "Traceback (most recent call last):" in failed and "\n  File " in failed
    assert "ValueError: /x\\x1b[2J" in failed


def test_json_lines_escape_control_characters_already(stream: io.StringIO) -> None:
    configure_logging(format="json", stream=stream)
    structlog.get_logger("demo").info("event", path="/x\x1b[2J\x00\r\n\u202e")
    (line,) = stream.getvalue().splitlines()
    assert_no_raw_controls(line)
    assert json.loads(line)["path"] == "/x\x1b[2J\x00\r\n\u202e"


def test_a_request_path_with_control_characters_is_escaped_in_the_console(
    make_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_LOGGING__FORMAT": "console"})
    capsys.readouterr()
    client.simulate_get("/items/%1B%5B2J%1B%5D0%3Bowned%07%00%0D%0Afake%9B")
    client.simulate_get("/nowhere%1B%5B31m%00", headers={"User-Agent": "agent\x1b[31m"})
    err = capsys.readouterr().err
    completed = [line for line in err.splitlines() if "request_completed" in line]
    assert len(completed) == 2, err
    assert_no_raw_controls(err)
    assert not any(line.startswith("fake") for line in err.splitlines())
    assert "\\x1b[2J" in completed[0] and "\\x00" in completed[0]
    assert "user_agent=" in completed[1] and "\\x1b[31m" in completed[1]


def test_the_level_filters_structlog_and_stdlib(stream: io.StringIO) -> None:
    configure_logging(format="json", level="warning", stream=stream)
    structlog.get_logger("demo").info("quiet")
    logging.getLogger("demo").info("quiet too")
    structlog.get_logger("demo").warning("loud")
    logging.getLogger("demo").error("loud too")
    assert [line["event"] for line in json_lines(stream.getvalue())] == ["loud", "loud too"]


def test_configuration_is_idempotent_and_keeps_other_handlers(stream: io.StringIO) -> None:
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        kwargs: dict[str, Any] = {"format": "json", "processors": [Redactor()], "stream": stream}
        assert configure_logging(**kwargs) is True
        assert configure_logging(**{**kwargs, "processors": [Redactor()]}) is False  # equal processors
        ours = [h for h in root.handlers if getattr(h, "taskman_logging", False)]
        assert len(ours) == 1 and other in root.handlers
        assert configure_logging(**{**kwargs, "format": "console"}) is True
        assert [h for h in root.handlers if getattr(h, "taskman_logging", False)] != ours
        assert len([h for h in root.handlers if getattr(h, "taskman_logging", False)]) == 1
        assert other in root.handlers
    finally:
        root.removeHandler(other)


def test_cached_loggers_follow_a_reconfiguration(stream: io.StringIO) -> None:
    configure_logging(format="json", stream=stream)
    log = structlog.get_logger("cached")
    log.info("first")  # cached from now on
    configure_logging(format="console", stream=stream)
    log.info("second")
    first, second = stream.getvalue().splitlines()
    assert json.loads(first)["event"] == "first"
    assert not second.startswith("{") and "second" in second


def test_reset_restores_structlog_and_the_root_logger(stream: io.StringIO) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    configure_logging(format="json", level="debug", stream=stream)
    assert current_setup() is not None and root.level == logging.DEBUG
    reset_logging()
    assert current_setup() is None
    assert root.level == level and root.handlers == handlers
    assert not structlog.is_configured()  # structlog's defaults again


def test_warnings_are_logged(stream: io.StringIO) -> None:
    configure_logging(format="json", stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old thing", DeprecationWarning, stacklevel=1)
    (line,) = json_lines(stream.getvalue())
    assert line["logger"] == "py.warnings" and line["level"] == "warning"
    assert "DeprecationWarning: old thing" in line["event"]


def test_access_fields_never_use_the_raw_path_as_route() -> None:
    fields = access_fields(
        method="GET",
        route=None,
        path="/users/ada/secret-report",
        status_code=404,
        duration_ms=1.23456,
        client_ip="10.0.0.1",
        user_agent=None,
        request_id="r-1",
    )
    assert fields == {
        "method": "GET",
        "route": UNMATCHED_ROUTE,
        "path": "/users/ada/secret-report",
        "status_code": 404,
        "duration_ms": 1.235,
        "client_ip": "10.0.0.1",
        "user_agent": None,
        "request_id": "r-1",
    }


def test_falcon_asgi_unhandled_errors_reach_the_log_with_their_traceback(stream: io.StringIO) -> None:
    configure_logging(format="json", stream=stream)

    class Failing:
        async def on_get(self, req: Any, resp: Any) -> None:
            raise RuntimeError("kaput")

    app = falcon.asgi.App()  # falcon's own error handling, not taskman's
    app.add_route("/", Failing())
    assert falcon.testing.TestClient(app).simulate_get("/").status_code == 500
    (line,) = [line for line in json_lines(stream.getvalue()) if line["logger"] == "falcon"]
    assert line["level"] == "error" and "Unhandled exception" in line["event"]
    assert "Traceback" in line["exception"] and "RuntimeError: kaput" in line["exception"]


# -- taskman_log_processors -------------------------------------------------------------


def add_tag(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict["tag"] = "tagged"
    return event_dict


class TagPlugin:
    taskman_plugin_name = "a_tagger"

    @taskman.hookimpl
    def taskman_log_processors(self, config: Any) -> list[object]:
        return [add_tag]


class BadProcessorPlugin:
    taskman_plugin_name = "bad_processors"

    @taskman.hookimpl
    def taskman_log_processors(self, config: Any) -> list[object]:
        return ["not a processor"]


def test_taskman_log_processors_results_are_collected_in_plugin_order(make_config: Callable[..., Any]) -> None:
    runtime = taskman.create_app(make_config(plugins=(TagPlugin(),)), plugins=[TagPlugin()]).taskman
    assert runtime.plugins.manager.hook.taskman_log_processors.spec is not None
    assert [p.processor for p in log_processors(runtime)] == [add_tag, Redactor()]
    environ = {"APP_PLUGINS__DISABLE": "redaction"}
    disabled = taskman.create_app(make_config(environ=environ, plugins=(TagPlugin(),)), plugins=[TagPlugin()]).taskman
    assert [p.processor for p in log_processors(disabled)] == [add_tag]


def test_a_processor_that_is_not_callable_names_its_plugin(make_config: Callable[..., Any]) -> None:
    with pytest.raises(PluginError, match=r"plugin 'bad_processors'.*taskman_log_processors.*not a structlog"):
        taskman.create_app(make_config(plugins=(BadProcessorPlugin(),)), plugins=[BadProcessorPlugin()])


TAGGER_MODULE = """
from taskman import hookimpl


def add_tag(logger, method_name, event_dict):
    event_dict["tag"] = "from-an-installed-plugin"
    return event_dict


@hookimpl
def taskman_log_processors(config):
    return [add_tag]
"""


def write_distribution(site: Path, name: str, module: str, source: str) -> None:
    """A minimal installed distribution (module + dist-info) announcing one ``taskman.plugins`` entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    dist_info = site / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[taskman.plugins]\n{name} = {module}\n")


def test_an_installed_plugin_adds_processors_to_every_line(
    make_client: Client, logs: Lines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_distribution(tmp_path / "site", "log_tagger", "taskman_log_tagger", TAGGER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        client = make_client(plugins=(LogProbe(),))
        client.simulate_get("/items/1")
    finally:
        sys.modules.pop("taskman_log_tagger", None)
    lines = logs()
    assert events(lines, "request_completed")
    assert all(line["tag"] == "from-an-installed-plugin" for line in lines)


# -- over HTTP, both flavours ---------------------------------------------------------------


def test_one_access_line_per_request(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),))
    logs()
    ids = [f"req-{n}" for n in range(3)]
    for rid in ids:
        assert (
            client.simulate_get("/items/42", headers={"X-Request-ID": rid, "User-Agent": "probe/1.0"}).status_code
            == 200
        )
    assert client.simulate_get("/no/such/path", headers={"X-Request-ID": "req-404"}).status_code == 404
    assert client.simulate_delete("/items/42", headers={"X-Request-ID": "req-405"}).status_code == 405
    access = events(logs(), "request_completed")
    assert sorted(line["request_id"] for line in access) == sorted([*ids, "req-404", "req-405"])
    for line in access:
        assert line.keys() >= (STANDARD_FIELDS | ACCESS_FIELDS)
        assert line["logger"] == "taskman.access" and line["environment"] == "testing"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["client_ip"]
        assert_utc_iso(line["timestamp"])
    by_id = {line["request_id"]: line for line in access}
    assert by_id["req-0"]["route"] == "/items/{item_id}" and by_id["req-0"]["path"] == "/items/42"
    assert by_id["req-0"]["method"] == "GET" and by_id["req-0"]["status_code"] == 200
    assert by_id["req-0"]["user_agent"] == "probe/1.0"
    assert by_id["req-404"]["route"] == UNMATCHED_ROUTE and by_id["req-404"]["path"] == "/no/such/path"
    assert by_id["req-404"]["status_code"] == 404
    assert by_id["req-405"]["route"] == "/items/{item_id}" and by_id["req-405"]["status_code"] == 405


def test_lines_logged_while_serving_carry_the_request_id(make_client: Client, logs: Lines) -> None:
    """Sync responders run on a thread pool under ASGI: structlog and stdlib lines still carry the id."""
    client = make_client(plugins=(LogProbe(),))
    logs()
    client.simulate_get("/items/7", headers={"X-Request-ID": "rid-sync"})
    lines = logs()
    (viewed,) = events(lines, "item_viewed")
    (stdlib,) = events(lines, "item_viewed_stdlib")
    assert viewed["request_id"] == stdlib["request_id"] == "rid-sync"
    assert viewed["item_id"] == "7" and viewed["logger"] == "probe"
    assert stdlib["logger"] == "probe.stdlib" and stdlib["level"] == "warning"


def test_unhandled_errors_log_request_failed_with_the_traceback(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),))
    logs()
    result = client.simulate_get("/failing", headers={"X-Request-ID": "rid-boom"})
    assert result.status_code == 500 and "Traceback" not in result.text
    lines = logs()
    (failed,) = events(lines, "request_failed")
    assert failed["logger"] == "taskman.errors" and failed["level"] == "error"
    assert failed["request_id"] == "rid-boom" and failed["path"] == "/failing"
    assert "Traceback" in failed["exception"] and "RuntimeError" in failed["exception"]
    (access,) = events(lines, "request_completed")
    assert access["status_code"] == 500 and access["request_id"] == "rid-boom"


def test_nothing_bound_during_a_request_leaks_into_the_next(make_client: Client) -> None:
    client = make_client(plugins=(LogProbe(),))
    bound = client.simulate_post("/context", headers={"X-Request-ID": "first"}).json
    assert bound == {"request_id": "first", "user": "alice"}
    after = client.simulate_get("/context", headers={"X-Request-ID": "second"}).json
    assert after == {"request_id": "second"}
    assert structlog.contextvars.get_contextvars() == {}


def test_settings_from_the_environment_apply_to_the_app(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_LOGGING__LEVEL": "warning"})
    logs()
    client.simulate_get("/items/1")
    lines = logs()
    assert events(lines, "item_viewed_stdlib")
    assert not events(lines, "request_completed") and not events(lines, "item_viewed")


def test_console_format_by_environment_variable(make_client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_LOGGING__FORMAT": "console"})
    capsys.readouterr()
    client.simulate_get("/items/1", headers={"X-Request-ID": "rid-console"})
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "request_completed" in ln]
    assert not line.startswith("{")
    assert "request_id=rid-console" in line and "status_code=200" in line


def test_each_app_reconfigures_when_its_settings_differ(make_client: Client, logs: Lines) -> None:
    make_client(plugins=(LogProbe(),), overrides={"app_name": "first"})
    assert current_setup() is not None and ("app_name", "first") in current_setup().static  # type: ignore[union-attr]
    client = make_client(plugins=(LogProbe(),), overrides={"app_name": "second"})
    logs()
    client.simulate_get("/items/1")
    assert {line["app_name"] for line in logs()} == {"second"}


def test_disabling_logging_leaves_structlog_and_stdlib_alone(
    make_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    config_before, handlers_before, level_before = structlog.get_config(), list(root.handlers), root.level
    client = make_client(plugins=(LogProbe(),), environ={"APP_PLUGINS__DISABLE": "logging"})
    result = client.simulate_get("/items/3", headers={"X-Request-ID": "rid-nolog"})
    assert result.status_code == 200 and result.headers["x-request-id"] == "rid-nolog"
    assert client.simulate_get("/missing").json["request_id"]
    assert structlog.get_config() == config_before and not structlog.is_configured()
    assert root.handlers == handlers_before and root.level == level_before
    assert current_setup() is None
    assert "request_completed" not in capsys.readouterr().err


def test_logging_works_without_the_request_id_plugin(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_PLUGINS__DISABLE": "request_id"})
    logs()
    ok = client.simulate_get("/items/1", headers={"X-Request-ID": "ignored"})
    missing = client.simulate_get("/missing")
    assert "x-request-id" not in ok.headers
    first, second = events(logs(), "request_completed")
    assert first["status_code"] == 200 and "request_id" not in first
    # The core names the occurrence of a problem; the access line uses that id.
    assert second["status_code"] == 404 and second["request_id"] == missing.json["request_id"]


# -- taskman serve: the servers' own lines go through the pipeline -----------------------


@contextlib.contextmanager
def no_root_handlers() -> Iterator[None]:
    """As in a ``taskman serve`` process without a logging plugin (pytest's own handlers put back afterwards)."""
    root = logging.getLogger()
    saved = list(root.handlers)
    for handler in saved:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in saved:
            root.addHandler(handler)


def test_serve_hands_uvicorn_logging_to_the_plugin(
    make_config: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from taskman.servers import serve_uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    configure_logging(format="json", stream=io.StringIO())
    serve_uvicorn("127.0.0.1", 8123, 2, make_config())
    reset_logging()
    with no_root_handlers():
        serve_uvicorn("127.0.0.1", 8123, 2, make_config())
    assert calls[0]["log_config"] is None and calls[0]["access_log"] is False
    assert calls[1]["log_config"] is LOGGING_CONFIG


def test_serve_hands_gunicorn_logging_to_the_plugin(
    make_config: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, stream: io.StringIO
) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from taskman.servers import serve_gunicorn

    configs: list[Any] = []
    monkeypatch.setattr(BaseApplication, "run", lambda self: configs.append(self.cfg))
    configure_logging(format="json", static={"app_name": "taskman", "environment": "production"}, stream=stream)
    serve_gunicorn("127.0.0.1", 8123, 2, make_config())
    gunicorn_log = configs[0].logger_class(configs[0])
    gunicorn_log.info("Booting worker with pid: %s", 4242)
    gunicorn_log.access(None, None, {}, None)  # the access log stays off
    (line,) = json_lines(stream.getvalue())
    assert line["logger"] == "gunicorn.error" and line["event"] == "Booting worker with pid: 4242"
    assert line["environment"] == "production"
    assert not logging.getLogger("gunicorn.error").handlers

    reset_logging()
    with no_root_handlers():
        serve_gunicorn("127.0.0.1", 8123, 2, make_config())
    assert configs[1].logger_class is Logger


PROBE_MODULE = """
import logging

import structlog

from taskman import hookimpl


class Probe:
    def on_get(self, req, resp, n):
        structlog.get_logger("probe").info("probe_hit", n=n)
        logging.getLogger("probe.stdlib").info("probe_stdlib")
        resp.media = {"n": n}


class Boom:
    def on_get(self, req, resp):
        raise RuntimeError("password=hunter2 in a real server")


@hookimpl
def taskman_routes(config):
    return [("/probe/{n}", Probe()), ("/boom", Boom())]
"""


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_a_production_serve_log_is_json_line_by_line(
    flavour: str, database_url: str, tmp_path: Path, server_launcher: ServerLauncher
) -> None:
    site = tmp_path / "site"
    write_distribution(site, "log_probe", "taskman_log_probe", PROBE_MODULE)
    # Production refuses pending migrations: apply whatever the installed plugins bring.
    db = make_database(DatabaseSettings(url=database_url))
    try:
        Migrations(db, Plugins.discover().migrations()).apply()
    finally:
        db.close_all()
    server = server_launcher.start(
        [f"--{flavour}", "--workers", "2"],
        pythonpath=[site],
        env={"APP_ENVIRONMENT": "production", "APP_DATABASE__URL": database_url},
    )
    server.wait_for_http("/probe/warmup", 200)
    server.wait_until("two workers", lambda: server.log.count('"startup_complete"') >= 2)
    ids = [f"probe-{uuid.uuid4()}" for _ in range(4)]
    for n, rid in enumerate(ids):
        assert server.get(f"/probe/{n}", {"X-Request-ID": rid}).status == 200
    assert server.get("/boom", {"X-Request-ID": "boom-1"}).status == 500
    assert server.get("/no/such/path?token=abc", {"X-Request-ID": "nope-1"}).status == 404
    assert server.stop(signal.SIGTERM) == 0, server.log

    text = server.log
    raw_lines = text.splitlines()
    lines = []
    for raw in raw_lines:
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {raw!r}\n{text}")
        assert isinstance(line, dict), raw
        assert line.keys() >= STANDARD_FIELDS, raw
        assert line["app_name"] == "taskman" and line["environment"] == "production", raw
        assert_utc_iso(line["timestamp"])
        lines.append(line)

    access = events(lines, "request_completed")
    for rid in [*ids, "boom-1", "nope-1"]:
        assert len([line for line in access if line.get("request_id") == rid]) == 1, rid
    for n, rid in enumerate(ids):
        (hit,) = [line for line in events(lines, "probe_hit") if line["n"] == str(n)]
        (stdlib,) = [line for line in events(lines, "probe_stdlib") if line.get("request_id") == rid]
        assert hit["request_id"] == rid and stdlib["logger"] == "probe.stdlib"
        (line,) = [line for line in access if line["request_id"] == rid]
        assert line["route"] == "/probe/{n}" and line["status_code"] == 200 and line.keys() >= ACCESS_FIELDS
    (failed,) = events(lines, "request_failed")
    assert failed["request_id"] == "boom-1" and "Traceback" in failed["exception"]
    assert "hunter2" not in text, "the redaction plugin masks the traceback text"
    (nope,) = [line for line in access if line["request_id"] == "nope-1"]
    assert nope["route"] == UNMATCHED_ROUTE and nope["status_code"] == 404

    server_lines = [line["event"] for line in lines if line["logger"] in ("gunicorn.error", "uvicorn.error")]
    if flavour == "wsgi":
        assert len([e for e in server_lines if e.startswith("Booting worker")]) >= 2, server_lines
        assert any(e.startswith("Shutting down") for e in server_lines)
    else:
        assert len([e for e in server_lines if e.startswith("Started server process")]) >= 2, server_lines
        assert any(e.startswith("Started parent process") for e in server_lines)


def test_json_lines_are_the_bytes_structlog_s_renderer_writes() -> None:
    from taskman_plugins.logging.pipeline import LEADING_KEYS, JsonLineRenderer

    event = {
        "method": "GET",
        "event": "request_completed",
        "status_code": 200,
        "duration_ms": 1.5,
        "note": "caf\u00e9 \u2603",
        "when": uuid.UUID(int=1),  # not JSON: structlog's fallback (repr) applies
        "level": "info",
        "timestamp": "2024-05-01T12:00:00Z",
        "logger": "taskman.access",
    }
    line = JsonLineRenderer()(None, "info", dict(event))
    assert list(json.loads(line))[:4] == list(LEADING_KEYS)
    leading = {key: event[key] for key in LEADING_KEYS}
    assert line == structlog.processors.JSONRenderer()(None, "info", {**leading, **event})


def test_the_fused_steps_fill_the_event_as_the_separate_processors_do() -> None:
    from taskman_plugins.logging.pipeline import Enrich, StaticFields, add_logger_name, add_record_extras

    static = (("app_name", "demo"), ("environment", "staging"))
    logger = logging.getLogger("probe")
    structlog.contextvars.bind_contextvars(request_id="rid-1", user="alice", gone="x")
    structlog.contextvars.unbind_contextvars("gone")
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("probe.stdlib", logging.WARNING, __file__, 1, "hello", (), None)
    record.__dict__.update(method="GET", level="not mine")
    try:
        for method, event, foreign in (
            ("info", {"event": "e", "user": "explicit", "level": "kept in place"}, False),
            ("warn", {"event": "e", "exc_info": exc_info}, False),
            ("exception", {"event": "e", "exc_info": True}, False),
            ("warning", {"event": "hello", "_record": record}, True),
        ):
            expected: Any = dict(event)
            steps: list[Any] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
            steps += [add_logger_name, *([add_record_extras] if foreign else []), StaticFields(static)]
            for step in [*steps, structlog.processors.format_exc_info]:
                expected = step(logger, method, expected)
            fused = Enrich(static, foreign=foreign)(logger, method, dict(event))
            assert list(fused.items()) == list(expected.items())
    finally:
        structlog.contextvars.clear_contextvars()


def test_the_clock_writes_what_structlog_s_iso_utc_timestamper_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    from taskman_plugins.logging import pipeline

    clock = pipeline.UtcClock()
    for nanoseconds in (1_780_000_000_123_456_789, 1_780_000_000_000_000_000, 1_780_000_001_000_999_999):
        monkeypatch.setattr(pipeline.time, "time_ns", lambda n=nanoseconds: n)
        moment = datetime.datetime.fromtimestamp(nanoseconds // 1000 / 1e6, datetime.UTC)
        assert clock() == moment.isoformat().replace("+00:00", "Z")
    monkeypatch.undo()
    stamped = pipeline.JsonLineRenderer(stamp=True)(None, "info", {"event": "e"})
    assert_utc_iso(json.loads(stamped)["timestamp"])
    assert list(json.loads(stamped)) == ["timestamp", "event"]


def test_an_event_writer_writes_what_the_configured_logger_writes(stream: io.StringIO) -> None:
    from taskman_plugins.logging.pipeline import event_writer

    write = event_writer("demo.part")
    configure_logging(format="json", static={"app_name": "demo", "environment": "staging"}, stream=stream)
    structlog.contextvars.bind_contextvars(request_id="rid-9")
    try:
        structlog.get_logger("demo.part").info("hello", answer=42, secret_token="s3")
        write({"answer": 42, "secret_token": "s3", "event": "hello"})
    finally:
        structlog.contextvars.clear_contextvars()
    by_logger, direct = json_lines(stream.getvalue())
    assert list(direct) == list(by_logger)
    assert {k: v for k, v in direct.items() if k != "timestamp"} == {
        k: v for k, v in by_logger.items() if k != "timestamp"
    }
    configure_logging(format="json", level="warning", stream=stream)  # the level in force is read per line
    write({"event": "quiet"})
    assert "quiet" not in stream.getvalue()


def test_an_event_writer_before_logging_is_configured_uses_structlog_s_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from taskman_plugins.logging.pipeline import event_writer

    event_writer("demo.early")({"event": "early", "n": 1})
    assert "early" in capsys.readouterr().out  # structlog's default logger prints to stdout


def test_the_log_context_is_restored_to_what_the_request_found() -> None:
    from contextvars import copy_context

    from taskman_plugins.logging.middleware import restore_log_context

    structlog.contextvars.bind_contextvars(outer="kept", shadowed="outer value")
    try:
        before = copy_context()
        structlog.contextvars.bind_contextvars(shadowed="request value", during="gone afterwards")
        restore_log_context(before)
        assert structlog.contextvars.get_contextvars() == {"outer": "kept", "shadowed": "outer value"}
        restore_log_context(None)  # no start seen: nothing stays bound
        assert structlog.contextvars.get_contextvars() == {}
    finally:
        structlog.contextvars.clear_contextvars()
