"""``taskman serve`` under real servers: gunicorn (WSGI) and uvicorn (ASGI), two workers each.

The ``taskman-hello`` and ``taskman-lifecycle-probe`` fixture distributions are
installed into temporary folders and put on the server's ``PYTHONPATH``; the
probe appends ``startup <pid>`` / ``shutdown <pid>`` to a file from its
``taskman_startup`` / ``taskman_shutdown`` hooks, so each test can check that
every worker ran each hook exactly once and that the serve parent ran none.

Every server runs in its own process group; the fixture kills the group
whatever happens, so a failing test never leaves a server behind.
"""

from __future__ import annotations

import collections
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import pytest

from taskman.errors import PROBLEM_CONTENT_TYPE
from tests.helpers import install_fixture_dist
from tests.servers import Reply, ServerLauncher, ServerProcess

pytestmark = pytest.mark.servers


@attrs.define
class ProbedServer(ServerProcess):
    """A server whose workers append ``startup <pid>`` / ``shutdown <pid>`` to ``probe_file``."""

    probe_file: Path

    def probe_lines(self) -> list[tuple[str, int]]:
        if not self.probe_file.exists():
            return []
        rows = []
        for line in self.probe_file.read_text().splitlines():
            event, pid = line.split()
            rows.append((event, int(pid)))
        return rows

    def wait_for_startups(self, count: int) -> None:
        self.wait_until(
            f"{count} worker start-ups in {self.probe_file}",
            lambda: sum(1 for event, _ in self.probe_lines() if event == "startup") >= count,
        )


@pytest.fixture(scope="session")
def server_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    dists = tmp_path_factory.mktemp("server-dists")
    return [
        install_fixture_dist("taskman-hello", dists / "hello"),
        install_fixture_dist("taskman-lifecycle-probe", dists / "probe"),
    ]


@pytest.fixture
def serve(
    server_pythonpath: list[Path], database_url: str, tmp_path: Path, server_launcher: ServerLauncher
) -> Callable[..., ProbedServer]:
    """Start ``taskman serve`` (two workers unless told) with the lifecycle probe."""

    def start(*, asgi: bool, workers: int = 2, environ: Mapping[str, str] | None = None) -> ProbedServer:
        probe_file = tmp_path / f"probe-{len(server_launcher.started)}.txt"
        return server_launcher.start(
            ["--asgi" if asgi else "--wsgi", "--workers", str(workers)],
            pythonpath=server_pythonpath,
            env={
                "APP_ENVIRONMENT": "testing",
                "APP_DATABASE__URL": database_url,
                "APP_LIFECYCLE_PROBE__FILE": str(probe_file),
                **(environ or {}),
            },
            factory=lambda proc, port, log: ProbedServer(proc, port, log, probe_file),
        )

    return start


def assert_problem_404(response: Reply, path: str) -> None:
    assert response.status == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers.get("x-request-id")
    body = response.json()
    assert isinstance(body, dict)
    assert body["status"] == 404
    assert body["instance"] == path
    assert body["request_id"] == response.headers["x-request-id"]


def assert_clean_lifecycle(server: ProbedServer) -> None:
    """Exactly two workers, each started once and stopped once, in that order; the parent ran neither hook."""
    lines = server.probe_lines()
    per_pid: dict[int, list[str]] = collections.defaultdict(list)
    for event, pid in lines:
        per_pid[pid].append(event)
    assert len(per_pid) == 2, f"expected 2 worker pids, got {lines}\n{server.log}"
    assert server.proc.pid not in per_pid, "the serve parent must not run worker hooks"
    for pid, events in per_pid.items():
        assert events == ["startup", "shutdown"], f"worker {pid}: {events}\n{server.log}"


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_serve_two_workers_and_stop_on_sigterm(serve: Callable[..., ProbedServer], flavour: str) -> None:
    server = serve(asgi=flavour == "asgi")
    hello = server.wait_for_http("/hello/x", 200)
    assert hello.json() == {"message": "Hello, x!"}
    assert hello.headers["content-type"] == "application/json"
    assert hello.headers.get("x-request-id")
    assert_problem_404(server.get("/no/such/path"), "/no/such/path")
    server.wait_for_startups(2)

    assert server.stop(signal.SIGTERM) == 0, server.log
    server.wait_for_group_exit()
    assert_clean_lifecycle(server)
    assert "Traceback" not in server.log


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_serve_without_the_disabled_plugin(serve: Callable[..., ProbedServer], flavour: str) -> None:
    server = serve(asgi=flavour == "asgi", environ={"APP_PLUGINS__DISABLE": "hello"})
    response = server.wait_for_http("/hello/x", 404)
    assert_problem_404(response, "/hello/x")
    server.wait_for_startups(2)

    assert server.stop(signal.SIGTERM) == 0, server.log
    server.wait_for_group_exit()
    assert_clean_lifecycle(server)


def test_uvicorn_stops_cleanly_on_ctrl_c(serve: Callable[..., ProbedServer]) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C delivers it to the parent and both workers."""
    server = serve(asgi=True)
    server.wait_for_http("/hello/x", 200)
    server.wait_for_startups(2)

    assert server.stop(signal.SIGINT, group=True) == 0, server.log
    server.wait_for_group_exit()
    assert_clean_lifecycle(server)
    assert "Traceback" not in server.log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_one_uvicorn_worker_exits_0_after_a_clean_stop(serve: Callable[..., ProbedServer], sig: signal.Signals) -> None:
    """uvicorn in-process re-raises the signal it handled; ``taskman serve`` still reports a clean stop."""
    server = serve(asgi=True, workers=1)
    server.wait_for_http("/hello/x", 200)
    server.wait_for_startups(1)
    assert server.stop(sig) == 0, server.log
    assert [event for event, _ in server.probe_lines()] == ["startup", "shutdown"]
