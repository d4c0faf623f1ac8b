"""The database layer: URLs, SQLite pragmas, pooling, and 503 when the database is away."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from taskman import hookimpl
from taskman.config import DatabaseSettings
from taskman.db import database, is_sqlite_url, make_database, ping, release_connection, sqlite_path
from tests.conftest import database_for, disabling
from tests.helpers import run_python
from tests.sample_plugins import EchoPlugin
from tests.test_app import assert_problem

Client = Callable[..., falcon.testing.TestClient]


@pytest.fixture
def make_config(make_config: Callable[..., Any]) -> Callable[..., Any]:
    """Without the plugins that have migrations: these apps start on unreachable or missing databases."""
    return disabling(make_config, "tracker", "auth", "events", "webhooks")


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///taskman.db") == "taskman.db"
    assert sqlite_path("sqlite:////var/lib/tm.db") == "/var/lib/tm.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    db = make_database(DatabaseSettings(url=f"sqlite:///{tmp_path / 'p.db'}", busy_timeout_ms=1234))
    try:
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 1234
    finally:
        db.close_all()


def test_pool_keeps_pool_size_idle_and_caps_at_pool_size_plus_overflow(database_url: str) -> None:
    db = make_database(DatabaseSettings(url=database_url, pool_size=2, max_overflow=1, pool_timeout=0.2))
    barrier = threading.Barrier(4)
    release = threading.Event()

    def hold() -> None:
        db.execute_sql("SELECT 1")
        barrier.wait()
        release.wait()
        release_connection(db)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    barrier.wait()
    try:
        assert len(db._in_use) == 3
        with pytest.raises(Exception, match="Max connections exceeded"):
            db.connect()
    finally:
        release.set()
        for t in threads:
            t.join()
    assert len(db._in_use) == 0
    assert len(db._connections) == 2  # the overflow connection was closed on return
    db.close_all()


FORK_DURING_A_TRANSACTION = """
import os, sys, threading, time
from taskman.config import DatabaseSettings
from taskman.db import make_database, release_connection

db = make_database(DatabaseSettings(url=sys.argv[1], busy_timeout_ms=1000))
db.execute_sql("CREATE TABLE IF NOT EXISTS fork_note (body TEXT)")
release_connection(db)
lock = {"lock_type": "IMMEDIATE"} if sys.argv[1].startswith("sqlite:") else {}
inside = threading.Event()

def write(body):
    with db.atomic(**lock):
        db.execute_sql("INSERT INTO fork_note VALUES (%s)" % db.param, (body,))
        if body == "parent":
            inside.set()
            time.sleep(0.5)  # still inside the transaction when the main thread forks
    release_connection(db)

thread = threading.Thread(target=write, args=("parent",))
thread.start()
inside.wait()
pid = os.fork()
if pid == 0:
    try:
        write("child")
        (count,) = db.execute_sql("SELECT COUNT(*) FROM fork_note").fetchone()
        os._exit(0 if count == 2 else 3)
    except BaseException as exc:
        sys.stderr.write(repr(exc))
        os._exit(2)
_, status = os.waitpid(pid, 0)
thread.join()
print(os.waitstatus_to_exitcode(status))
"""


def test_a_fork_waits_for_the_transactions_of_other_threads(database_url: str) -> None:
    """gunicorn --preload forks a master whose plugins' background threads may be mid-transaction.

    On SQLite a transaction cut in half by the fork left the child a lock
    that no one would ever release: its first write failed ("database is
    locked"). The child here writes, and sees the parent's row committed.
    Run in a fresh single-threaded interpreter, as in test_lifecycle.
    """
    result = run_python(FORK_DURING_A_TRANSACTION, database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", result.stderr


def test_ping(database_url: str) -> None:
    db = make_database(DatabaseSettings(url=database_url))
    ping(db)
    assert db.is_closed()
    db.close_all()


def test_unreachable_postgres_is_a_503_with_retry_after(make_client: Client) -> None:
    client = make_client(
        plugins=(EchoPlugin(),),
        overrides={"database": {"url": "postgresql://nobody@127.0.0.1:1/none", "connect_timeout": 1, "retry_after": 7}},
    )
    result = client.simulate_get("/db")
    body = assert_problem(result, 503)
    assert result.headers["retry-after"] == "7"
    assert "127.0.0.1" not in result.text and "nobody" not in result.text
    assert body["detail"] == "The database is unavailable; retry later."


def test_service_recovers_when_the_database_comes_back(make_client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "not-yet"
    client = make_client(plugins=(EchoPlugin(),), overrides={"database": {"url": f"sqlite:///{folder}/db.sqlite"}})
    assert_problem(client.simulate_get("/db"), 503)
    assert client.simulate_get("/echo").status_code == 200  # the process keeps serving
    folder.mkdir()
    assert client.simulate_get("/db").json == {"value": 1}


def test_is_sqlite_url() -> None:
    assert is_sqlite_url("sqlite:///x.db")
    assert not is_sqlite_url("postgresql://h/db")


def test_models_bind_to_the_proxy(make_client: Client) -> None:
    make_client()
    assert database.obj is not None


class SlowWrite:
    """A write that has to wait: SQLite's write lock or PostgreSQL's statement timeout."""

    def __init__(self, url: str) -> None:
        self.url = url

    def on_post(self, req: Any, resp: Any) -> None:
        if is_sqlite_url(self.url):
            database.execute_sql("BEGIN IMMEDIATE")
            database.execute_sql("COMMIT")
        else:
            database.execute_sql("SELECT pg_sleep(5)")
        resp.media = {"written": True}


class SlowPlugin:
    taskman_plugin_name = "slow"

    def __init__(self, url: str) -> None:
        self.url = url

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/slow", SlowWrite(self.url))]


def test_a_database_that_times_out_is_a_503(make_client: Client, database_url: str) -> None:
    client = make_client(
        plugins=(SlowPlugin(database_url),),
        overrides={"database": {"busy_timeout_ms": 50, "statement_timeout_ms": 100}},
    )
    blocker = database_for(database_url)
    if is_sqlite_url(database_url):
        blocker.execute_sql("BEGIN IMMEDIATE")  # hold SQLite's write lock
    try:
        result = client.simulate_post("/slow", json={})
    finally:
        if is_sqlite_url(database_url):
            blocker.execute_sql("ROLLBACK")
        blocker.close_all()
    assert_problem(result, 503)
    assert result.headers["retry-after"] == "5"
