"""What the fault tests share: a keep-alive client, a server that reports what its workers saw, a mixed workload.

Every request of the fault tests goes through :class:`Client`, which sends
the headers ``tests/faults/conftest.py::request_headers`` gives (one place to
add an API token).  :class:`FaultServer` is a real ``taskman serve`` with the
``fault_probe`` plugin (``probe_plugin.py``) loaded, so a test can hold a
request inside a worker and know which worker received a signal.
:class:`Workload` is a few client threads creating, reading, patching and
listing tasks, recording every outcome for the test to judge afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import itertools
import json
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from taskman.db import is_sqlite_url, sqlite_path
from tests.logcapture import json_lines
from tests.servers import Reply, ServerProcess

API = "/api/v1"
PROBLEM = "application/problem+json"
HOLD_HEADER = "X-Fault-Hold"
#: Generous bound for anything the tests wait for (a hang fails the test instead of the CI job).
DEADLINE = 30.0


class Client:
    """One keep-alive HTTP/1.1 connection (re-opened after a failure) that sends the default headers."""

    def __init__(self, port: int, headers: Mapping[str, str], *, timeout: float = 10.0) -> None:
        self.port = port
        self.headers = dict(headers)
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request; raise on a connection failure or a truncated response (the connection is dropped)."""
        sent = {**self.headers, **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body=body, headers=sent)
            resp = self._conn.getresponse()
            data = resp.read()  # IncompleteRead when the body is shorter than announced
        except BaseException:
            self.close()
            raise
        reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.will_close:
            self.close()
        return reply

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def problem(reply: Reply, status: int) -> dict[str, Any]:
    """Assert ``reply`` is an RFC 9457 problem with ``status``; return its body."""
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers.get("content-type") == PROBLEM, (reply.headers, reply.body[:500])
    body = reply.json()
    assert isinstance(body, dict) and body["status"] == status, body
    return body


def wait_for(
    what: str,
    ready: Callable[[], bool],
    deadline: float = DEADLINE,
    poll: float = 0.05,
    detail: Callable[[], object] = lambda: "",
) -> None:
    """Poll ``ready`` until it holds, failing the test after ``deadline`` seconds (with ``detail()`` said)."""
    end = time.monotonic() + deadline
    while not ready():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline}s waiting for {what} {detail()}")
        time.sleep(poll)


# -- the server ----------------------------------------------------------------------------


@attrs.define
class HeldRequest:
    """A request the ``fault_probe`` plugin holds in worker ``pid`` until the test releases it."""

    name: str
    pid: int
    thread: threading.Thread
    outcome: list[Reply | BaseException]

    def result(self, timeout: float = DEADLINE) -> Reply:
        self.thread.join(timeout)
        assert self.outcome, f"held request {self.name!r} got no answer within {timeout}s"
        got = self.outcome[0]
        if isinstance(got, BaseException):
            raise AssertionError(f"held request {self.name!r} failed: {got!r}") from got
        return got

    def failure(self, timeout: float = DEADLINE) -> BaseException | None:
        """The exception the request ended with (None if it got an answer)."""
        self.thread.join(timeout)
        assert self.outcome, f"held request {self.name!r} did not end within {timeout}s"
        got = self.outcome[0]
        return got if isinstance(got, BaseException) else None


@attrs.define
class FaultServer(ServerProcess):
    """``taskman serve`` with the ``fault_probe`` plugin writing to ``events_file`` and watching ``hold_dir``."""

    events_file: Path
    hold_dir: Path
    headers: dict[str, str]

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.port, self.headers, timeout=timeout)

    def call(self, method: str, path: str, json_body: Any = None, headers: Mapping[str, str] | None = None) -> Reply:
        """One request on a connection of its own."""
        client = self.client()
        try:
            return client.request(method, path, json_body=json_body, headers=headers)
        finally:
            client.close()

    def events(self) -> list[tuple[str, ...]]:
        if not self.events_file.exists():
            return []
        return [tuple(line.split()) for line in self.events_file.read_text().splitlines() if line]

    def pids_with(self, *prefix: str) -> set[int]:
        """Pids of the events starting with ``prefix`` (the pid is each event's last word)."""
        return {int(event[-1]) for event in self.events() if event[: len(prefix)] == prefix}

    def wait_for_event(self, what: str, *prefix: str, count: int = 1) -> set[int]:
        """Wait until ``count`` distinct workers recorded an event starting with ``prefix``; return their pids."""
        self.wait_until(what, lambda: len(self.pids_with(*prefix)) >= count, DEADLINE)
        return self.pids_with(*prefix)

    def json_log(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def hold(self, name: str, method: str, path: str, json_body: Any = None) -> HeldRequest:
        """Send a request that a worker will hold until :meth:`release`; return once a worker holds it."""
        outcome: list[Reply | BaseException] = []

        def send() -> None:
            try:
                outcome.append(self.call(method, path, json_body, headers={HOLD_HEADER: name}))
            except BaseException as exc:  # judged by the test through HeldRequest
                outcome.append(exc)

        thread = threading.Thread(target=send, name=f"held-{name}", daemon=True)
        thread.start()
        (pid,) = self.wait_for_event(f"a worker holding {name!r}", "held", name)
        return HeldRequest(name, pid, thread, outcome)

    def release(self, name: str) -> None:
        (self.hold_dir / name).touch()

    def readiness(self) -> Reply:
        return self.call("GET", "/health/ready")


# -- the workload --------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    """One request of the workload: its answer (``status``) or the reason it got none (``error``)."""

    op: str
    path: str
    started: float
    ended: float
    status: int | None = None
    content_type: str | None = None
    retry_after: str | None = None
    error: str | None = None
    #: The server began an answer and did not finish it (truncated, or not HTTP): never acceptable.
    broken: bool = False
    malformed: str | None = None


#: What each operation of the workload answers when all is well.
EXPECTED: dict[str, int] = {"create": 201, "get": 200, "patch": 200, "list": 200}


class Workload:
    """``threads`` clients looping create -> get -> patch -> list on tasks of ``project_id`` until stopped."""

    def __init__(self, server: FaultServer, project_id: str, *, threads: int = 4, tag: str = "w") -> None:
        self.server = server
        self.project_id = project_id
        self.tag = tag
        self.outcomes: list[Outcome] = []
        self.created: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        self.began = 0.0
        self.finished = 0.0

    def start(self) -> Workload:
        self.began = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(DEADLINE)
            assert not thread.is_alive(), "a workload thread did not stop"
        self.finished = time.monotonic()

    def __len__(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.started >= moment]

    def wait_for(self, what: str, enough: Callable[[list[Outcome]], bool]) -> None:
        def check() -> bool:
            with self._lock:
                return enough(list(self.outcomes))

        wait_for(what, check)

    def _run(self, index: int) -> None:
        client = self.server.client()
        mine: list[str] = []
        try:
            for n in itertools.count():
                if self._stopping.is_set():
                    return
                task_id = f"T-{self.tag}-{index}-{n}"
                created = self._send(client, "create", "POST", f"{API}/tasks", self._new_task(task_id))
                if created is not None and created.status == 201:
                    mine.append(task_id)
                    with self._lock:
                        self.created.append(task_id)
                if mine:
                    target = f"{API}/tasks/{mine[-1]}"
                    self._send(client, "get", "GET", target)
                    self._send(client, "patch", "PATCH", target, {"summary": f"pass {n}"}, "merge-patch")
                self._send(client, "list", "GET", f"{API}/tasks?project_id={self.project_id}&limit=10")
        finally:
            client.close()

    def _new_task(self, task_id: str) -> dict[str, Any]:
        return {"id": task_id, "title": f"Task {task_id}", "project_id": self.project_id, "labels": ["load"]}

    def _send(self, client: Client, op: str, method: str, path: str, body: Any = None, kind: str = "") -> Reply | None:
        headers = {"Content-Type": "application/merge-patch+json"} if kind == "merge-patch" else None
        started = time.monotonic()
        try:
            reply = client.request(method, path, json_body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._record(Outcome(op, path, started, time.monotonic(), error=error, broken=is_broken_answer(exc)))
            # The server may be gone or restarting: do not spin.
            self._stopping.wait(0.05)
            return None
        content_type = reply.headers.get("content-type")
        malformed = None
        try:
            if content_type in ("application/json", PROBLEM):
                reply.json()
            elif reply.status != 304:
                malformed = f"content type {content_type!r}"
        except ValueError as exc:
            malformed = f"body is not JSON ({exc}): {reply.body[:200]!r}"
        outcome = Outcome(
            op,
            path,
            started,
            time.monotonic(),
            status=reply.status,
            content_type=content_type,
            retry_after=reply.headers.get("retry-after"),
            malformed=malformed,
        )
        self._record(outcome)
        return reply

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


def is_broken_answer(exc: BaseException) -> bool:
    """Whether ``exc`` means a partial or garbled answer, as opposed to none at all (refused, reset, closed)."""
    return isinstance(exc, http.client.HTTPException) and not isinstance(exc, http.client.RemoteDisconnected)


def answered(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status is not None]


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.error is not None]


def unexpected(outcomes: Iterable[Outcome], also: Collection[int] = ()) -> list[Outcome]:
    """Answers that are not what their operation answers when all is well (nor one of ``also``), malformed or broken."""
    return [
        o
        for o in outcomes
        if o.broken
        or o.malformed is not None
        or (o.status is not None and o.status != EXPECTED[o.op] and o.status not in also)
    ]


def summary(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        key = f"{o.op} {o.status if o.status is not None else o.error}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key}: {count}" for key, count in sorted(counts.items()))


# -- raw HTTP ----------------------------------------------------------------------------------


def raw_request(port: int, head: bytes, body: Iterable[bytes] = (), *, timeout: float = 10.0) -> Reply:
    """Send ``head`` (request line and headers, as given) and ``body`` pieces on a socket of its own; read the answer.

    For what ``http.client`` will not send (CR or LF inside a header value,
    a path it would refuse).  The body stops as soon as the server answers:
    a server refusing a large body may answer before reading it, then close.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for piece in body:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer, if any, is waiting
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)


def responses_in(data: bytes) -> list[Reply]:
    """Every whole HTTP response in ``data``, in order (what a client pipelining requests would read)."""

    class Unclosable(io.BytesIO):
        def close(self) -> None:  # http.client closes it after a "Connection: close" answer: read on
            pass

    class Received:
        def __init__(self) -> None:
            self.file = Unclosable(data)

        def makefile(self, mode: str) -> io.BytesIO:
            return self.file

    received = Received()
    replies = []
    while received.file.tell() < len(data):
        resp = http.client.HTTPResponse(received)  # type: ignore[arg-type]
        try:
            resp.begin()
            body = resp.read()
        except (http.client.HTTPException, ValueError):
            break
        replies.append(Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body))
    return replies


@attrs.frozen
class Exchange:
    """What the server sent back on one connection, and whether it closed it."""

    replies: list[Reply]
    closed: bool
    raw: bytes


def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> Exchange:
    """Send ``data`` on a connection of its own; read until the server closes it (or is silent ``timeout`` s)."""
    received = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may stop reading early (and answer): what it sent is waiting all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    return Exchange(responses_in(received), closed, received)


def _tcp_sockets(port: int, state: str) -> list[list[str]]:
    """The rows of Linux's TCP tables for sockets in ``state`` whose local port is ``port``."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    rows.append(fields)
    return rows


def server_side_connections(port: int) -> int:
    """Established connections to ``port``, seen from the server's side (accepted or still in the accept queue)."""
    return len(_tcp_sockets(port, "01"))


def listen_backlog(port: int) -> int:
    """Connections waiting in the kernel's accept queue of the socket listening on ``port`` (Linux)."""
    # For a listening socket, rx_queue is the number of connections not yet accepted.
    return sum(int(fields[4].split(":")[1], 16) for fields in _tcp_sockets(port, "0A"))


# -- the database, directly --------------------------------------------------------------------


def stored_task_ids(database_url: str) -> set[str]:
    """The ids in the ``task`` table of ``database_url`` (SQLite or PostgreSQL), read without the app."""
    if is_sqlite_url(database_url):
        with contextlib.closing(sqlite3.connect(sqlite_path(database_url))) as conn:
            return {row[0] for row in conn.execute("SELECT id FROM task")}
    with psycopg.connect(database_url, connect_timeout=10) as pg:
        return {row[0] for row in pg.execute("SELECT id FROM task")}
