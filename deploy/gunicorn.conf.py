"""gunicorn settings for taskman's WSGI app: ``gunicorn --config deploy/gunicorn.conf.py taskman.wsgi:app``.

Bind address, worker count and graceful timeout come from taskman's own
``[server]`` settings (``APP_SERVER__*`` or taskman.toml), as for
``taskman serve --wsgi``; a bad value stops the arbiter with one line.  The
HTTP limits live here: only the server sees a request before it is parsed.
The arbiter runs the plugins' ``taskman_serve`` hooks before it forks, as
``taskman serve`` does (the metrics plugin empties and exports the shared
multiprocess folder there).  See docs/deploy.md.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from taskman_plugins.metrics.multiprocess import retire_process
from taskman_plugins.metrics.registry import multiprocess_directory

from taskman.config import ConfigError, load_config
from taskman import create_app

#: Cap of the CPU-derived worker count: every sync worker holds its own memory and database pool.
MAX_DEFAULT_WORKERS = 8

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its CPU affinity, lowered by a cgroup v2 quota (a container's CPU limit)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        limit = math.ceil(int(quota) / int(period))
    except (OSError, ValueError):  # no cgroup v2, or "max": no quota
        return cpus
    return max(1, min(cpus, limit))


def default_workers(cpus: int) -> int:
    """gunicorn's advice for sync workers, two per CPU plus one, capped."""
    return min(2 * cpus + 1, MAX_DEFAULT_WORKERS)


try:
    _config = load_config()
except ConfigError as exc:
    # SystemExit passes through gunicorn's config loader, which would print a traceback for anything else.
    sys.exit(f"taskman: error: invalid configuration: {exc}")

_server = _config.server

bind = f"{_server.host}:{_server.port}"
workers = _server.workers if "server.workers" in _config.sources else default_workers(available_cpus())
worker_class = "sync"  # what `taskman serve --wsgi` runs: one request per process at a time
graceful_timeout = _server.graceful_timeout
# A worker silent for this long is killed and replaced: above the database's
# statement timeout (30 s by default), so a slow query ends as an error response first.
timeout = 60
# Read by keep-alive capable worker classes (gthread); the sync worker closes each connection after its response.
keepalive = 5
# Rejected by gunicorn itself with a plain-text 400, before the app (and its problem+json) sees the request.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
accesslog = None  # the logging plugin writes one access line per request
proc_name = "taskman"
# gunicorn >= 25.1 opens a control socket in the home folder: not writable on a read-only root filesystem.
control_socket_disable = True
# The workers' heartbeat files: on tmpfs, as a disk-backed /tmp can stall them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def on_starting(server: Any) -> None:
    """In the arbiter, before the first fork: the plugins prepare the serving process, as under ``taskman serve``."""
    runtime = create_app(_config).taskman  # built as every worker builds it: the one bootstrap path
    try:
        runtime.plugins.serve(_config, server.num_workers)
    finally:
        runtime.database.close_all()


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, once a worker is gone: fold its metric files into the merged ones.

    A worker that stops cleanly has done it itself; one killed (timeout,
    out of memory) has not, and its counts must not wait for the next scrape.
    """
    directory = multiprocess_directory()
    if directory is not None:
        retire_process(directory, worker.pid)
