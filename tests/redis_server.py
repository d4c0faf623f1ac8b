"""A private, real ``redis-server`` for tests: loopback only, a free port, no persistence, killed at teardown.

A missing ``redis-server`` fails the test with a clear message instead of
skipping it: CI installs it, and a silently skipped Redis test would prove
nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import free_port

EXECUTABLE = "redis-server"
BOOT_DEADLINE = 15.0
EXIT_DEADLINE = 10.0
PORT_ATTEMPTS = 3


def find_redis_server(executable: str = EXECUTABLE) -> str:
    """The path of ``redis-server``; fails the test (never skips) when it is not installed."""
    found = shutil.which(executable)
    if found is None:
        pytest.fail(
            f"{executable!r} was not found on PATH: the Redis tests need a real Redis server "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)",
            pytrace=False,
        )
    return found


def answers_ping(port: int) -> bool:
    """Whether a Redis server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; :meth:`stop` then :meth:`start` keeps the port."""

    def __init__(self, directory: Path, executable: str = EXECUTABLE) -> None:
        self.directory = directory
        self.executable = executable
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self) -> None:
        """Start the server (on a free port the first time, on the same port after :meth:`stop`)."""
        executable = find_redis_server(self.executable)
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = PORT_ATTEMPTS if self.port == 0 else 1
        for _ in range(attempts):
            port = self.port or free_port()
            if self._launch(executable, port):
                self.port = port
                return
        pytest.fail(f"redis-server did not start; its log:\n{self.log}", pytrace=False)

    def _launch(self, executable: str, port: int) -> bool:
        command = [
            executable,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + BOOT_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # port taken meanwhile, or a bad option: see the log
                self.proc = None
                return False
            if answers_ping(port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """Kill the server (SIGTERM, then SIGKILL) and wait for it; a no-op when it is not running."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
