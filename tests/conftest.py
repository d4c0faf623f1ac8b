"""Shared fixtures: every HTTP test runs on WSGI and ASGI, on SQLite or PostgreSQL.

Set ``TASKMAN_TEST_DATABASE_URL=postgresql://...`` to run the suite on
PostgreSQL; each test then starts without rows (:mod:`tests.pgschema`).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import falcon.testing
import peewee
import pytest
import time_machine

import taskman
from taskman.config import Config, load_config
from taskman.db import is_sqlite_url
from tests.helpers import TEST_ENVIRON
from tests.pgschema import ReusableSchema
from tests.servers import ServerLauncher

POSTGRES_URL = os.environ.get("TASKMAN_TEST_DATABASE_URL", "")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-start",
        metavar="INSTANT",
        help="run with the wall clock starting at this ISO 8601 instant and ticking (time-machine; the monotonic "
        "clock is untouched): CI proves with it that no test depends on the day it runs",
    )


def pytest_configure(config: pytest.Config) -> None:
    start = config.getoption("--clock-start", None)
    if start:
        # Before collection, so module-level dates see the shifted clock too.
        traveller = time_machine.travel(datetime.datetime.fromisoformat(start), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


#: Where the wall clock of a date-bound test starts: inside the fixture sprints (2026-11-02..13), at noon UTC.
CLOCK_START = datetime.datetime(2026, 11, 10, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """The wall clock, started at :data:`CLOCK_START` and ticking: no test depends on the day it runs.

    ``clock.move_to(...)`` and ``clock.shift(...)`` travel; only the wall
    clock moves (``time.monotonic`` is untouched, so timeouts still work).
    """
    with time_machine.travel(CLOCK_START, tick=True) as traveller:
        yield traveller


@pytest.fixture(params=[False, True], ids=["wsgi", "asgi"])
def asgi(request: pytest.FixtureRequest) -> bool:
    """Run the test once per server flavour (as falcon's own suite does)."""
    return bool(request.param)


def _admin_execute(url: str, *statements: str) -> None:
    db = database_for(url)
    try:
        for statement in statements:
            db.execute_sql(statement)
    finally:
        db.close_all()


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A database of this test session's own, so parallel tox envs do not collide."""
    if not POSTGRES_URL:
        yield ""
        return
    parts = urlsplit(POSTGRES_URL)
    name = f"taskman_test_{os.getpid()}"
    _admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    yield urlunsplit(parts._replace(path=f"/{name}"))
    _admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_default_plugins(url: str) -> None:
    """Apply the migrations of the plugins a test app has by default to ``url``."""
    config = load_config(environ=TEST_ENVIRON, overrides={"environment": "testing", "database": {"url": url}})
    runtime = taskman.create_app(config).taskman
    try:
        runtime.ensure_migrated()
    finally:
        runtime.database.close_all()


@pytest.fixture(scope="session")
def postgres_schema(postgres_session_url: str) -> Iterator[ReusableSchema | None]:
    """The session database's schema, migrated once by the default plugins and kept while no test changes it."""
    if not postgres_session_url:
        yield None
        return
    schema = ReusableSchema(postgres_session_url)
    schema.record_baseline(lambda: migrate_default_plugins(postgres_session_url))
    yield schema
    schema.close()


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_session_url: str, postgres_schema: ReusableSchema | None
) -> Iterator[str]:
    """A database without rows for this test: on SQLite a new file; on PostgreSQL see :mod:`tests.pgschema`.

    Mark a test ``empty_database`` when it needs no tables at all (it tests migrations, say).
    """
    if postgres_schema is None:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    postgres_schema.prepare(empty=request.node.get_closest_marker("empty_database") is not None)
    yield postgres_session_url
    postgres_schema.settle()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep a developer's ./taskman.toml or APP_* variables out of the tests.
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith("APP_"):
            monkeypatch.delenv(var)
    # `taskman serve` run in-process exports the metrics folder: keep it out of later tests.
    # (setenv first so teardown removes a value the test itself exports.)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")


@pytest.fixture
def make_config(database_url: str) -> Callable[..., Config]:
    def make(
        *,
        plugins: tuple[object, ...] = (),
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        overrides = overrides or {}
        merged: dict[str, Any] = {"environment": "testing", **overrides}
        merged["database"] = {"url": database_url, **overrides.get("database", {})}
        return load_config(environ={**TEST_ENVIRON, **(environ or {})}, overrides=merged, extra_plugins=plugins)

    return make


def disabling(make_config: Callable[..., Config], *names: str) -> Callable[..., Config]:
    """``make_config`` that also disables ``names``: for tests of other parts that those plugins would disturb."""

    def make(*, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Config:
        merged = dict(environ or {})
        given = [n for n in merged.get("APP_PLUGINS__DISABLE", "").split(",") if n]
        merged["APP_PLUGINS__DISABLE"] = ",".join([*given, *names])
        return make_config(environ=merged, **kwargs)

    return make


@pytest.fixture
def make_client(asgi: bool, make_config: Callable[..., Config]) -> Iterator[Callable[..., falcon.testing.TestClient]]:
    """Build a started app on the current flavour and return a test client for it."""
    apps: list[Any] = []

    def make(
        *,
        plugins: tuple[object, ...] = (),
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> falcon.testing.TestClient:
        config = make_config(plugins=plugins, environ=environ, overrides=overrides)
        app = taskman.create_app(config, asgi=asgi, plugins=plugins)
        taskman.start(app)
        apps.append(app)
        return falcon.testing.TestClient(app)

    yield make
    for app in apps:
        taskman.stop(app)


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """Start from, and leave, a process with no logging set up (the next app built configures it again)."""
    import structlog
    from taskman_plugins.logging.pipeline import reset_logging

    reset_logging()
    structlog.contextvars.clear_contextvars()
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Callable[[], list[dict[str, Any]]]:
    """Read the JSON lines logged (to stderr) since the last call."""
    from tests.logcapture import json_lines

    return lambda: json_lines(capsys.readouterr().err)


@pytest.fixture
def server_launcher(tmp_path: Path) -> Iterator[ServerLauncher]:
    """Start real ``taskman serve`` processes; all of them are killed when the test ends."""
    launcher = ServerLauncher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    return make_client()


def database_for(url: str) -> peewee.Database:
    from taskman.config import DatabaseSettings
    from taskman.db import make_database

    return make_database(DatabaseSettings(url=url))


__all__ = ["CLOCK_START", "POSTGRES_URL", "TEST_ENVIRON", "database_for", "disabling", "is_sqlite_url"]
