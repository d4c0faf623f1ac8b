"""Events and webhooks against real ``taskman serve`` processes: two workers, each flavour, each database.

A receiver listens on loopback in the test process.  What is shown:

* every change produces exactly its events, and a refused one none; the
  receiver gets each of them, in order, signed, while writers on several
  connections commit concurrently and a reader walks the change feed;
* a receiver that is down for a while gets everything, in order, when it
  comes back;
* a worker killed with SIGKILL while a delivery is in flight loses nothing:
  another worker sends it again (same ``webhook-id``) once its lease runs
  out, and the listeners of events whose acknowledgement died with the
  worker hear of them from another worker's round;
* a task's activity, written through both workers by two tokens, says who
  changed which field from what to what, and when.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import database_for
from tests.faults.harness import wait_for
from tests.helpers import run_taskman, taskman_command
from tests.servers import ServerLauncher, ServerProcess
from tests.webhooks.receiver import Received, Receiver

pytestmark = pytest.mark.servers

API = "/api/v1"
WORKERS = 2
#: Short rounds, retries and leases, so the test waits seconds where production waits minutes.
SETTINGS = {
    "APP_ENVIRONMENT": "testing",
    "APP_EVENTS__POLL_INTERVAL": "0.2",
    "APP_EVENTS__REDELIVER_AFTER": "2.0",
    "APP_WEBHOOKS__POLL_INTERVAL": "0.2",
    "APP_WEBHOOKS__RETRY_BASE": "0.2",
    "APP_WEBHOOKS__RETRY_MAX": "1.0",
    "APP_WEBHOOKS__TIMEOUT": "2.0",
}
DEADLINE = 60.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


def serve(launcher: ServerLauncher, flavour: str, database_url: str) -> ServerProcess:
    server = launcher.start(
        [f"--{flavour}", "--workers", str(WORKERS)], pythonpath=[], env={**SETTINGS, "APP_DATABASE__URL": database_url}
    )
    server.wait_for_http("/health/ready", 200)
    server.wait_until("both workers", lambda: len(server.workers()) == WORKERS)
    return server


class Client:
    def __init__(self, server: ServerProcess, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.auth = {} if token is None else {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        headers.update(self.auth)
        self.conn.request(method, API + path, body=None if body is None else json.dumps(body), headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None


def walk(server: ServerProcess, after: int = 0) -> list[dict[str, Any]]:
    client, seen = Client(server), []
    while True:
        status, page = client.call("GET", f"/events?after={after}&limit=50")
        assert status == 200, page
        seen += page["items"]
        after = page["next_after"]
        if not page["has_more"]:
            return seen


def check_delivered(receiver: Receiver, secret: str, events: list[dict[str, Any]]) -> None:
    """Each event reached the receiver (repeats allowed), first arrivals in event order, every signature valid."""
    unique = receiver.unique()
    assert [r.message_id for r in unique] == [f"evt_{e['id']}" for e in events]
    for got, event in zip(unique, events, strict=True):
        assert got.verified(secret)["type"] == event["type"]
    for got in receiver.received:
        got.verified(secret)


def all_delivered(receiver: Receiver, server: ServerProcess) -> bool:
    events = walk(server)
    return bool(events) and {r.message_id for r in receiver.received} >= {f"evt_{e['id']}" for e in events}


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_every_change_reaches_the_receiver_once_in_order_and_after_an_outage(
    server_launcher: ServerLauncher, database_url: str, receiver: Receiver, flavour: str
) -> None:
    server = serve(server_launcher, flavour, database_url)
    admin = Client(server)
    status, created = admin.call("POST", "/webhooks", {"url": receiver.url})
    assert status == 201, created
    assert admin.call("POST", "/projects", {"id": "P-1", "name": "A", "mission": "m", "owner": "o"})[0] == 201

    writers, per_writer = 3, 6
    failures: list[str] = []

    def write(n: int) -> None:
        client = Client(server)
        for i in range(per_writer):
            outcomes = [
                client.call("POST", "/tasks", {"id": f"T-{n}-{i}", "title": "t", "project_id": "P-1"})[0] == 201,
                client.call("PATCH", f"/tasks/T-{n}-{i}", {"priority": "p0"})[0] == 200,
                # Refused: no event may come of them.
                client.call("POST", "/tasks", {"id": f"X-{n}-{i}", "title": "t", "project_id": "P-404"})[0] == 422,
                client.call("POST", "/projects", {"id": "P-1", "name": "A", "mission": "m", "owner": "o"})[0] == 409,
            ]
            if not all(outcomes):
                failures.append(f"writer {n}, round {i}: {outcomes}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    reader, seen, after = Client(server), [], 0
    while any(t.is_alive() for t in threads):  # the feed walked while two workers commit
        status, page = reader.call("GET", f"/events?after={after}&limit=7")
        seen += [e["id"] for e in page["items"]]
        after = page["next_after"]
    for thread in threads:
        thread.join()
    assert not failures
    events = walk(server)
    seen += [e["id"] for e in walk(server, after)]
    assert seen == [e["id"] for e in events], "the feed: each event once, none missed, in order"
    kinds = [e["type"] for e in events]
    tasks = writers * per_writer
    assert kinds.count("task.created") == tasks and kinds.count("task.updated") == tasks
    assert kinds.count("project.health_changed") == tasks and kinds.count("project.created") == 1
    assert len(kinds) == 1 + 3 * tasks, "exactly these events: none of the refused writes left one"
    assert not any("X-" in json.dumps(e["data"]) for e in events)
    wait_for("every event at the receiver", lambda: all_delivered(receiver, server), DEADLINE)
    check_delivered(receiver, created["secret"], events)

    receiver.stop()  # down for a while
    for i in range(3):
        assert (
            admin.call("POST", "/projects", {"id": f"P-{i + 2}", "name": "B", "mission": "m", "owner": "o"})[0] == 201
        )

    def tried_while_down() -> bool:
        _status, log = admin.call("GET", f"/webhooks/{created['id']}/attempts?limit=5")
        return any(a["outcome"] == "connection_error" for a in log["items"])

    wait_for("an attempt while the receiver is down", tried_while_down, DEADLINE)
    receiver.start()
    wait_for("everything after the outage", lambda: all_delivered(receiver, server), DEADLINE)
    check_delivered(receiver, created["secret"], walk(server))


def worker_of(server: ServerProcess, got: Received, receiver_port: int) -> int:
    """The worker whose socket sent ``got``: its local port, found in /proc/net/tcp, owned by one of its fds."""
    client_port = int(got.headers["x-test-client-port"])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == client_port and int(remote.rsplit(":", 1)[1], 16) == receiver_port:
                inodes.add(f"socket:[{inode}]")
    for pid in server.workers():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_a_worker_killed_mid_delivery_loses_nothing(
    server_launcher: ServerLauncher, database_url: str, receiver: Receiver, flavour: str
) -> None:
    server = serve(server_launcher, flavour, database_url)
    admin = Client(server)
    status, created = admin.call("POST", "/webhooks", {"url": receiver.url})
    assert status == 201, created
    in_flight = threading.Event()
    release = threading.Event()
    holder: list[Received] = []

    def hold(got: Received) -> int:  # the first delivery waits here until its worker is dead
        holder.append(got)
        in_flight.set()
        release.wait(DEADLINE)
        return 200

    receiver.answers = [hold]
    for i in range(3):
        assert admin.call("POST", "/projects", {"id": f"P-{i}", "name": "A", "mission": "m", "owner": "o"})[0] == 201
    assert in_flight.wait(DEADLINE), "no delivery arrived"
    victim = worker_of(server, holder[0], receiver.port)
    os.kill(victim, signal.SIGKILL)
    release.set()
    wait_for("every event, sent again by another worker", lambda: all_delivered(receiver, server), DEADLINE)
    events = walk(server)
    check_delivered(receiver, created["secret"], events)
    assert receiver.messages().count(holder[0].message_id) >= 2, "the delivery in flight was sent again"
    db = database_for(database_url)
    try:

        def listeners_heard_everything() -> bool:
            (left,) = db.execute_sql("SELECT COUNT(*) FROM event_outbox WHERE NOT dispatched").fetchone()
            return int(left) == 0

        wait_for("every event acknowledged by the listeners", listeners_heard_everything, DEADLINE)
    finally:
        db.close_all()


def test_taskman_webhooks_run_delivers_beside_servers_that_do_not(
    server_launcher: ServerLauncher, database_url: str, receiver: Receiver
) -> None:
    server = server_launcher.start(
        ["--asgi", "--workers", "1"],
        pythonpath=[],
        env={**SETTINGS, "APP_DATABASE__URL": database_url, "APP_WEBHOOKS__DELIVER": "false"},
    )
    server.wait_for_http("/health/ready", 200)
    admin = Client(server)
    status, created = admin.call("POST", "/webhooks", {"url": receiver.url, "event_types": ["project.*"]})
    assert status == 201, created
    assert admin.call("POST", "/projects", {"id": "P-1", "name": "A", "mission": "m", "owner": "o"})[0] == 201

    def queued() -> bool:
        return [d["status"] for d in admin.call("GET", f"/webhooks/{created['id']}/deliveries")[1]["items"]] == [
            "pending"
        ]

    wait_for("the server to queue the delivery (and not send it)", queued, DEADLINE)
    assert receiver.received == []
    runner = server_launcher.launch(
        [*taskman_command(), "webhooks", "run"], 0, env={**SETTINGS, "APP_DATABASE__URL": database_url}
    )
    wait_for("the delivery by `taskman webhooks run`", lambda: all_delivered(receiver, server), DEADLINE)
    check_delivered(receiver, created["secret"], walk(server))
    assert runner.stop(signal.SIGTERM) == 0, runner.log


def token(launcher: ServerLauncher, env: dict[str, str], name: str) -> str:
    created = run_taskman(
        ["tokens", "create", "--name", name, "--scope", "read,write"], cwd=launcher.folder, pythonpath=[], env=env
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def instant(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_activity_says_who_changed_which_field_and_when(
    server_launcher: ServerLauncher, database_url: str, flavour: str
) -> None:
    env = {**SETTINGS, "APP_DATABASE__URL": database_url, "APP_AUTH__ALLOW_ANONYMOUS": "false"}
    migrated = run_taskman(["migrate"], cwd=server_launcher.folder, pythonpath=[], env=env)
    assert migrated.returncode == 0, migrated.stderr
    ann, bob = token(server_launcher, env, "ann"), token(server_launcher, env, "bob")
    server = server_launcher.start([f"--{flavour}", "--workers", str(WORKERS)], pythonpath=[], env=env)
    server.wait_for_http("/health/ready", 200)
    server.wait_until("both workers", lambda: len(server.workers()) == WORKERS)

    def call(who: str, method: str, path: str, body: Any = None) -> Any:
        status, answer = Client(server, who).call(method, path, body)  # a connection each: either worker serves it
        assert status < 300, answer
        return answer

    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    call(ann, "POST", "/projects", {"id": "P-1", "name": "A", "mission": "m", "owner": "o"})
    call(ann, "POST", "/tasks", {"id": "T-1", "title": "First", "project_id": "P-1"})
    call(bob, "PATCH", "/tasks/T-1", {"title": "Second", "priority": "p0"})
    call(ann, "POST", "/tasks/T-1/status", {"status": "ready"})
    comment = call(bob, "POST", "/tasks/T-1/comments", {"body": "On it"})
    call(bob, "PATCH", f"/tasks/T-1/comments/{comment['id']}", {"body": "Done soon"})
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)

    entries = call(ann, "GET", "/tasks/T-1/activity")["items"]
    assert [(e["type"], e["principal"]) for e in entries] == [
        ("task.created", "ann"),
        ("task.updated", "bob"),
        ("task.updated", "ann"),
        ("comment.created", "bob"),
        ("comment.updated", "bob"),
    ]
    assert entries[1]["changes"] == [
        {"field": "priority", "old": "p2", "new": "p0"},
        {"field": "title", "old": "First", "new": "Second"},
    ]
    assert entries[2]["changes"] == [{"field": "status", "old": "new", "new": "ready"}]
    assert entries[4]["changes"] == [{"field": "body", "old": "On it", "new": "Done soon"}]
    times = [instant(e["occurred_at"]) for e in entries]
    assert start <= times[0] and times == sorted(times) and times[-1] <= end
