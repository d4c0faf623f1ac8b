"""SIGTERM to ``taskman serve`` (two workers) in the middle of a mixed read/write load.

What must hold, under gunicorn (WSGI) and uvicorn (ASGI):

* every request that got an answer got a whole, normal one (no 5xx, nothing truncated);
* requests a worker had accepted before the signal complete: two of them are held
  inside the workers by the ``fault_probe`` plugin while the signal arrives;
* readiness answers 503 from the moment a worker knows it is stopping: a readiness
  probe accepted before the signal and held until the worker has received it
  answers 503, and so does every probe answered afterwards;
* the server exits within ``server.graceful_timeout``, also when a request never
  finishes, and every worker ran its shut-down hooks;
* every request the server had accepted before the signal completes, also those
  queued behind busy threads (six slow requests, one thread per worker).

The probe plugin records when a worker has received the signal, so nothing
here depends on timing.  (The core logs nothing at shut-down; the health
plugin cannot log from its signal handler: the probe's events are the proof.)
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import GRACEFUL_TIMEOUT, WORKERS
from tests.faults.harness import (
    API,
    DEADLINE,
    HOLD_HEADER,
    FaultServer,
    Workload,
    answered,
    listen_backlog,
    problem,
    server_side_connections,
    stored_task_ids,
    summary,
    unexpected,
    wait_for,
)
from tests.servers import Reply

pytestmark = pytest.mark.servers

FLAVOURS = ["wsgi", "asgi"]
#: Slack on top of the grace period for the process to wind down (interpreter exit, log flushing).
EXIT_SLACK = 10.0


def create_project(server: FaultServer, project_id: str) -> None:
    body = {"id": project_id, "name": "Shutdown", "mission": "Stop well", "owner": "ops"}
    reply = server.call("POST", f"{API}/projects", body)
    assert reply.status == 201, reply.body


class ReadinessWatch(threading.Thread):
    """Probes readiness on fresh connections until stopped, keeping every answer it gets."""

    def __init__(self, server: FaultServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.answers: list[Reply] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        client = self.server.client(timeout=2.0)
        while not self.stopping.is_set():
            try:
                self.answers.append(client.request("GET", "/health/ready", headers={"Connection": "close"}))
            except OSError:  # not listening any more, or reset while stopping: no answer, nothing to judge
                self.stopping.wait(0.02)
            finally:
                client.close()

    def stop(self) -> list[Reply]:
        self.stopping.set()
        self.join(DEADLINE)
        return self.answers


def wait_for_exit(server: FaultServer, since: float) -> float:
    """Wait for the serve process to exit 0 within the grace period (and some slack); return the seconds it took."""
    try:
        code = server.proc.wait(timeout=GRACEFUL_TIMEOUT + EXIT_SLACK)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {GRACEFUL_TIMEOUT + EXIT_SLACK}s after SIGTERM:\n{server.log}")
    took = time.monotonic() - since
    assert code == 0, f"exit code {code}\n{server.log}"
    server.wait_for_group_exit()
    return took


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigterm_under_load_drains_completes_accepted_requests_and_exits_in_time(
    fault_server: Callable[..., FaultServer], database_url: str, flavour: str
) -> None:
    server = fault_server(flavour, database_url)
    create_project(server, "P-stop")
    workers = server.workers()
    assert len(workers) == WORKERS, server.log

    workload = Workload(server, "P-stop", threads=4).start()
    workload.wait_for("some load", lambda outcomes: len(answered(outcomes)) >= 40)

    # Two requests accepted before the signal, held inside the workers (under gunicorn one per worker:
    # a sync worker holding one request cannot accept another).
    probe = server.hold("ready", "GET", "/health/ready")
    write = server.hold("write", "POST", f"{API}/tasks", {"id": "T-held", "title": "Held", "project_id": "P-stop"})

    signalled_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    # Each worker records the signal after the health plugin marked it draining.
    server.wait_for_event("every worker received SIGTERM", "signal", "SIGTERM", count=WORKERS)
    watch = ReadinessWatch(server)
    watch.start()

    server.release("ready")
    held_probe = probe.result()
    assert held_probe.status == 503, held_probe.body
    report = held_probe.json()
    assert report["status"] == "unhealthy"
    assert report["checks"]["shutdown"]["status"] == "unhealthy", report

    server.release("write")
    held_write = write.result()
    assert held_write.status == 201, held_write.body
    assert held_write.json()["id"] == "T-held"

    took = wait_for_exit(server, signalled_at)
    late_probes = watch.stop()
    workload.stop()
    assert [r.status for r in late_probes if r.status != 503] == [], "readiness said ready while stopping"
    assert all(r.json()["status"] == "unhealthy" for r in late_probes)
    outcomes = workload.outcomes
    print(
        f"\n{flavour}: exit {took:.1f}s after SIGTERM; {len(outcomes)} requests; {summary(outcomes)}; "
        f"{len(late_probes)} readiness probes answered while stopping"
    )
    assert unexpected(outcomes) == [], summary(unexpected(outcomes))
    assert len(answered(outcomes)) >= 40

    # Each worker started, received the signal and ran its shut-down hooks, once each and in that
    # order; the serve parent ran none of them.  The server's own log (JSON lines) says so too.
    events = server.events()
    for pid in workers:
        lived = [e[0] for e in events if e[-1] == str(pid) and e[0] in ("startup", "signal", "shutdown")]
        assert lived == ["startup", "signal", "shutdown"], (pid, events)
    assert str(server.proc.pid) not in {e[-1] for e in events}
    lines = server.json_log()
    assert len(lines) == len([line for line in server.log.splitlines() if line.strip()]), "a log line is not JSON"
    said = {line["event"] for line in lines}
    for pid in workers:
        assert f"Finished server process [{pid}]" in said or f"Worker exiting (pid: {pid})" in said, said
    assert "Traceback" not in server.log

    # What the load and the held write were told was created is in the database.
    assert {*workload.created, "T-held"} <= stored_task_ids(database_url)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_request_that_never_finishes_does_not_keep_the_server_past_the_grace_period(
    fault_server: Callable[..., FaultServer], database_url: str, flavour: str
) -> None:
    server = fault_server(flavour, database_url)
    stuck = server.hold("stuck", "GET", "/health/live")

    signalled_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    wait_for_exit(server, signalled_at)

    # Cut off at the deadline: no answer at all (gunicorn kills the worker), or one that says
    # "unavailable, retry" in the app's own format: never a bare 500 (what uvicorn sends by itself).
    if stuck.failure() is None:
        cut = stuck.result()
        problem(cut, 503)
        assert cut.headers.get("retry-after"), cut.headers


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_request_accepted_before_sigterm_completes_also_those_queued_behind_busy_threads(
    fault_server: Callable[..., FaultServer], database_url: str, flavour: str
) -> None:
    # One thread per worker, six slow requests: at most two are being processed, the others wait their turn.
    server = fault_server(flavour, database_url, {"APP_SERVER__THREADS": "1"})
    names = [f"queued-{n}" for n in range(6)]
    replies: dict[str, Reply | BaseException] = {}

    def send(name: str) -> None:
        try:
            replies[name] = server.call("GET", "/health/live", headers={HOLD_HEADER: name})
        except BaseException as exc:  # judged below
            replies[name] = exc

    senders = [threading.Thread(target=send, args=(name,), daemon=True) for name in names]
    for sender in senders:
        sender.start()

    def held() -> set[str]:
        return {event[1] for event in server.events() if event[0] == "held"}

    # Every connection is the server's, none left in the kernel's accept queue, and the requests are in:
    # under ASGI each reaches the middleware on the event loop (then waits for the one pool thread);
    # under WSGI a worker owns the connection and serves it when a thread is free, stopping or not.
    wait_for(
        "six connections accepted and the requests in",
        lambda: (
            server_side_connections(server.port) >= len(names)
            and listen_backlog(server.port) == 0
            and len(held()) >= (len(names) if flavour == "asgi" else 1)
        ),
        detail=lambda: (server_side_connections(server.port), listen_backlog(server.port), sorted(held())),
    )

    signalled_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_event("every worker received SIGTERM", "signal", "SIGTERM", count=WORKERS)
    for name in names:
        server.release(name)
    for sender in senders:
        sender.join(DEADLINE)
    statuses = {name: getattr(reply, "status", reply) for name, reply in replies.items()}
    assert statuses == dict.fromkeys(names, 200), statuses
    assert held() == set(names)
    wait_for_exit(server, signalled_at)
