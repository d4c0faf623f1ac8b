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
import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs
import pytest

from taskman.errors import PROBLEM_CONTENT_TYPE
from tests.helpers import free_port, install_fixture_dist, subprocess_env, taskman_command

pytestmark = pytest.mark.servers

BOOT_DEADLINE = 30.0
EXIT_DEADLINE = 30.0


@attrs.define
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@attrs.define
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    probe_file: Path
    log_file: Path

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def get(self, path: str) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def probe_lines(self) -> list[tuple[str, int]]:
        if not self.probe_file.exists():
            return []
        rows = []
        for line in self.probe_file.read_text().splitlines():
            event, pid = line.split()
            rows.append((event, int(pid)))
        return rows

    def wait_until(self, what: str, ready: Callable[[], bool], deadline: float = BOOT_DEADLINE) -> None:
        """Poll ``ready`` until it holds; fail early if the server died, or at the deadline."""
        end = time.monotonic() + deadline
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} while waiting for {what}:\n{self.log}")
            if ready():
                return
            if time.monotonic() > end:
                pytest.fail(f"timed out after {deadline}s waiting for {what}:\n{self.log}")
            time.sleep(0.1)

    def wait_for_http(self, path: str, status: int) -> Response:
        got: list[Response] = []

        def answers() -> bool:
            try:
                got.append(self.get(path))
            except OSError:  # not listening yet, or the worker is not accepting yet
                return False
            return got[-1].status == status

        self.wait_until(f"GET {path} -> {status}", answers)
        return got[-1]

    def wait_for_startups(self, count: int) -> None:
        self.wait_until(
            f"{count} worker start-ups in {self.probe_file}",
            lambda: sum(1 for event, _ in self.probe_lines() if event == "startup") >= count,
        )

    def stop(self, sig: signal.Signals, *, group: bool = False) -> int:
        """Send ``sig`` to the serve process (or its whole group, as a terminal's Ctrl-C does); return the exit code."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server did not exit within {EXIT_DEADLINE}s of {sig.name}:\n{self.log}")

    def group_is_gone(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.fixture(scope="session")
def server_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    dists = tmp_path_factory.mktemp("server-dists")
    return [
        install_fixture_dist("taskman-hello", dists / "hello"),
        install_fixture_dist("taskman-lifecycle-probe", dists / "probe"),
    ]


@pytest.fixture
def serve(server_pythonpath: list[Path], database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``taskman serve`` with two workers; every server started is killed (its whole group) at teardown."""
    started: list[Server] = []
    # gunicorn >= 25.1 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or
    # ~/.gunicorn/gunicorn.ctl; a second gunicorn takes the path over and the
    # first one deletes it on exit.  Give each test a folder of its own.
    runtime_dir = tmp_path / "xdg-runtime"
    runtime_dir.mkdir(mode=0o700)

    def start(*, asgi: bool, environ: Mapping[str, str] | None = None) -> Server:
        n = len(started)
        port = free_port()
        probe_file = tmp_path / f"probe-{n}.txt"
        log_file = tmp_path / f"server-{n}.log"
        env = subprocess_env(
            server_pythonpath,
            {
                "APP_ENVIRONMENT": "testing",
                "APP_DATABASE__URL": database_url,
                "APP_LIFECYCLE_PROBE__FILE": str(probe_file),
                "PYTHONUNBUFFERED": "1",
                "XDG_RUNTIME_DIR": str(runtime_dir),
                **(environ or {}),
            },
        )
        args = ["serve", "--asgi" if asgi else "--wsgi", "--workers", "2", "--port", str(port)]
        with log_file.open("wb") as log:
            proc = subprocess.Popen(
                [*taskman_command(), *args],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, port, probe_file, log_file)
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=EXIT_DEADLINE)


def assert_problem_404(response: Response, path: str) -> None:
    assert response.status == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers.get("x-request-id")
    body = response.json()
    assert isinstance(body, dict)
    assert body["status"] == 404
    assert body["instance"] == path
    assert body["request_id"] == response.headers["x-request-id"]


def assert_clean_lifecycle(server: Server) -> None:
    """Exactly two workers, each started once and stopped once, in that order; the parent ran neither hook."""
    lines = server.probe_lines()
    per_pid: dict[int, list[str]] = collections.defaultdict(list)
    for event, pid in lines:
        per_pid[pid].append(event)
    assert len(per_pid) == 2, f"expected 2 worker pids, got {lines}\n{server.log}"
    assert server.proc.pid not in per_pid, "the serve parent must not run worker hooks"
    for pid, events in per_pid.items():
        assert events == ["startup", "shutdown"], f"worker {pid}: {events}\n{server.log}"


def wait_for_group_exit(server: Server) -> None:
    end = time.monotonic() + EXIT_DEADLINE
    while not server.group_is_gone():
        if time.monotonic() > end:
            pytest.fail(f"worker processes outlived the serve parent:\n{server.log}")
        time.sleep(0.1)


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_serve_two_workers_and_stop_on_sigterm(serve: Callable[..., Server], flavour: str) -> None:
    server = serve(asgi=flavour == "asgi")
    hello = server.wait_for_http("/hello/x", 200)
    assert hello.json() == {"message": "Hello, x!"}
    assert hello.headers["content-type"] == "application/json"
    assert hello.headers.get("x-request-id")
    assert_problem_404(server.get("/no/such/path"), "/no/such/path")
    server.wait_for_startups(2)

    assert server.stop(signal.SIGTERM) == 0, server.log
    wait_for_group_exit(server)
    assert_clean_lifecycle(server)
    assert "Traceback" not in server.log


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_serve_without_the_disabled_plugin(serve: Callable[..., Server], flavour: str) -> None:
    server = serve(asgi=flavour == "asgi", environ={"APP_PLUGINS__DISABLE": "hello"})
    response = server.wait_for_http("/hello/x", 404)
    assert_problem_404(response, "/hello/x")
    server.wait_for_startups(2)

    assert server.stop(signal.SIGTERM) == 0, server.log
    wait_for_group_exit(server)
    assert_clean_lifecycle(server)


def test_uvicorn_stops_cleanly_on_ctrl_c(serve: Callable[..., Server]) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C delivers it to the parent and both workers."""
    server = serve(asgi=True)
    server.wait_for_http("/hello/x", 200)
    server.wait_for_startups(2)

    assert server.stop(signal.SIGINT, group=True) == 0, server.log
    wait_for_group_exit(server)
    assert_clean_lifecycle(server)
    assert "Traceback" not in server.log
