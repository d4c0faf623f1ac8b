"""What a result file says about the machine, and the memory of server processes (Linux ``/proc``)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("taskman", "falcon", "uvicorn", "gunicorn", "structlog", "pluggy", "peewee", "prometheus-client")


def _first_line(command: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=cwd, check=False)
    except OSError:
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if done.returncode == 0 and text else None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def describe(repo: Path) -> dict[str, Any]:
    """The machine, the software and the source tree a run measured."""
    status = _first_line(["git", "status", "--porcelain", "--untracked-files=no"], repo)
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_total_mb": memory_total_mb(),
        "load_average_at_start": load_average(),
        "wrk": _first_line(["wrk", "--version"]),
        "packages": versions(),
        "git_commit": _first_line(["git", "rev-parse", "HEAD"], repo),
        "git_dirty": status is not None,
    }


# -- memory ------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmHWM``: peak RSS, ``VmRSS``: current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the ppid follows the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def worker_pids(server_pid: int) -> list[int]:
    """gunicorn's workers are the children of its arbiter; one-worker uvicorn serves in the process itself."""
    return children(server_pid) or [server_pid]


def peak_rss_mb(server_pid: int) -> float | None:
    """The largest peak RSS among the server's workers, in MB."""
    peaks = [kb for pid in worker_pids(server_pid) if (kb := status_kb(pid, "VmHWM")) is not None]
    return max(peaks) / 1024 if peaks else None
