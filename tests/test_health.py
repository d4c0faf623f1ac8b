"""The health plugin: probes on both flavours, thresholds, timeouts, start-up, draining, the check hook.

HTTP tests run on WSGI and ASGI (``make_client`` / ``asgi``) and on whichever
database the suite runs on.  Latency thresholds are configured (0 or far
out of reach), never measured.  The last tests start real servers and send
SIGTERM while a slow request is in flight.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import falcon
import falcon.asgi
import falcon.testing
import pytest
from taskman_plugins import health
from taskman_plugins.health import core, resources
from taskman_plugins.health.core import HIDDEN_ERROR, CheckResult, CheckRunner, HealthState, Report
from taskman_plugins.health.settings import HealthSettings
from taskman_plugins.health.signals import DrainOnSignals

import taskman
from taskman import hookimpl
from taskman.asgi_adapters import is_nonblocking
from taskman.config import ConfigError
from taskman.errors import PROBLEM_CONTENT_TYPE
from taskman.plugins import PluginError, Plugins
from tests.conftest import disabling
from tests.helpers import install_fixture_dist
from tests.sample_plugins import EchoPlugin
from tests.servers import ServerLauncher, ServerProcess

Client = Callable[..., falcon.testing.TestClient]

PATHS = ("/health/live", "/health/ready", "/health/startup", "/health")
REPORT_KEYS = {"status", "timestamp", "checks", "duration_ms"}
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
#: Thresholds no check in a test reaches: the status does not depend on the machine's speed.
RELAXED = {"degraded_ms": 60_000, "unhealthy_ms": 60_000, "timeout_ms": 60_000}


class ChecksPlugin:
    """A plugin contributing checks through ``taskman_health_checks``."""

    def __init__(self, checks: Any, name: str = "extra_checks") -> None:
        self.taskman_plugin_name = name
        self.checks = checks
        self.configs: list[Any] = []

    @hookimpl
    def taskman_health_checks(self, config: Any) -> Any:
        self.configs.append(config)
        return self.checks


class CountingCheck:
    """A check that counts its calls and optionally blocks until released (a hung dependency)."""

    def __init__(self, *, block: bool = False, result: Any = None, error: Exception | None = None) -> None:
        self.calls = 0
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.result = result
        self.error = error

    def __call__(self) -> Any:
        self.calls += 1
        self.release.wait(60)
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def make_config(make_config: Callable[..., Any]) -> Callable[..., Any]:
    """Without the plugins that have migrations: pending ones would stop start-up in production-like settings."""
    return disabling(make_config, "tracker", "auth", "events", "webhooks")


def settled(check: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap ``check`` so it takes at least a millisecond: a latency above a 0 ms threshold."""

    def run() -> Any:
        time.sleep(0.001)
        return check()

    return run


def health_overrides(**settings: Any) -> dict[str, Any]:
    return {"health": {**RELAXED, **settings}}


def assert_report(result: falcon.testing.Result, status_code: int, status: str) -> dict[str, Any]:
    assert result.status_code == status_code, result.text
    assert result.headers["content-type"] == "application/json"
    assert result.headers["cache-control"] == "no-store"
    body = result.json
    assert set(body) == REPORT_KEYS
    assert body["status"] == status
    assert RFC3339_UTC.fullmatch(body["timestamp"]), body["timestamp"]
    assert isinstance(body["duration_ms"], float) and body["duration_ms"] >= 0
    for check in body["checks"].values():
        assert check.keys() <= {"status", "latency_ms", "error"}
        assert isinstance(check["latency_ms"], float) and check["latency_ms"] >= 0
        assert ("error" in check) == (check["status"] == "unhealthy")
    return body  # type: ignore[no-any-return]


def bare_client(app: Any, asgi: bool) -> falcon.testing.TestClient:
    """A client that never starts the app: requests that arrive before start-up completed."""
    if asgi:

        async def bare_asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            await falcon.asgi.App.__call__(app, scope, receive, send)

        return falcon.testing.TestClient(bare_asgi)

    def bare_wsgi(environ: Any, start_response: Any) -> Any:
        return falcon.App.__call__(app, environ, start_response)

    return falcon.testing.TestClient(bare_wsgi)


@pytest.fixture
def build_app(asgi: bool, make_config: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Build (not start) an app on the current flavour; whatever got started is stopped at teardown."""
    apps: list[Any] = []

    def build(*, plugins: tuple[object, ...] = (), overrides: Mapping[str, Any] | None = None) -> Any:
        app = taskman.create_app(make_config(plugins=plugins, overrides=overrides), asgi=asgi, plugins=plugins)
        apps.append(app)
        return app

    yield build
    for app in apps:
        taskman.stop(app)


# -- the four endpoints -------------------------------------------------------


def test_live_is_healthy_without_checks(make_client: Client) -> None:
    client = make_client(overrides=health_overrides())
    body = assert_report(client.simulate_get("/health/live"), 200, "healthy")
    assert body["checks"] == {}


def test_ready_runs_the_database_check(make_client: Client) -> None:
    client = make_client(overrides=health_overrides())
    body = assert_report(client.simulate_get("/health/ready"), 200, "healthy")
    assert list(body["checks"]) == ["database"]
    assert body["checks"]["database"]["status"] == "healthy"


def test_startup_is_healthy_once_started(make_client: Client) -> None:
    client = make_client(overrides=health_overrides())
    body = assert_report(client.simulate_get("/health/startup"), 200, "healthy")
    assert body["checks"] == {"startup": {"status": "healthy", "latency_ms": 0.0}}


def test_legacy_health_is_ready_with_deprecation_headers(make_client: Client) -> None:
    client = make_client(overrides=health_overrides())
    result = client.simulate_get("/health")
    body = assert_report(result, 200, "healthy")
    assert list(body["checks"]) == ["database"]
    assert result.headers["deprecation"] == "true"
    assert result.headers["link"] == '</health/ready>; rel="successor-version"'
    for path in ("/health/live", "/health/ready", "/health/startup"):
        assert "deprecation" not in client.simulate_get(path).headers


def test_live_and_startup_stay_on_the_event_loop() -> None:
    state = HealthState()
    by_path = dict(resources.routes(state))
    assert is_nonblocking(by_path["/health/live"].on_get)  # type: ignore[attr-defined]
    assert is_nonblocking(by_path["/health/startup"].on_get)  # type: ignore[attr-defined]
    # Readiness runs checks (database I/O): it goes to the thread pool under ASGI.
    assert not is_nonblocking(by_path["/health/ready"].on_get)  # type: ignore[attr-defined]
    assert not is_nonblocking(by_path["/health"].on_get)  # type: ignore[attr-defined]


# -- grading by latency, contributed checks -----------------------------------


def test_contributed_checks_join_the_database(make_client: Client) -> None:
    plugin = ChecksPlugin({"cache": CountingCheck(), "queue": CountingCheck(result="healthy")})
    client = make_client(plugins=(plugin,), overrides=health_overrides())
    body = assert_report(client.simulate_get("/health/ready"), 200, "healthy")
    assert sorted(body["checks"]) == ["cache", "database", "queue"]
    assert len(plugin.configs) == 1
    assert plugin.configs[0].health.timeout_ms == 60_000  # the hook gets the app's config


def test_checks_may_be_contributed_as_pairs(make_client: Client) -> None:
    plugin = ChecksPlugin([("first", CountingCheck()), ("second", CountingCheck(result="degraded"))])
    client = make_client(plugins=(plugin,), overrides=health_overrides())
    body = assert_report(client.simulate_get("/health/ready"), 200, "degraded")
    assert body["checks"]["first"]["status"] == "healthy"
    assert body["checks"]["second"]["status"] == "degraded"


def test_degraded_above_the_degraded_threshold_is_still_200(make_client: Client) -> None:
    plugin = ChecksPlugin({"slowish": settled(CountingCheck())})
    client = make_client(plugins=(plugin,), overrides=health_overrides(degraded_ms=0))
    body = assert_report(client.simulate_get("/health/ready"), 200, "degraded")
    assert body["checks"]["database"]["status"] == "degraded"
    assert body["checks"]["slowish"]["status"] == "degraded"
    assert "error" not in body["checks"]["slowish"]


def test_unhealthy_above_the_unhealthy_threshold_is_503(make_client: Client) -> None:
    plugin = ChecksPlugin({"slow": settled(CountingCheck())})
    client = make_client(plugins=(plugin,), overrides=health_overrides(degraded_ms=0, unhealthy_ms=0))
    result = client.simulate_get("/health/ready")
    body = assert_report(result, 503, "unhealthy")
    for name in ("database", "slow"):
        assert body["checks"][name]["status"] == "unhealthy"
        assert re.fullmatch(r"latency [\d.]+ ms above 0 ms", body["checks"][name]["error"])
    legacy = assert_report(client.simulate_get("/health"), 503, "unhealthy")
    assert legacy["checks"].keys() == body["checks"].keys()
    assert_report(client.simulate_get("/health/live"), 200, "healthy")


def test_a_failing_check_is_unhealthy_with_its_error(make_client: Client) -> None:
    plugin = ChecksPlugin({"broker": CountingCheck(error=ConnectionError("broker at 10.0.0.7 refused"))})
    client = make_client(plugins=(plugin,), overrides=health_overrides())
    body = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
    assert body["checks"]["broker"]["error"] == "ConnectionError: broker at 10.0.0.7 refused"
    assert body["checks"]["database"]["status"] == "healthy"


def test_a_hung_check_is_bounded_by_the_timeout(make_client: Client) -> None:
    hung = CountingCheck(block=True)
    client = make_client(plugins=(ChecksPlugin({"hung": hung}),), overrides=health_overrides(timeout_ms=200))
    try:
        for _ in range(2):
            body = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
            assert sorted(body["checks"]) == ["database", "hung"]
            assert body["checks"]["hung"]["error"] == "timed out after 200 ms"
        # The hung run is joined by later probes, never duplicated: one thread per check at most.
        assert hung.calls == 1
    finally:
        hung.release.set()


def test_database_unreachable_fails_readiness_only(make_client: Client) -> None:
    # Start-up must not touch the database: switch off plugins that bring migrations.
    with_migrations = [plugin for plugin, _ in Plugins.discover().migrations()]
    client = make_client(
        overrides={
            "database": {"url": "postgresql://taskman@127.0.0.1:1/taskman", "connect_timeout": 1.0},
            "plugins": {"disable": with_migrations},
            **health_overrides(),
        }
    )
    body = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
    database = body["checks"]["database"]
    assert database["status"] == "unhealthy"
    assert database["error"].startswith("OperationalError: ")
    assert_report(client.simulate_get("/health"), 503, "unhealthy")
    assert_report(client.simulate_get("/health/live"), 200, "healthy")
    assert_report(client.simulate_get("/health/startup"), 200, "healthy")


@pytest.mark.parametrize(
    "environment,show_details,shown",
    [
        ("production", "auto", False),
        ("staging", "auto", False),
        ("testing", "auto", True),
        ("development", "auto", True),
        ("production", "always", True),
        ("testing", "never", False),
    ],
)
def test_failure_details_are_hidden_where_configured(
    make_client: Client, environment: str, show_details: str, shown: bool
) -> None:
    plugin = ChecksPlugin({"secret": CountingCheck(error=RuntimeError("password=hunter2 at db.internal"))})
    client = make_client(
        plugins=(plugin,), overrides={"environment": environment, **health_overrides(show_details=show_details)}
    )
    body = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
    error = body["checks"]["secret"]["error"]
    if shown:
        assert error == "RuntimeError: password=hunter2 at db.internal"
    else:
        assert error == HIDDEN_ERROR
        assert "hunter2" not in client.simulate_get("/health").text


# -- start-up and draining -------------------------------------------------------


def test_startup_is_503_until_start_up_completed(asgi: bool, build_app: Callable[..., Any]) -> None:
    app = build_app(overrides=health_overrides())
    client = bare_client(app, asgi)
    body = assert_report(client.simulate_get("/health/startup"), 503, "unhealthy")
    assert body["checks"] == {
        "startup": {"status": "unhealthy", "latency_ms": 0.0, "error": "start-up has not completed"}
    }
    ready = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
    assert list(ready["checks"]) == ["startup"]
    assert_report(client.simulate_get("/health/live"), 200, "healthy")

    assert taskman.start(app)
    assert_report(client.simulate_get("/health/startup"), 200, "healthy")
    assert list(assert_report(client.simulate_get("/health/ready"), 200, "healthy")["checks"]) == ["database"]


class StartupProbePlugin:
    """Records what the health state says while the other start-up hooks run."""

    taskman_plugin_name = "startup_probe"

    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl
    def taskman_startup(self, app: Any, config: Any) -> None:
        state = health.state_of(app)
        assert state is not None
        self.seen.append(state.startup().http_status)


def test_start_up_completes_after_the_other_start_up_hooks(asgi: bool, build_app: Callable[..., Any]) -> None:
    probe = StartupProbePlugin()
    app = build_app(plugins=(probe,), overrides=health_overrides())
    assert taskman.start(app)
    assert probe.seen == [503]
    state = health.state_of(app)
    assert state is not None and state.started
    assert state.startup().http_status == 200


def test_readiness_fails_once_shutdown_began(asgi: bool, build_app: Callable[..., Any]) -> None:
    app = build_app(overrides=health_overrides())
    client = bare_client(app, asgi)
    taskman.start(app)
    assert_report(client.simulate_get("/health/ready"), 200, "healthy")
    assert taskman.stop(app)
    body = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
    assert body["checks"] == {
        "shutdown": {"status": "unhealthy", "latency_ms": 0.0, "error": "draining: the app is stopping"}
    }
    assert_report(client.simulate_get("/health"), 503, "unhealthy")
    assert_report(client.simulate_get("/health/live"), 200, "healthy")
    assert_report(client.simulate_get("/health/startup"), 200, "healthy")


def test_draining_survives_a_restart_of_the_app(make_client: Client) -> None:
    """A request after taskman.stop() starts the app again (first-request start): it stays not ready."""
    client = make_client(overrides=health_overrides())
    app = client.app
    taskman.stop(app)
    assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
    assert_report(client.simulate_get("/health/live"), 200, "healthy")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_starts_draining_then_reaches_the_servers_handler(
    asgi: bool, build_app: Callable[..., Any], sig: signal.Signals
) -> None:
    received: list[int] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    original = signal.signal(sig, server_handler)  # the server's handler, installed before start-up
    try:
        app = build_app(overrides=health_overrides())
        client = bare_client(app, asgi)
        taskman.start(app)
        assert signal.getsignal(sig) is not server_handler  # chained in front of it
        assert_report(client.simulate_get("/health/ready"), 200, "healthy")

        signal.raise_signal(sig)

        assert received == [sig]
        body = assert_report(client.simulate_get("/health/ready"), 503, "unhealthy")
        assert body["checks"]["shutdown"]["error"] == f"draining: {sig.name} received"
        assert_report(client.simulate_get("/health/live"), 200, "healthy")
        taskman.stop(app)
        assert signal.getsignal(sig) is server_handler  # put back at shut-down
    finally:
        signal.signal(sig, original)


# -- switching it off, settings, contributions ---------------------------------


def test_disabling_health_removes_every_route_and_nothing_else(make_client: Client) -> None:
    client = make_client(
        plugins=(EchoPlugin(), ChecksPlugin({"cache": CountingCheck()})),
        environ={"APP_PLUGINS__DISABLE": "health", "APP_HEALTH__DEGRADED_MS": "5"},
    )
    for path in PATHS:
        result = client.simulate_get(path)
        assert result.status_code == 404
        assert result.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert client.simulate_get("/echo").json == {"status": "alive"}
    app: Any = client.app
    assert "health" not in app.taskman.config.sections


def test_settings_come_from_the_environment_parsed_by_type(make_config: Callable[..., Any]) -> None:
    config = make_config(
        environ={
            "APP_HEALTH__DEGRADED_MS": "250",
            "APP_HEALTH__UNHEALTHY_MS": "2000",
            "APP_HEALTH__TIMEOUT_MS": "1500",
            "APP_HEALTH__SHOW_DETAILS": "never",
        }
    )
    assert config.health == HealthSettings(degraded_ms=250, unhealthy_ms=2000, timeout_ms=1500, show_details="never")
    assert config.sources["health.degraded_ms"] == "env APP_HEALTH__DEGRADED_MS"
    assert make_config().health == HealthSettings()


@pytest.mark.parametrize(
    "environ,key",
    [
        ({"APP_HEALTH__TIMEOUT_MS": "0"}, "health.timeout_ms"),
        ({"APP_HEALTH__DEGRADED_MS": "fast"}, "health.degraded_ms"),
        ({"APP_HEALTH__SHOW_DETAILS": "maybe"}, "health.show_details"),
        ({"APP_HEALTH__DEGRADED_MS": "500", "APP_HEALTH__UNHEALTHY_MS": "200"}, "[health]"),
    ],
)
def test_bad_settings_stop_start_up(make_config: Callable[..., Any], environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_config(environ=environ)
    assert [p.key for p in exc.value.problems] == [key]


@pytest.mark.parametrize(
    "checks,message",
    [
        ({"database": lambda: None}, "health check 'database' is contributed by plugin 'dup' and plugin 'health'"),
        ({"startup": lambda: None}, "plugin 'dup' contributed check 'startup': the name is reserved"),
        ({"bad name": lambda: None}, "plugin 'dup' contributed a check named 'bad name'"),
        ({"cache": "not callable"}, "plugin 'dup' contributed check 'cache': 'not callable' is not callable"),
        (42, "plugin 'dup' returned 42"),
    ],
)
def test_bad_contributions_stop_start_up_naming_the_plugin(
    build_app: Callable[..., Any], checks: Any, message: str
) -> None:
    # At build time, so `taskman check` catches it too; the plugin at fault is named (for a clash, the later one).
    with pytest.raises(PluginError, match=r"plugin '(dup|health)' .*in taskman_health_checks failed") as exc:
        build_app(plugins=(ChecksPlugin(checks, name="dup"),))
    assert message in str(exc.value)


def test_the_hook_is_added_by_the_health_plugin_only() -> None:
    assert hasattr(Plugins.discover().manager.hook, "taskman_health_checks")
    disabled = Plugins.discover(disable=["health"], extra=[ChecksPlugin({})])
    caller = getattr(disabled.manager.hook, "taskman_health_checks", None)
    assert caller is None or caller.spec is None


# -- the plain-Python part -----------------------------------------------------


@pytest.mark.parametrize(
    "latency,expected",
    [(0.0, "healthy"), (99.9, "healthy"), (100.0, "degraded"), (1000.0, "degraded"), (1000.1, "unhealthy")],
)
def test_grade_latency_boundaries(latency: float, expected: str) -> None:
    assert core.grade_latency(latency, 100, 1000) == expected


def test_worst_and_http_status() -> None:
    assert core.worst([]) == "healthy"
    assert core.worst(["healthy", "degraded"]) == "degraded"
    assert core.worst(["degraded", "unhealthy", "healthy"]) == "unhealthy"
    assert [core.http_status(s) for s in core.STATUSES] == [200, 200, 503]


def test_report_aggregates_and_hides_errors() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    report = Report(
        (CheckResult("a", "healthy", 1.23456), CheckResult("b", "degraded", 150.0)),
        moment,
        151.0004,
    )
    assert (report.status, report.http_status) == ("degraded", 200)
    assert report.as_dict() == {
        "status": "degraded",
        "timestamp": "2024-05-01T12:00:00.123Z",
        "checks": {"a": {"status": "healthy", "latency_ms": 1.235}, "b": {"status": "degraded", "latency_ms": 150.0}},
        "duration_ms": 151.0,
    }
    failing = Report((CheckResult("db", "unhealthy", 3.0, "OperationalError: host db.internal"),), moment, 3.0)
    assert failing.http_status == 503
    assert failing.as_dict(show_details=True)["checks"]["db"]["error"] == "OperationalError: host db.internal"
    assert failing.as_dict(show_details=False)["checks"]["db"]["error"] == HIDDEN_ERROR
    assert Report((), moment, 0.0).as_dict()["status"] == "healthy"
    for report in (Report((), moment, 0.0123456), Report((), moment, 12.0), failing):
        for shown in (True, False):
            assert json.loads(report.to_json(shown)) == report.as_dict(shown)


def test_collect_checks_merges_plugins_in_order() -> None:
    def a() -> None: ...

    def b() -> None: ...

    assert core.collect_checks([("p1", {"a": a}), ("p2", None), ("p3", [("b", b)])]) == {"a": a, "b": b}
    with pytest.raises(core.CheckContributionError, match="contributed by plugin 'p1' and plugin 'p2'"):
        core.collect_checks([("p1", {"a": a}), ("p2", [("a", b)])])
    with pytest.raises(core.CheckContributionError, match="expected \\(name, check\\)"):
        core.collect_checks([("p1", ["a"])])


class FakeClock:
    """A clock each thread advances on its own: a check "takes" the time it adds."""

    def __init__(self) -> None:
        self._local = threading.local()

    def advance(self, seconds: float) -> None:
        self._local.now = self() + seconds

    def __call__(self) -> float:
        return getattr(self._local, "now", 1000.0)  # type: ignore[no-any-return]


def test_runner_grades_what_checks_return_and_raise() -> None:
    clock = FakeClock()

    def takes(seconds: float, result: Any = None) -> Callable[[], Any]:
        def check() -> Any:
            clock.advance(seconds)
            return result

        return check

    def boom() -> None:
        raise TimeoutError

    runner = CheckRunner(
        {
            "fast": takes(0.01),
            "slow": takes(0.5),
            "slower": takes(2.0),
            "says_degraded": takes(0.0, "degraded"),
            "says_unhealthy": takes(0.0, "unhealthy"),
            "says_true": takes(0.0, True),
            "says_false": takes(0.0, False),
            "odd": takes(0.0, 42),
            "boom": boom,
        },
        degraded_ms=100,
        unhealthy_ms=1000,
        timeout_ms=60_000,
        clock=clock,
    )
    results = {r.name: r for r in runner.run()}
    assert {name: r.status for name, r in results.items()} == {
        "fast": "healthy",
        "slow": "degraded",
        "slower": "unhealthy",
        "says_degraded": "degraded",
        "says_unhealthy": "unhealthy",
        "says_true": "healthy",
        "says_false": "unhealthy",
        "odd": "unhealthy",
        "boom": "unhealthy",
    }
    assert results["slow"].latency_ms == pytest.approx(500.0)
    assert results["slower"].error == "latency 2000.0 ms above 1000 ms"
    assert results["says_unhealthy"].error == "the check reported unhealthy"
    assert results["says_false"].error == "the check returned False"
    assert results["odd"].error is not None and results["odd"].error.startswith("returned 42;")
    assert results["boom"].error == "TimeoutError"
    assert results["fast"].error is None and results["says_degraded"].error is None


def test_runner_times_out_hung_checks_and_cleans_up_after_each() -> None:
    hung = CountingCheck(block=True)
    cleanups: list[str] = []
    runner = CheckRunner(
        {"hung": hung, "ok": CountingCheck()},
        degraded_ms=60_000,
        unhealthy_ms=60_000,
        timeout_ms=200,
        cleanup=lambda: cleanups.append(threading.current_thread().name),
    )
    try:
        first = {r.name: r for r in runner.run()}
        assert first["hung"].status == "unhealthy"
        assert first["hung"].error == "timed out after 200 ms"
        assert first["ok"].status == "healthy"
        assert runner.running() == ["hung"]
        runner.run()
        assert hung.calls == 1  # joined, not started again
    finally:
        hung.release.set()
    deadline = time.monotonic() + 10
    while runner.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.running() == []
    assert {r.name: r.status for r in runner.run()} == {"hung": "healthy", "ok": "healthy"}
    assert hung.calls == 2
    assert "health-hung" in cleanups and "health-ok" in cleanups  # in each check's own thread


@attrs.define
class FakeRuntime:
    state: str = "starting"
    pid: int | None = attrs.field(factory=os.getpid)


def test_state_follows_start_up_and_draining_without_running_checks_needlessly() -> None:
    check = CountingCheck()
    state = HealthState(**RELAXED)
    state.set_checks({"c": check})
    runtime = FakeRuntime()
    state.bind(runtime)
    assert state.liveness().http_status == 200
    assert state.startup().http_status == 503
    assert [c.name for c in state.readiness().checks] == ["startup"]
    state.mark_started()
    assert state.startup().http_status == 503  # the runtime is still starting (a later hook may fail)
    runtime.state = "started"
    assert state.startup().http_status == 200
    assert state.readiness().http_status == 200
    assert check.calls == 1
    state.mark_draining("SIGTERM received")
    state.mark_draining("the app is stopping")  # the first reason sticks
    report = state.readiness()
    assert report.http_status == 503
    assert report.checks == (CheckResult("shutdown", "unhealthy", 0.0, "draining: SIGTERM received"),)
    assert check.calls == 1  # draining: no checks run
    assert state.liveness().http_status == 200
    assert state.startup().http_status == 200


def test_start_up_in_another_process_does_not_count() -> None:
    """A forked worker of a started app (gunicorn --preload) has not run start-up itself."""
    state = HealthState()
    runtime = FakeRuntime(state="started", pid=os.getpid() + 1)
    state.bind(runtime)
    state.mark_started()
    assert not state.started
    runtime.pid = os.getpid()
    assert state.started


def test_drain_on_signals_chains_and_restores() -> None:
    calls: list[str] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        calls.append("previous")

    original = signal.signal(signal.SIGTERM, previous)
    try:
        drain = DrainOnSignals(lambda signum: calls.append(f"drain {signum}"), signals=(signal.SIGTERM,))
        assert drain.install()
        signal.raise_signal(signal.SIGTERM)
        assert calls == [f"drain {int(signal.SIGTERM)}", "previous"]
        drain.uninstall()
        assert signal.getsignal(signal.SIGTERM) is previous

        # Someone chained after us: leave their handler alone.
        drain.install()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        drain.uninstall()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN

        # A previous SIG_IGN stays ignored.
        calls.clear()
        ignoring = DrainOnSignals(lambda signum: calls.append("drain"), signals=(signal.SIGTERM,))
        ignoring.install()
        signal.raise_signal(signal.SIGTERM)
        assert calls == ["drain"]
        ignoring.uninstall()
    finally:
        signal.signal(signal.SIGTERM, original)


def test_drain_on_signals_does_nothing_outside_the_main_thread() -> None:
    outcome: list[bool] = []
    drain = DrainOnSignals(lambda signum: None)
    thread = threading.Thread(target=lambda: outcome.append(drain.install()))
    thread.start()
    thread.join()
    assert outcome == [False]
    assert not drain.installed


# -- real servers: what SIGTERM does to readiness -------------------------------


@attrs.define
class SlowServer(ServerProcess):
    """A one-worker server with the taskman-slow plugin, which records its events in ``folder``."""

    folder: Path

    def events(self) -> list[str]:
        path = self.folder / "events.txt"
        return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def status_of(self, path: str) -> int | None:
        try:
            return self.get(path).status
        except OSError:
            return None


@pytest.fixture(scope="module")
def slow_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return [install_fixture_dist("taskman-slow", tmp_path_factory.mktemp("health-dists") / "slow")]


@pytest.fixture
def slow_server(
    slow_pythonpath: list[Path], database_url: str, tmp_path: Path, server_launcher: ServerLauncher
) -> Callable[..., SlowServer]:
    def start(flavour: str) -> SlowServer:
        return server_launcher.start(
            [f"--{flavour}"],
            pythonpath=slow_pythonpath,
            env={
                "APP_ENVIRONMENT": "testing",
                "APP_DATABASE__URL": database_url,
                "APP_SERVER__GRACEFUL_TIMEOUT": "10",
                "APP_HEALTH__DEGRADED_MS": "60000",
                "APP_HEALTH__UNHEALTHY_MS": "60000",
                "APP_HEALTH__TIMEOUT_MS": "60000",
                "APP_SLOW__DIR": str(tmp_path),
            },
            factory=lambda proc, port, log: SlowServer(proc, port, log, tmp_path),
        )

    return start


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_sigterm_fails_readiness_while_in_flight_requests_drain(
    slow_server: Callable[..., SlowServer], flavour: str
) -> None:
    """SIGTERM to ``taskman serve`` (one worker) while ``GET /slow`` is in flight.

    What the servers do: the worker's readiness turns 503 at once (our handler
    runs before the server's), the in-flight request completes, and only
    then do the shut-down hooks run.  Neither server answers new connections
    during the drain, so a load balancer cannot see the 503 there: gunicorn's
    arbiter closes its listener and the busy sync worker never accepts again
    (a connection made meanwhile sits in the backlog and is reset when the
    worker exits); uvicorn closes its listener on the next tick of its main
    loop (<= 0.1 s; a probe answered in that window is ready 503 / live 200)
    and refuses connections from then on.
    """
    server = slow_server(flavour)
    server.wait_until("the server to answer /health/ready", lambda: server.status_of("/health/ready") == 200)
    slow: dict[str, Any] = {}
    request = threading.Thread(target=lambda: slow.update(answer=server.get("/slow")))
    request.start()
    try:
        server.wait_until(
            "the slow request", lambda: server.events()[:2] == ["request-started", "ready-200"], poll=0.02
        )
        server.proc.send_signal(signal.SIGTERM)
        server.wait_until("readiness to fail in the worker", lambda: "ready-503" in server.events(), poll=0.02)

        if flavour == "asgi":
            answered: list[tuple[int | None, int | None]] = []

            def refused() -> bool:
                ready, live = server.status_of("/health/ready"), server.status_of("/health/live")
                if ready is None and live is None:
                    return True
                answered.append((ready, live))
                return False

            server.wait_until("uvicorn to close its listener", refused, poll=0.02)
            with pytest.raises(ConnectionRefusedError):
                server.get("/health/live")
            assert all(ready in (503, None) and live in (200, None) for ready, live in answered), answered
            assert "request-finished" not in server.events()  # it stopped accepting mid-drain
            late = None
        else:
            # gunicorn: the worker still holds the listening socket, so the connection is made...
            late = server.connection()
            late.request("GET", "/health/ready")
    finally:
        (server.folder / "release").touch()
        request.join(timeout=60)

    if late is not None:
        # ...but the worker never accepts it: it is reset when the worker exits.
        with pytest.raises(ConnectionError):
            late.getresponse()
        late.close()
    answer = slow["answer"]
    status, body = answer.status, answer.body
    assert status == 200, body
    assert json.loads(body)["ready"] == [200, 503]
    try:
        code = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not exit:\n{server.log}")
    assert code == 0, server.log
    assert server.events() == ["request-started", "ready-200", "ready-503", "request-finished", "shutdown"]
    assert "Traceback" not in server.log


def test_the_liveness_fast_path_writes_the_report_s_bytes() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    ticks = iter([0.0, 1.0, 1.0000123, 2.0, 2.0000123])  # created, then two probes of 12.3 us each
    state = HealthState(clock=lambda: next(ticks), now=lambda: moment)
    expected = state.liveness().to_json()
    assert state.liveness_json() == expected
    assert json.loads(expected) == {
        "status": "healthy",
        "timestamp": "2024-05-01T12:00:00.123Z",
        "checks": {},
        "duration_ms": 0.012,
    }
