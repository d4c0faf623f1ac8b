"""Start-up and shut-down hooks: once per process, on both flavours, whoever drives them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

import taskman
from taskman import hookimpl
from taskman.plugins import PluginError
from tests.helpers import run_python
from tests.sample_plugins import EchoPlugin, LifecyclePlugin


def build(asgi: bool, make_config: Callable[..., Any], *plugins: object) -> Any:
    return taskman.create_app(make_config(plugins=plugins), asgi=asgi, plugins=plugins)


def test_creating_an_app_runs_no_hooks(asgi: bool, make_config: Callable[..., Any]) -> None:
    probe = LifecyclePlugin()
    build(asgi, make_config, probe)
    assert (probe.started, probe.stopped) == (0, 0)


def test_explicit_start_and_stop_run_once(asgi: bool, make_config: Callable[..., Any]) -> None:
    probe = LifecyclePlugin()
    app = build(asgi, make_config, probe, EchoPlugin())
    assert taskman.start(app) is True
    assert taskman.start(app) is False
    client = falcon.testing.TestClient(app)
    for _ in range(3):
        # Under ASGI each simulated request also runs lifespan start-up and shut-down:
        # they must not run the hooks again nor stop what the test started.
        assert client.simulate_get("/echo").status_code == 200
    assert (probe.started, probe.stopped) == (1, 0)
    assert taskman.stop(app) is True
    assert taskman.stop(app) is False
    assert (probe.started, probe.stopped) == (1, 1)


def test_first_request_starts_an_app_nobody_started(asgi: bool, make_config: Callable[..., Any]) -> None:
    probe = LifecyclePlugin()
    app = build(asgi, make_config, probe, EchoPlugin())
    result = falcon.testing.simulate_get(app, "/echo")
    assert result.status_code == 200
    assert probe.started == 1
    taskman.stop(app)
    assert probe.stopped == 1


def test_asgi_lifespan_runs_hooks_once_for_the_server_lifetime(make_config: Callable[..., Any]) -> None:
    probe = LifecyclePlugin()
    app = build(True, make_config, probe, EchoPlugin())

    async def serve() -> None:
        async with falcon.testing.ASGIConductor(app) as conductor:
            assert probe.started == 1
            for _ in range(3):
                assert (await conductor.simulate_get("/echo")).status_code == 200
            assert (probe.started, probe.stopped) == (1, 0)

    asyncio.run(serve())
    assert (probe.started, probe.stopped) == (1, 1)


def test_failing_startup_hook_names_the_plugin_and_leaves_the_app_unstarted(
    asgi: bool, make_config: Callable[..., Any]
) -> None:
    class Broken:
        taskman_plugin_name = "broken_start"

        @hookimpl
        def taskman_startup(self, app: Any, config: Any) -> None:
            raise OSError("cache directory is read-only")

    app = build(asgi, make_config, Broken())
    with pytest.raises(PluginError, match=r"plugin 'broken_start'.*taskman_startup.*OSError: cache directory"):
        taskman.start(app)
    assert not app.taskman.started


def test_a_failing_shutdown_hook_does_not_stop_the_others(
    asgi: bool, make_config: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        taskman_plugin_name = "broken_stop"

        @hookimpl
        def taskman_shutdown(self, app: Any, config: Any) -> None:
            raise RuntimeError("flush failed")

    probe = LifecyclePlugin()
    app = build(asgi, make_config, probe, Broken())
    taskman.start(app)
    taskman.stop(app)
    assert probe.stopped == 1
    assert any("broken_stop" in str(getattr(r, "error", "")) for r in caplog.records)


FORKING_WORKER = """
import json, os, sys
import falcon.testing
import taskman
from taskman.config import load_config
from tests.helpers import TEST_ENVIRON
from tests.sample_plugins import EchoPlugin, LifecyclePlugin

probe = LifecyclePlugin()
plugins = (probe, EchoPlugin())
config = load_config(environ=TEST_ENVIRON, overrides={"environment": "testing", "database": {"url": sys.argv[1]}},
                     extra_plugins=plugins)
app = taskman.create_app(config, asgi=False, plugins=plugins)
taskman.start(app)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:  # the worker
    status = falcon.testing.simulate_get(app, "/echo").status_code
    taskman.stop(app)
    os.write(write_end, json.dumps([status, probe.started, probe.stopped]).encode())
    os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as pipe:
    worker = json.loads(pipe.read())
os.waitpid(pid, 0)
print(json.dumps({"worker": worker, "parent": [probe.started, probe.stopped]}))
taskman.stop(app)
"""


def test_a_forked_wsgi_worker_runs_its_own_startup(database_url: str) -> None:
    """gunicorn --preload imports the app in the master and forks workers.

    Run in a fresh single-threaded interpreter: forking this multi-threaded
    test process could deadlock.
    """
    result = run_python(FORKING_WORKER, database_url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["worker"] == [200, 2, 1]  # the parent's start-up, then the worker's own
    assert report["parent"] == [1, 0]  # the parent is untouched
