"""Fixtures of the fault tests: real servers (two workers, production settings), a private PostgreSQL, a TCP proxy.

:func:`server_env` is the one place that says how the servers run and
:func:`request_headers` the one place that says what every request carries:
when a plugin needs a setting or a token for these tests, add it there.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.faults.harness import API, FaultServer
from tests.helpers import run_taskman
from tests.pgcluster import PgCluster
from tests.pgschema import ReusableSchema
from tests.servers import ServerLauncher
from tests.tcpproxy import TcpProxy

#: Seconds in-flight requests get after SIGTERM (``server.graceful_timeout``).
GRACEFUL_TIMEOUT = 5
WORKERS = 2
PROBE_MODULE = "taskman_fault_probe"


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    """Every setting the fault tests' servers (and their ``taskman migrate``) run with; ``settings`` win."""
    return {
        "APP_ENVIRONMENT": "production",  # JSON logs, details hidden, no automatic migrations
        "APP_DATABASE__URL": database_url,
        "APP_SERVER__GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        "APP_DATABASE__CONNECT_TIMEOUT": "3",
        # Real tokens: every request carries one from `taskman tokens create` (see request_headers).
        "APP_AUTH__ALLOW_ANONYMOUS": "false",
        # The load comes from one client, faster than the default rates (3,000 reads and 1,200 writes a minute per
        # token, fewer without one) allow: the limiter would answer 429s the tests would have to tell apart.
        "APP_RATELIMIT__READS": "1000000/minute",
        "APP_RATELIMIT__WRITES": "1000000/minute",
        "APP_RATELIMIT__ANONYMOUS_READS": "1000000/minute",
        "APP_RATELIMIT__ANONYMOUS_WRITES": "1000000/minute",
        **settings,
    }


def request_headers(token: str) -> dict[str, str]:
    """The headers every request of the fault tests sends."""
    return {
        "Accept": "application/json, application/problem+json",
        "User-Agent": "taskman-fault-tests",
        "Authorization": f"Bearer {token}",
    }


@pytest.fixture(scope="session")
def probe_plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder to put on a server's PYTHONPATH: the ``fault_probe`` plugin and the metadata that registers it."""
    folder = tmp_path_factory.mktemp("fault-probe")
    shutil.copyfile(Path(__file__).with_name("probe_plugin.py"), folder / f"{PROBE_MODULE}.py")
    dist_info = folder / "taskman_fault_probe-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: taskman-fault-probe\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[taskman.plugins]\nfault_probe = {PROBE_MODULE}\n")
    return folder


def start_fault_server(
    launcher: ServerLauncher,
    probe_plugin_path: Path,
    flavour: str,
    database_url: str,
    environ: Mapping[str, str] | None = None,
) -> FaultServer:
    """Migrate ``database_url``, then start ``taskman serve --<flavour> --workers 2`` on it and wait until ready."""
    n = len(launcher.started)
    events_file = launcher.folder / f"events-{n}.txt"
    hold_dir = launcher.folder / f"holds-{n}"
    hold_dir.mkdir()
    env = server_env(
        database_url,
        APP_FAULT_PROBE__EVENTS_FILE=str(events_file),
        APP_FAULT_PROBE__HOLD_DIR=str(hold_dir),
        **(environ or {}),
    )
    migrated = run_taskman(["migrate"], cwd=launcher.folder, pythonpath=[probe_plugin_path], env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = run_taskman(
        ["tokens", "create", "--name", f"faults-{n}", "--scope", "read,write"],
        cwd=launcher.folder,
        pythonpath=[probe_plugin_path],
        env=env,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    server = launcher.start(
        [f"--{flavour}", "--workers", str(WORKERS)],
        pythonpath=[probe_plugin_path],
        env=env,
        factory=lambda proc, port, log: FaultServer(proc, port, log, events_file, hold_dir, request_headers(token)),
    )
    server.wait_for_event("every worker started", "startup", count=WORKERS)
    server.wait_until("readiness 200", lambda: _ready(server))
    return server


@pytest.fixture
def fault_server(server_launcher: ServerLauncher, probe_plugin_path: Path) -> Callable[..., FaultServer]:
    """:func:`start_fault_server` for this test (killed at its end): ``fault_server(flavour, database_url)``."""

    def start(flavour: str, database_url: str, environ: Mapping[str, str] | None = None) -> FaultServer:
        return start_fault_server(server_launcher, probe_plugin_path, flavour, database_url, environ)

    return start


def _ready(server: FaultServer) -> bool:
    try:
        return server.readiness().status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this session's own, which tests may stop and start (never the shared server)."""
    cluster = PgCluster.create(tmp_path_factory.mktemp("pg"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


_database_numbers = itertools.count()


@pytest.fixture
def private_database_url(pg_cluster: PgCluster) -> str:
    """A fresh database on the private cluster, which is running when the test begins."""
    if not pg_cluster.running:  # a failed test may have left it stopped
        pg_cluster.start()
    return pg_cluster.create_database(f"faults_{next(_database_numbers)}")


@pytest.fixture
def db_proxy(pg_cluster: PgCluster) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the private cluster."""
    with TcpProxy(("127.0.0.1", pg_cluster.port)) as proxy:
        yield proxy


__all__ = ["GRACEFUL_TIMEOUT", "WORKERS", "request_headers", "server_env", "start_fault_server"]


@contextlib.contextmanager
def module_fault_server(
    flavour: str,
    folder: Path,
    postgres_schema: ReusableSchema | None,
    probe_plugin_path: Path,
    project_id: str,
    project_name: str,
) -> Iterator[tuple[FaultServer, str]]:
    """A fault server of one flavour on a fresh database, with one project created; killed on exit."""
    if postgres_schema is not None:
        postgres_schema.prepare(empty=True)
        url = postgres_schema.url
    else:
        url = f"sqlite:///{folder / 'faults.db'}"
    launcher = ServerLauncher(folder)
    try:
        server = start_fault_server(launcher, probe_plugin_path, flavour, url)
        project = {"id": project_id, "name": project_name, "mission": "Refuse", "owner": "qa"}
        assert server.call("POST", f"{API}/projects", project).status == 201
        yield server, url
    finally:
        launcher.close()
        if postgres_schema is not None:
            postgres_schema.settle()
