"""A webhook receiver on loopback for the tests: records what it gets, answers as told, can go down and come back."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
from standardwebhooks import Webhook


@attrs.define
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> Any:
        """The payload, checked as a receiver checks it (raises on a bad signature)."""
        return Webhook(secret).verify(self.body, self.headers)


#: How the receiver answers a request: a status code, or a callable given the request that returns one.
Answer = int | Callable[[Received], int]


class Receiver:
    """``http://127.0.0.1:<port>/hook``; ``answers`` is consumed first, then ``default`` answers."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[Answer] = []
        self.default: Answer = 200
        self.lock = threading.Lock()
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-test-client-port"] = str(self.client_address[1])  # which worker sent it (test_servers)
                got = Received(headers, self.rfile.read(length))
                with receiver.lock:
                    receiver.received.append(got)
                    answer = receiver.answers.pop(0) if receiver.answers else receiver.default
                status = answer(got) if callable(answer) else answer
                if status < 0:  # drop the connection without an answer
                    self.close_connection = True
                    return
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.server_bind()
        server.server_activate()
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go down: connections are refused until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def messages(self) -> list[str]:
        with self.lock:
            return [r.message_id for r in self.received]

    def unique(self) -> list[Received]:
        """What it got, each webhook-id once (at least once means repeats may come), in arrival order."""
        seen: set[str] = set()
        out = []
        with self.lock:
            for r in self.received:
                if r.message_id not in seen:
                    seen.add(r.message_id)
                    out.append(r)
        return out


class Trickler:
    """A receiver that answers one byte at a time, each within a short pause: only a total deadline stops it."""

    def __init__(self, pause: float = 0.2) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.pause = pause
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slow"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 1000:
                    if self.stopped.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.pause)
            except OSError:
                return

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
