"""Plugin contract 1.0: the runtime handle, pluggy doing the calling, failures that stay in their plugin.

A set of deliberately broken third-party plugins: each gives one clear
start-up error (and a failing ``taskman check``) or stays isolated with the
request unaffected, on both flavours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import falcon.testing
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from taskman_plugins.openapi import OpenApiSettings

import taskman
from taskman import hookimpl
from taskman.cli import EXIT_CONFIG, cli
from taskman.config import UnknownSettingsError
from taskman.plugins import WRAPPER, PluginError, Plugins
from tests.helpers import free_port, run_taskman
from tests.sample_plugins import LifecyclePlugin

Client = Callable[..., falcon.testing.TestClient]
PROJECT = {"id": "P-1", "name": "Apollo", "mission": "Land", "owner": "ann"}


def sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


# -- broken plugins that stay isolated -------------------------------------------------------------


class RaisingListener:
    taskman_plugin_name = "boom_listener"

    @hookimpl
    def taskman_event(self, name: str) -> None:
        raise RuntimeError(f"cannot handle {name}")


def test_a_raising_listener_never_changes_the_response_nor_stops_the_others(
    make_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = LifecyclePlugin()
    client = make_client(plugins=(RaisingListener(), listener))
    created = client.simulate_post("/api/v1/projects", json=PROJECT)
    assert created.status_code == 201, created.text
    assert client.simulate_get("/api/v1/projects/P-1").status_code == 200, "the change committed"
    sprint = {"id": "S-1", "project_id": "P-1", "name": "s", "start_date": "2026-11-02", "end_date": "2026-11-13"}
    assert client.simulate_post("/api/v1/sprints", json=sprint).status_code == 201
    assert [name for name, _ in listener.events] == ["project.created", "sprint.created"], "later listeners and events"
    err = capsys.readouterr().err
    assert '"event": "plugin_hook_failed"' in err and '"plugin": "boom_listener"' in err
    assert '"hook": "taskman_event"' in err
    text = client.simulate_get("/metrics").text
    failures = {"plugin": "boom_listener", "hook": "taskman_event"}
    assert sample(text, "taskman_plugin_failures_total", failures) == 2


class FailureCounter:
    taskman_plugin_name = "failure_counter"

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str]] = []

    @hookimpl
    def taskman_plugin_failed(self, plugin: str, hook: str, error: BaseException) -> None:
        self.heard.append((plugin, hook, str(error)))


def test_contained_failures_are_reported_to_taskman_plugin_failed(make_client: Client) -> None:
    counter = FailureCounter()
    client = make_client(plugins=(RaisingListener(), counter))
    client.app.taskman.fire_event("thing.happened", {})
    assert counter.heard == [("boom_listener", "taskman_event", "cannot handle thing.happened")]


def test_events_fired_outside_a_request_are_isolated_too(make_client: Client) -> None:
    listener = LifecyclePlugin()
    client = make_client(plugins=(RaisingListener(), listener))
    client.app.taskman.fire_event("thing.happened", {"n": 1})
    assert listener.events[-1] == ("thing.happened", {"n": 1})


def raising_processor(logger: Any, method: str, event_dict: Any) -> Any:
    raise ValueError("processor bug")


class RaisingProcessor:
    taskman_plugin_name = "boom_processor"

    @hookimpl
    def taskman_log_processors(self) -> list[Any]:
        return [raising_processor]


def test_a_raising_log_processor_never_changes_a_response(
    make_client: Client, fresh_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(plugins=(RaisingProcessor(),))
    result = client.simulate_get("/health/live", headers={"Authorization": "Bearer secret-token-value"})
    assert result.status_code == 200
    err = capsys.readouterr().err
    assert '"event": "log_processor_failed"' in err and '"plugin": "boom_processor"' in err
    assert "secret-token-value" not in err, "a failed processor's line keeps none of its other fields"
    text = client.simulate_get("/metrics").text
    assert (sample(text, "taskman_plugin_failures_total", {"plugin": "boom_processor"}) or 0) >= 1


# -- broken plugins that stop start-up (and taskman check) ----------------------------------------


class Misspelled:
    taskman_plugin_name = "misspelled"

    @hookimpl
    def taskman_route(self) -> list[Any]:
        return []


class BadRule:
    taskman_plugin_name = "bad_rule"

    class Thing:
        def on_get(self, req: Any, resp: Any, id: int) -> None:
            resp.media = {"id": id}

    def __init__(self, rules: dict[str, Any]) -> None:
        self.rules = rules

    @hookimpl
    def taskman_routes(self) -> list[Any]:
        return [("/things/{id:int}", self.Thing())]

    @hookimpl
    def taskman_access(self) -> dict[str, Any]:
        return self.rules


class RaisingConfigure:
    taskman_plugin_name = "boom_configure"

    @hookimpl
    def taskman_configure(self) -> None:
        raise RuntimeError("no configuration for you")


class ReservedCheck:
    taskman_plugin_name = "reserved_check"

    @hookimpl
    def taskman_health_checks(self) -> dict[str, Any]:
        return {"startup": lambda: None}


class ClashingMetric:
    taskman_plugin_name = "clashing_metric"

    @hookimpl
    def taskman_metrics(self, metrics: Any) -> None:
        metrics.counter("http_server_request_duration_seconds", "clashes with the metrics plugin's histogram")


BROKEN_AT_BUILD = [
    pytest.param(
        Misspelled(), {}, r"taskman_route is not a taskman hook; did you mean taskman_routes\?", id="misspelled"
    ),
    pytest.param(BadRule({"/things/{id:int}": "nobody"}), {}, r"unknown access rule", id="bad-rule"),
    pytest.param(
        BadRule({"/things/{id:int}": "nobody"}),
        {"APP_PLUGINS__DISABLE": "openapi"},
        r"unknown access rule",
        id="bad-rule-without-openapi",
    ),
    pytest.param(
        BadRule({"/thingz/{id}": "public"}),
        {},
        r"declares access for /thingz/\{id\}, which no route has",
        id="dangling",
    ),
    pytest.param(
        RaisingConfigure(), {}, r"in taskman_configure failed: RuntimeError: no configuration", id="configure"
    ),
    pytest.param(ReservedCheck(), {}, r"contributed check 'startup': the name is reserved", id="reserved-check"),
    pytest.param(ClashingMetric(), {}, r"http_server_request_duration_seconds", id="metric-clash"),
]


@pytest.mark.parametrize(("plugin", "environ", "message"), BROKEN_AT_BUILD)
def test_a_broken_plugin_stops_the_build_naming_it(
    make_config: Callable[..., Any], asgi: bool, plugin: Any, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(PluginError, match=message) as raised:
        config = make_config(plugins=(plugin,), environ={"APP_AUTH__ALLOW_ANONYMOUS": "false", **environ})
        taskman.create_app(config, asgi=asgi, plugins=(plugin,))
    assert raised.value.plugin == plugin.taskman_plugin_name


class Validator:
    taskman_plugin_name = "validator"

    def __init__(self) -> None:
        self.routes: list[str] = []

    @hookimpl
    def taskman_validate(self, runtime: taskman.Runtime) -> None:
        self.routes = [route.uri_template for route in runtime.routes]
        if "/api/v1/projects" in self.routes:
            raise ValueError("this app must not serve projects")


def test_taskman_validate_sees_the_built_app_and_may_stop_it(make_config: Callable[..., Any]) -> None:
    validator = Validator()
    with pytest.raises(PluginError, match=r"plugin 'validator'.*in taskman_validate failed: ValueError: this app"):
        taskman.create_app(make_config(plugins=(validator,)), plugins=(validator,))
    assert "/health/live" in validator.routes
    without_tracker = make_config(plugins=(validator,), environ={"APP_PLUGINS__DISABLE": "tracker"})
    taskman.create_app(without_tracker, plugins=(validator,))


def test_access_keys_may_use_the_openapi_spelling(make_client: Client) -> None:
    plugin = BadRule({"/things/{thing_id}": "public"})
    client = make_client(plugins=(plugin,), environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"})
    assert client.simulate_get("/things/7").json == {"id": 7}


PLUGIN_FILES = {
    "misspelled": "@hookimpl\ndef taskman_route():\n    return []\n",
    "bad_rule": "@hookimpl\ndef taskman_access():\n    return {'/health/live': 'nobody'}\n",
    "boom_configure": "@hookimpl\ndef taskman_configure():\n    raise RuntimeError('no configuration for you')\n",
    "reserved_check": "@hookimpl\ndef taskman_health_checks():\n    return {'startup': lambda: None}\n",
    "clashing_metric": "@hookimpl\ndef taskman_metrics(metrics):\n    metrics.counter('taskman_workers', 'clash')\n",
}


@pytest.fixture
def plugin_folder(tmp_path: Path) -> Callable[[str], Path]:
    def write(name: str) -> Path:
        folder = tmp_path / f"plugins-{name}"
        folder.mkdir()
        (folder / f"{name}.py").write_text("from taskman import hookimpl\n\n\n" + PLUGIN_FILES[name])
        return folder

    return write


@pytest.mark.parametrize("name", sorted(PLUGIN_FILES))
def test_taskman_check_fails_for_a_broken_plugin_in_one_line(
    plugin_folder: Callable[[str], Path], database_url: str, name: str
) -> None:
    environ = {"APP_PLUGINS__DIRECTORY": str(plugin_folder(name)), "APP_DATABASE__URL": database_url}
    result = CliRunner().invoke(cli, ["check"], env=environ)
    assert result.exit_code == EXIT_CONFIG, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("taskman: error:")]
    assert f"plugin '{name}' (distribution (plugins folder))" in line
    assert "Traceback" not in result.stderr


# -- the runtime: per-app, typed --------------------------------------------------------------


def test_two_apps_in_one_process_share_nothing(make_config: Callable[..., Any], tmp_path: Path, asgi: bool) -> None:
    def build(name: str) -> falcon.testing.TestClient:
        config = make_config(
            overrides={"database": {"url": f"sqlite:///{tmp_path / name}.db"}, "openapi": {"title": name}}
        )
        app = taskman.create_app(config, asgi=asgi)
        taskman.start(app)
        return falcon.testing.TestClient(app)

    first, second = build("first"), build("second")
    try:
        assert first.simulate_post("/api/v1/projects", json=PROJECT).status_code == 201
        assert second.simulate_get("/api/v1/projects/P-1").status_code == 404, "each app has its own database"
        assert second.simulate_post("/api/v1/projects", json=PROJECT).status_code == 201
        assert first.simulate_get("/api/openapi.json").json["info"]["title"] == "first"
        assert second.simulate_get("/api/openapi.json").json["info"]["title"] == "second"
        created = {"http_request_method": "POST", "http_route": "/api/v1/projects"}
        assert sample(first.simulate_get("/metrics").text, "http_server_request_duration_seconds_count", created) == 1
        assert sample(second.simulate_get("/metrics").text, "http_server_request_duration_seconds_count", created) == 1
        assert first.app.taskman.find(object) is None
        assert first.app.taskman.database is not second.app.taskman.database
    finally:
        taskman.stop(first.app)
        taskman.stop(second.app)


def test_settings_are_looked_up_by_their_declared_class(make_config: Callable[..., Any]) -> None:
    runtime = taskman.create_app(make_config()).taskman
    assert runtime.settings(OpenApiSettings).docs is True

    @taskman.settings_section("nobody_enabled")
    @attrs.frozen
    class NobodysSettings:
        flag: bool = taskman.setting(False, "a flag")

    with pytest.raises(UnknownSettingsError, match=r"no settings section \[nobody_enabled\]"):
        runtime.settings(NobodysSettings)
    with pytest.raises(UnknownSettingsError, match="not declared"):
        runtime.settings(dict)
    with pytest.raises(TypeError, match="attrs class"):
        taskman.settings_section("plain")(type("Plain", (), {}))


# -- pluggy does the calling ------------------------------------------------------------------------


class Echo:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"added": "by a wrapper"}


class RouteWrapper:
    taskman_plugin_name = "route_wrapper"

    @hookimpl(wrapper=True)
    def taskman_routes(self) -> Iterator[None]:
        routes = yield
        return [*routes, [("/wrapped", Echo())]]


def test_wrappers_are_honoured_and_their_contributions_attributed(make_client: Client) -> None:
    client = make_client(plugins=(RouteWrapper(),))
    assert client.simulate_get("/wrapped").json == {"added": "by a wrapper"}
    (route,) = [r for r in client.app.taskman.routes if r.uri_template == "/wrapped"]
    assert route.plugin == WRAPPER


class FirstSpecs:
    @taskman.hookspec(firstresult=True)
    def taskman_pick(self) -> str:  # type: ignore[empty-body]
        """Pick one."""


class Picker:
    taskman_plugin_name = "picker"
    taskman_hookspecs = FirstSpecs

    @hookimpl
    def taskman_pick(self) -> str:
        return "picked"


class LatePicker:
    taskman_plugin_name = "zz_picker"

    @hookimpl
    def taskman_pick(self) -> str:
        return "late"


def test_firstresult_hooks_and_monitoring_work_through_pluggy() -> None:
    plugins = Plugins.discover(extra=[Picker(), LatePicker()])
    seen: list[str] = []
    plugins.manager.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *a: None)
    # pluggy calls the last registered first; plugins register in reverse name order, so "picker" answers.
    assert plugins.call_each("taskman_pick") == [("picker", "picked")], "firstresult: the first answer only"
    assert plugins.call_first("taskman_pick") == "picked"
    assert seen == ["taskman_pick", "taskman_pick"]


def test_a_hook_of_a_disabled_plugin_is_not_a_typo(make_config: Callable[..., Any]) -> None:
    class MetricsUser:
        taskman_plugin_name = "metrics_user"

        @hookimpl
        def taskman_metrics(self) -> None:
            raise AssertionError("never called while metrics is off")

    config = make_config(plugins=(MetricsUser(),), environ={"APP_PLUGINS__DISABLE": "metrics,business_metrics"})
    taskman.create_app(config, plugins=(MetricsUser(),))


# -- the plugin API ------------------------------------------------------------------------------------


def test_the_plugin_api_is_what_taskman_exports() -> None:
    for name in taskman.__all__:
        assert hasattr(taskman, name), name
    assert {"hookimpl", "Runtime", "settings_section", "staged", "ValidationProblem", "database"} <= set(
        taskman.__all__
    )


def test_built_in_plugins_import_only_the_plugin_api() -> None:
    """What the import-linter contracts enforce in the lint env, checked here too by reading the sources."""
    root = Path(__file__).resolve().parent.parent / "plugins"
    internal = re.compile(r"^\s*(from taskman\.\w+ import|import taskman\.\w+|from \.\.\w+)", re.M)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if internal.search(p.read_text())]
    assert offenders == []


# -- a raising taskman_startup, under real servers --------------------------------------------------

RAISING_STARTUP = """
from taskman import hookimpl


@hookimpl
def taskman_startup():
    raise RuntimeError("no start for you")
"""


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["--asgi", "--wsgi"])
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_raising_startup_is_one_line_under_both_servers(
    tmp_path: Path, database_url: str, flavour: str, debug: bool
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "boom_startup.py").write_text(RAISING_STARTUP)
    args = ["serve", flavour, "--port", str(free_port()), "--plugins-dir", str(folder), *(["--debug"] if debug else [])]
    result = run_taskman(args, cwd=tmp_path, pythonpath=[], env={"APP_DATABASE__URL": database_url})
    assert result.returncode != 0, result.stderr
    failure = "plugin 'boom_startup' (distribution (plugins folder)) in taskman_startup failed: RuntimeError: no start"
    assert ("Traceback" in result.stderr) is debug, result.stderr
    if not debug:
        assert result.stderr.count(failure) == 1, result.stderr
