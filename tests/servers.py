"""Real ``taskman serve`` processes for end-to-end tests.

A :class:`ServerLauncher` starts each server in a process group of its own
and kills every group it started at teardown, so a failing test never
leaves a server behind.  Each launcher gives its servers a private
``XDG_RUNTIME_DIR``: gunicorn >= 25.1 opens a control socket there (or in
``~/.gunicorn``), and two gunicorns sharing one path take it from each other.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from tests.helpers import free_port, subprocess_env, taskman_command

BOOT_DEADLINE = 30.0
EXIT_DEADLINE = 30.0


@attrs.define
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class ServerProcess:
    """One ``taskman serve`` process group listening on ``127.0.0.1:port``."""

    proc: subprocess.Popen[bytes]
    port: int
    log_file: Path

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def request(
        self, method: str, path: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = {"Connection": "close", **(headers or {})}
            data = None
            if json_body is not None:
                data = json.dumps(json_body).encode()
                sent["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def wait_until(
        self, what: str, ready: Callable[[], bool], deadline: float = BOOT_DEADLINE, *, poll: float = 0.1
    ) -> None:
        """Poll ``ready`` until it holds; fail early if the server died, or at the deadline."""
        end = time.monotonic() + deadline
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} while waiting for {what}:\n{self.log}")
            if time.monotonic() > end:
                pytest.fail(f"timed out after {deadline}s waiting for {what}:\n{self.log}")
            time.sleep(poll)

    def wait_for_http(self, path: str, status: int) -> Reply:
        got: list[Reply] = []

        def answers() -> bool:
            try:
                got.append(self.get(path))
            except OSError:  # not listening yet, or no worker accepting yet
                return False
            return got[-1].status == status

        self.wait_until(f"GET {path} -> {status}", answers)
        return got[-1]

    def workers(self) -> set[int]:
        """The serve parent's worker processes (not multiprocessing's resource tracker)."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid and b"resource_tracker" not in cmdline:
                found.add(int(stat.parent.name))
        return found

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, group: bool = False) -> int:
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

    def wait_for_group_exit(self) -> None:
        end = time.monotonic() + EXIT_DEADLINE
        while not self.group_is_gone():
            if time.monotonic() > end:
                pytest.fail(f"worker processes outlived the serve parent:\n{self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=EXIT_DEADLINE)


S = TypeVar("S", bound=ServerProcess)


class ServerLauncher:
    """Starts ``taskman serve`` processes for one test and kills them all at :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runtime_dir = folder / "xdg-runtime"
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        self.started: list[ServerProcess] = []

    def start(
        self,
        args: Sequence[str],
        *,
        pythonpath: Sequence[Path],
        env: Mapping[str, str],
        factory: Callable[[subprocess.Popen[bytes], int, Path], S] = ServerProcess,  # type: ignore[assignment]
    ) -> S:
        """Run ``taskman serve ARGS --port <free port>`` with ``env`` over the test's environment."""
        port = free_port()
        command = [*taskman_command(), "serve", *args, "--port", str(port)]
        return self.launch(command, port, pythonpath=pythonpath, env=env, factory=factory)

    def launch(
        self,
        command: Sequence[str],
        port: int,
        *,
        pythonpath: Sequence[Path] = (),
        env: Mapping[str, str],
        factory: Callable[[subprocess.Popen[bytes], int, Path], S] = ServerProcess,  # type: ignore[assignment]
    ) -> S:
        """Run any server ``command`` that will listen on ``port``, in a process group of its own."""
        log_file = self.folder / f"server-{len(self.started)}.log"
        environment = subprocess_env(
            pythonpath, {"PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(self.runtime_dir), **env}
        )
        with log_file.open("wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=self.folder,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = factory(proc, port, log_file)
        self.started.append(server)
        return server

    def close(self) -> None:
        for server in self.started:
            server.kill()
