"""gunicorn settings for taskman's WSGI app: ``gunicorn --config deploy/gunicorn.conf.py taskman.wsgi:app``.

Bind address and worker count come from taskman's own ``[server]``
settings (``APP_SERVER__*`` or taskman.toml), and so does everything
``taskman serve --wsgi`` decides: the worker model (taskman's hardened
threaded worker, its threads and keep-alive), the graceful timeout, the
trusted proxies, and the request-line and header limits derived from the
plugins' own (``taskman.servers.gunicorn_settings``, one function for
both); a bad value stops the arbiter with one line.  The arbiter runs the
plugins' ``taskman_serve`` hooks before it forks, as ``taskman serve`` does
(the metrics plugin empties and exports the shared multiprocess folder
there).  See docs/deploy.md and docs/security.md.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from taskman_plugins.metrics.multiprocess import retire_process
from taskman_plugins.metrics.registry import multiprocess_directory

from taskman import StartupError, create_app
from taskman.config import ConfigError, load_config
from taskman.plugins import PluginError
from taskman.servers import check_thread_pool, gunicorn_settings, server_options

#: Cap of the CPU-derived worker count: every worker holds its own memory and database pool.
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
    """gunicorn's advice, two workers per CPU plus one, capped."""
    return min(2 * cpus + 1, MAX_DEFAULT_WORKERS)


try:
    _config = load_config()
    # Built as every worker builds it (the one bootstrap path): every check `taskman serve` runs, runs here.
    _runtime = create_app(_config).taskman
    check_thread_pool(_config, "wsgi")
    _options = server_options(_runtime.plugins, _config, "wsgi")
except ConfigError as exc:
    # SystemExit passes through gunicorn's config loader, which would print a traceback for anything else.
    sys.exit(f"taskman: error: invalid configuration: {exc}")
except (PluginError, StartupError) as exc:
    sys.exit(f"taskman: error: {exc}")

_server = _config.server

bind = f"{_server.host}:{_server.port}"
workers = _server.workers if "server.workers" in _config.sources else default_workers(available_cpus())
# worker_class, threads, keepalive, graceful_timeout, timeout, forwarded_allow_ips and the
# limit_request_* settings: exactly what `taskman serve --wsgi` runs with.
globals().update(gunicorn_settings(_server, _options))
accesslog = None  # the logging plugin writes one access line per request
proc_name = "taskman"
# gunicorn >= 25.1 opens a control socket in the home folder: not writable on a read-only root filesystem.
control_socket_disable = True
# The workers' heartbeat files: on tmpfs, as a disk-backed /tmp can stall them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def on_starting(server: Any) -> None:
    """In the arbiter, before the first fork: the plugins prepare the serving process, as under ``taskman serve``."""
    try:
        _runtime.plugins.serve(_config, server.num_workers)
    finally:
        _runtime.database.close_all()


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, once a worker is gone: fold its metric files into the merged ones.

    A worker that stops cleanly has done it itself; one killed (timeout,
    out of memory) has not, and its counts must not wait for the next scrape.
    """
    directory = multiprocess_directory()
    if directory is not None:
        retire_process(directory, worker.pid)
