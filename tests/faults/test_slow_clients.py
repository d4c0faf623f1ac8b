"""Clients that take their time, against ``taskman serve`` (two workers, production settings), both flavours.

What must hold (issue 12, items 1 and 4):

* 200 idle connections plus a few clients trickling a request head or body
  one byte at a time never stop the server: liveness and the API answer
  every probe while they are all open;
* the server ends each slow client itself: a head or body that does not
  arrive within ``limits.header_timeout`` / ``limits.body_timeout`` gets a
  408 problem and its connection is closed, and nothing is stored; an idle
  connection is closed after ``server.keepalive`` seconds;
* under ASGI a trickling body never holds a thread: with more slow bodies
  than the thread pool has threads, the API still answers while they trickle.
  (Under WSGI each one holds a thread until its ``body_timeout``, which is
  why that flavour wants a buffering proxy in front: docs/security.md.)

Nothing here measures time: each probe either gets its answer or the test
fails; the waits are for outcomes, bounded by generous deadlines.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Callable

import pytest

from tests.faults.harness import API, DEADLINE, FaultServer, problem, responses_in, stored_task_ids, wait_for
from tests.servers import Reply

pytestmark = pytest.mark.servers

FLAVOURS = ["wsgi", "asgi"]
IDLE_CONNECTIONS = 200
SLOW_HEADS = 3
SLOW_BODIES = 3
#: Short bounds, so the server ends the slow clients within the test.
EDGE = {"APP_LIMITS__HEADER_TIMEOUT": "2", "APP_LIMITS__BODY_TIMEOUT": "3", "APP_SERVER__KEEPALIVE": "10"}
#: How often a slow client sends its next byte.
TRICKLE = 0.3


class SlowClient(threading.Thread):
    """Sends ``head`` then ``body`` one byte every :data:`TRICKLE` seconds until the server answers or closes."""

    def __init__(self, port: int, head: bytes, body: bytes = b"") -> None:
        super().__init__(daemon=True)
        self.port = port
        self.head = head
        self.body = body
        self.started_sending = threading.Event()
        self.received = b""
        self.closed = False

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE) as sock:
            trickled = self.head if not self.body else self.body
            if self.body:
                sock.sendall(self.head)
            for index in range(len(trickled)):
                try:
                    sock.sendall(trickled[index : index + 1])
                except OSError:
                    break
                self.started_sending.set()
                readable, _, _ = select.select([sock], [], [], TRICKLE)
                if readable:
                    break
            try:
                while chunk := sock.recv(65536):
                    self.received += chunk
                self.closed = True
            except ConnectionResetError:
                self.closed = True
            except TimeoutError:
                pass

    def answer(self) -> Reply:
        self.join(DEADLINE)
        assert not self.is_alive(), "the server neither answered nor closed a slow client"
        assert self.closed, f"the server answered a slow client but kept its connection: {self.received[:300]!r}"
        (reply,) = responses_in(self.received)
        return reply


def slow_head(port: int) -> SlowClient:
    return SlowClient(port, b"GET /health/live HTTP/1.1\r\nHost: taskman\r\nX-Slow: " + b"a" * 200)


def slow_body(server: FaultServer, task_id: str) -> SlowClient:
    body = json.dumps({"id": task_id, "title": "Slow", "project_id": "P-slow", "summary": " " * 200}).encode()
    lines = [
        f"POST {API}/tasks HTTP/1.1",
        "Host: taskman",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in server.headers.items()),
    ]
    return SlowClient(server.port, ("\r\n".join(lines) + "\r\n\r\n").encode(), body)


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed ``sock`` nor sent anything on it."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def create_project(server: FaultServer) -> None:
    reply = server.call("POST", f"{API}/projects", {"id": "P-slow", "name": "Slow", "mission": "Wait", "owner": "qa"})
    assert reply.status == 201, reply.body


def probe(server: FaultServer) -> None:
    """Liveness and an API read answer (the client gives up after 10 s: a starved server fails the test)."""
    assert server.call("GET", "/health/live").status == 200
    assert server.call("GET", f"{API}/projects").status == 200


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_idle_connections_and_slow_clients_never_stop_the_server(
    fault_server: Callable[..., FaultServer], database_url: str, flavour: str
) -> None:
    server = fault_server(flavour, database_url, EDGE)
    create_project(server)
    workers = server.workers()

    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) for _ in range(IDLE_CONNECTIONS)]
    try:
        heads = [slow_head(server.port) for _ in range(SLOW_HEADS)]
        bodies = [slow_body(server, f"T-slow-{n}") for n in range(SLOW_BODIES)]
        for client in (*heads, *bodies):
            client.start()
        for client in (*heads, *bodies):
            assert client.started_sending.wait(DEADLINE)

        for _ in range(10):
            probe(server)
        assert all(still_open(sock) for sock in idle), "an idle connection was closed before its keep-alive ran out"
        assert all(client.is_alive() for client in (*heads, *bodies)), "a slow client was cut off before its bound"

        # The server ends every slow client itself, with a problem saying why.
        for client in (*heads, *bodies):
            problem(client.answer(), 408)
        # ... and every idle connection, once it has been silent for server.keepalive seconds.
        wait_for("the idle connections closed by the server", lambda: not any(still_open(s) for s in idle))
    finally:
        for sock in idle:
            sock.close()

    probe(server)
    assert server.workers() == workers, "a worker died or was replaced"
    assert not {f"T-slow-{n}" for n in range(SLOW_BODIES)} & stored_task_ids(database_url)
    assert "Traceback" not in server.log


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_more_slow_bodies_than_threads(
    fault_server: Callable[..., FaultServer], database_url: str, flavour: str
) -> None:
    # Two threads per worker, three slow bodies per worker on average.
    server = fault_server(flavour, database_url, {**EDGE, "APP_SERVER__THREADS": "2"})
    create_project(server)
    bodies = [slow_body(server, f"T-many-{n}") for n in range(6)]
    for client in bodies:
        client.start()
    for client in bodies:
        assert client.started_sending.wait(DEADLINE)

    if flavour == "asgi":
        # The bodies are read on the event loop: the pool threads stay free for everyone else.
        for _ in range(5):
            probe(server)
        assert all(client.is_alive() for client in bodies), "the API was answered only once the slow bodies ended"
    for client in bodies:
        problem(client.answer(), 408)
    # Under WSGI each slow body held a thread until its bound: once they are cut off, all is served again.
    probe(server)
    assert not {f"T-many-{n}" for n in range(6)} & stored_task_ids(database_url)
    assert "Traceback" not in server.log
