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
from tests.faults.harness import exchange
from tests.helpers import install_fixture_dist
from tests.logcapture import json_lines
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


# -- the request edge: proxy trust and limits, one decision for both servers -----------------------------------------


def access_lines(server: ServerProcess, path: str) -> list[dict[str, object]]:
    return [
        line for line in json_lines(server.log) if line.get("event") == "request_completed" and line["path"] == path
    ]


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_x_forwarded_for_is_trusted_only_from_the_proxies_the_setting_names(
    serve: Callable[..., ProbedServer], flavour: str
) -> None:
    """server.forwarded_allow_ips decides the client address for both servers, the access log and the rate limits."""
    limited = {"APP_RATELIMIT__ANONYMOUS_READS": "2/minute"}
    server = serve(asgi=flavour == "asgi", workers=1, environ=limited)
    server.wait_for_http("/health/live", 200)
    # By default nobody is trusted, loopback included: a header cannot pick the address, or a fresh budget.
    spoofed = [server.get("/hello/x", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status for n in (1, 2, 3)]
    assert spoofed == [200, 200, 429]
    server.wait_until("the access lines", lambda: len(access_lines(server, "/hello/x")) == 3)
    assert {line["client_ip"] for line in access_lines(server, "/hello/x")} == {"127.0.0.1"}
    assert server.stop() == 0

    trusting = serve(
        asgi=flavour == "asgi", workers=1, environ={**limited, "APP_SERVER__FORWARDED_ALLOW_IPS": "127.0.0.1"}
    )
    trusting.wait_for_http("/health/live", 200)
    forwarded = [trusting.get("/hello/x", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status for n in (1, 2, 3)]
    assert forwarded == [200, 200, 200]  # three clients behind a trusted proxy: three budgets
    # A client cannot pick its address by sending a header the proxy appends to: the last untrusted hop counts.
    assert trusting.get("/hello/x", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.1"}).status == 200
    assert trusting.get("/hello/x", headers={"X-Forwarded-For": "198.51.100.2, 203.0.113.1"}).status == 429
    trusting.wait_until("the access lines", lambda: len(access_lines(trusting, "/hello/x")) == 5)
    assert [line["client_ip"] for line in access_lines(trusting, "/hello/x")] == [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.1",
        "203.0.113.1",
    ]


def assert_app_problem(reply: Reply, status: int) -> None:
    """The app's own answer: problem+json with its request id, and the security headers plugin's headers."""
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert reply.json()["request_id"] == reply.headers["x-request-id"]
    assert reply.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_the_servers_let_requests_up_to_the_app_s_limits_through_so_the_app_answers(
    serve: Callable[..., ProbedServer], flavour: str
) -> None:
    """The servers' request-line and header limits follow the limits plugin's (8192 and 16384 by default)."""
    server = serve(asgi=flavour == "asgi", workers=1)
    server.wait_for_http("/health/live", 200)
    # Longer than gunicorn's own default request line (4094), within the app's limit: served.
    name = "x" * 5000
    assert server.get(f"/hello/{name}").json() == {"message": f"Hello, {name}!"}
    # Over the app's limits, under the servers': the app's 414 and 431.
    assert_app_problem(server.get("/hello/" + "x" * 9000), 414)
    assert_app_problem(server.get("/hello/x", headers={"X-Padding": "p" * 17000}), 431)
    # Far over anything the app accepts: the server refuses it itself, still with a problem, and closes.
    head = b"GET /hello/" + b"x" * 200_000 + b" HTTP/1.1\r\nHost: taskman\r\n\r\n"
    got = exchange(server.port, head)
    assert got.closed and [reply.status for reply in got.replies] == [414], got.raw[:300]
    assert got.replies[0].headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert server.get("/health/live").status == 200
