"""fault_probe: test instrumentation that holds marked requests and records each worker's life-cycle events.

Loaded into real servers by the fault tests only (as a third-party plugin
found through a ``.dist-info`` folder on the server's ``PYTHONPATH``), so a
test can tell for certain what a worker has seen, instead of guessing from
timing:

* ``startup <pid>`` and ``shutdown <pid>``: its start-up and shut-down hooks ran;
* ``signal <NAME> <pid>``: the worker received SIGTERM or SIGINT.  The handler is
  chained before the health plugin's (health starts last, so it chains in
  front of this one and runs first): when the line is there, the worker is
  already draining;
* ``held <name> <pid>`` / ``released <name> <pid>``: a request sent with
  ``X-Fault-Hold: <name>`` reached the worker's middleware and waits until the
  file ``<hold_dir>/<name>`` exists, so the test knows the request was accepted
  and is in flight when it sends a signal or stops the database.

Each line is one ``O_APPEND`` write, so lines of concurrent workers never mix.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

from taskman import hookimpl

SECTION = "fault_probe"
HOLD_HEADER = "X-Fault-Hold"
#: A held request gives up waiting after this many seconds (a failed test must not hang a worker forever).
HOLD_LIMIT = 60.0
POLL = 0.01
_HOLD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
WATCHED = (signal.SIGTERM, signal.SIGINT)


@attrs.frozen
class FaultProbeSettings:
    """Where to record events and where release files appear; empty strings switch either off."""

    events_file: str = attrs.field(default="", metadata={"help": "file the events are appended to"})
    hold_dir: str = attrs.field(default="", metadata={"help": "folder in which release files appear"})


def record(path: str, line: str) -> None:
    """Append ``line`` to ``path`` in one write (safe from a signal handler and across processes)."""
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


class SignalRecorder:
    """Record each watched signal, then hand it to the handler that was there before."""

    def __init__(self, events_file: str) -> None:
        self.events_file = events_file
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in WATCHED:
            previous = signal.getsignal(sig)
            if previous is None:
                continue
            self.previous[sig] = previous
            signal.signal(sig, self.handle)

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self.previous.items():
            if signal.getsignal(sig) == self.handle:
                signal.signal(sig, previous)
        self.previous.clear()

    def handle(self, signum: int, frame: FrameType | None) -> Any:
        record(self.events_file, f"signal {signal.Signals(signum).name} {os.getpid()}")
        previous = self.previous.get(signum)
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        return None


class HoldMiddleware:
    """Hold a request marked ``X-Fault-Hold: <name>`` until ``<hold_dir>/<name>`` exists."""

    def __init__(self, settings: FaultProbeSettings) -> None:
        self.settings = settings

    def _hold_name(self, req: Any) -> str | None:
        name = req.get_header(HOLD_HEADER)
        if not name or not self.settings.hold_dir or not _HOLD_NAME.fullmatch(name):
            return None
        record(self.settings.events_file, f"held {name} {os.getpid()}")
        return str(name)

    def _released(self, name: str) -> bool:
        return (Path(self.settings.hold_dir) / name).exists()

    def _wait(self, name: str) -> None:
        end = time.monotonic() + HOLD_LIMIT
        while not self._released(name) and time.monotonic() < end:
            time.sleep(POLL)
        record(self.settings.events_file, f"released {name} {os.getpid()}")

    def process_request(self, req: Any, resp: Any) -> None:
        name = self._hold_name(req)
        if name is not None:
            self._wait(name)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        # Held on the default thread pool, where the core runs every sync resource under ASGI:
        # a held request stands for one stuck in sync code (a slow query), as it would be in production.
        name = self._hold_name(req)
        if name is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._wait, name)


_recorders: dict[int, SignalRecorder] = {}


def _settings(config: Any) -> FaultProbeSettings:
    section = getattr(config, "sections", {}).get(SECTION)
    return section if isinstance(section, FaultProbeSettings) else FaultProbeSettings()


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, FaultProbeSettings)


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    return [HoldMiddleware(_settings(config))]


@hookimpl
def taskman_startup(app: Any, config: Any) -> None:
    events_file = _settings(config).events_file
    record(events_file, f"startup {os.getpid()}")
    recorder = SignalRecorder(events_file)
    recorder.install()
    _recorders[id(app)] = recorder


@hookimpl
def taskman_shutdown(app: Any, config: Any) -> None:
    recorder = _recorders.pop(id(app), None)
    if recorder is not None:
        recorder.uninstall()
    record(_settings(config).events_file, f"shutdown {os.getpid()}")
