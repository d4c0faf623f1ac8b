"""Bounded load against one URL: wrk when it is installed, else a small Python load generator.

Both return a :class:`LoadResult`.  :func:`parse_wrk` is a pure function
over wrk's text output (``--latency``), tested without running wrk.
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cases import Request

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    #: Non-2xx/3xx answers plus connect, write and timeout errors (read errors are closed connections).
    errors: int
    tool: str


class LoadError(RuntimeError):
    """The load generator failed or produced output that could not be read."""


def to_ms(value: str, unit: str) -> float:
    """``("345.00", "us")`` -> ``0.345``."""
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str) -> LoadResult:
    """Read requests, rate, p50/p99 and errors from ``wrk --latency`` output."""
    rps = _RPS.search(output)
    total = _TOTAL.search(output)
    percentiles = {float(p): to_ms(v, u) for p, v, u in _PERCENTILE.findall(output)}
    if rps is None or total is None or 50.0 not in percentiles or 99.0 not in percentiles:
        raise LoadError(f"unreadable wrk output:\n{output}")
    errors = 0
    non_2xx = _NON_2XX.search(output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    sockets = _SOCKET_ERRORS.search(output)
    if sockets:
        connect, _read, write, timeout = (int(g) for g in sockets.groups())
        errors += connect + write + timeout
    return LoadResult(
        requests=int(total.group(1)),
        duration_s=to_ms(total.group(2), total.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        errors=errors,
        tool="wrk",
    )


def _lua_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def fresh_prefix() -> str:
    """A prefix for the fresh values of one load run: unique across runs, rounds and servers."""
    return uuid.uuid4().hex[:12]


def _lua_concat(text: str, token: str) -> str:
    """A Lua expression: ``text`` with every ``token`` replaced by the Lua variable ``fresh``."""
    return " .. fresh .. ".join(_lua_string(part) for part in text.split(token))


def wrk_script(request: Request, prefix: str | None = None) -> str | None:
    """A wrk Lua script for anything but a plain GET; None when none is needed.

    With a ``fresh`` token, a ``request()`` function replaces it in path and
    body by ``<prefix>-<thread>-<n>``, n counting the thread's requests, so
    every request creates a record of its own.
    """
    if request.method == "GET" and request.body is None and not request.headers and request.fresh is None:
        return None
    lines = [f"wrk.method = {_lua_string(request.method)}"]
    if request.body is not None and request.fresh is None:
        lines.append(f"wrk.body = {_lua_string(request.body)}")
    for name, value in request.headers:
        # Spaces inside the index: Lua reads "[[[" as the start of a long string, not an index.
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    if request.fresh is not None:
        token = request.fresh
        body = "nil" if request.body is None else _lua_concat(request.body, token)
        lines += [
            f"local prefix = {_lua_string(prefix or fresh_prefix())}",
            "local threads = 0",
            "function setup(thread)",
            '  thread:set("thread_index", threads)',
            "  threads = threads + 1",
            "end",
            "local count = 0",
            "function request()",
            "  count = count + 1",
            '  local fresh = prefix .. "-" .. tostring(thread_index or 0) .. "-" .. string.format("%d", count)',
            f"  return wrk.format(nil, {_lua_concat(request.path, token)}, nil, {body})",
            "end",
        ]
    return "\n".join(lines) + "\n"


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, request: Request, *, duration: float, connections: int, threads: int = 1) -> LoadResult:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    with tempfile.TemporaryDirectory(prefix="taskman-bench-wrk-") as folder:
        script = wrk_script(request, fresh_prefix())
        if script is not None:
            path = Path(folder) / "request.lua"
            path.write_text(script)
            command += ["-s", str(path)]
        command.append(url + request.path)
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=False)
    # wrk reports a script it cannot load on stderr and then runs plain GETs, exiting 0: that is a failure too.
    if done.returncode != 0 or done.stderr.strip():
        raise LoadError(f"{' '.join(command)} exited {done.returncode}: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# -- the Python load generator ---------------------------------------------------

#: Seconds the load processes get to start before the common window opens.
SPAWN_ALLOWANCE = 2.0


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``fraction`` in 0..1)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


def _drive(
    host: str, port: int, request: Request, start_at: float, deadline: float, prefix: str = ""
) -> tuple[list[float], int]:
    """One connection's loop (in a process of its own): latencies in ms and errors.

    Every process waits for ``start_at`` (CLOCK_MONOTONIC is system-wide), so
    the window is the same for all and process start-up stays out of it.
    A request with a ``fresh`` token gets ``<prefix>-<n>`` in its place.
    """
    time.sleep(max(0.0, start_at - time.monotonic()))
    latencies: list[float] = []
    errors = 0
    body = request.body.encode() if request.body is not None else None
    path = request.path
    headers = dict(request.headers)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    count = 0
    while time.monotonic() < deadline:
        if request.fresh is not None:
            count += 1
            this = request.with_fresh(f"{prefix}-{count}")
            path, body = this.path, this.body.encode() if this.body is not None else None
        started = time.perf_counter()
        try:
            connection.request(request.method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=5)
            continue
        latencies.append((time.perf_counter() - started) * 1000.0)
        if response.status >= 400:
            errors += 1
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=5)
    connection.close()
    return latencies, errors


def run_python(host: str, port: int, request: Request, *, duration: float, connections: int) -> LoadResult:
    """``connections`` processes, one keep-alive connection each, for ``duration`` seconds."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(connections) as pool:
        start_at = time.monotonic() + SPAWN_ALLOWANCE
        deadline = start_at + duration
        prefix = fresh_prefix()
        jobs = [
            pool.apply_async(_drive, (host, port, request, start_at, deadline, f"{prefix}-{index}"))
            for index in range(connections)
        ]
        outcomes = [job.get(timeout=SPAWN_ALLOWANCE + duration + 60) for job in jobs]
    latencies = sorted(value for values, _ in outcomes for value in values)
    if not latencies:
        raise LoadError("the Python load generator completed no request")
    return LoadResult(
        requests=len(latencies),
        duration_s=duration,
        rps=len(latencies) / duration,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        errors=sum(errors for _, errors in outcomes),
        tool="python",
    )
