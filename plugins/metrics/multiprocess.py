"""prometheus-client's multiprocess mode, with the bookkeeping it leaves to its user.

Under ``taskman serve`` every worker writes its values to its own
memory-mapped files in one folder (``$PROMETHEUS_MULTIPROC_DIR``):
``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_<mode>_<pid>.db``...
A scrape, in whichever worker, merges every file, so counts are exact
whichever worker answers.  prometheus-client leaves the rest to us:

* the folder is emptied when the server starts (:func:`prepare_directory`);
* a worker that stops folds its counters, histograms and summaries (and
  its ``sum``/``min``/``max``/``mostrecent`` gauges) into one
  ``<kind>_merged.db`` file per kind and deletes its own files
  (:func:`retire_process`): counts never go backwards and the folder
  holds the live workers' files plus at most one merged file per kind;
* a worker killed before it could do so is retired for it by the next
  worker that starts or scrapes (:func:`reap_dead_processes`);
* ``live*`` gauges of a gone worker are dropped
  (prometheus-client's ``mark_process_dead``), so are ``all`` gauges: the
  value of a process that no longer exists is not a current value.

Merging rewrites a merged file while other workers may be scraping: an
exclusive ``flock`` on ``<folder>/.lock`` covers the merge and a shared one
every scrape, so a scrape sees each count exactly once.  Plain Python:
nothing here knows Falcon.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

log = logging.getLogger("taskman.metrics")

#: The variable prometheus-client reads; ``taskman serve`` exports it to its workers.
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

LOCK_FILE = ".lock"
MERGED = "merged"

#: Kinds whose values add up across processes.
_SUMMED_KINDS = frozenset({"counter", "histogram", "summary"})
#: Gauge modes that outlive their process, and how two values combine.
_KEPT_GAUGE_MODES = frozenset({"sum", "min", "max", "mostrecent"})

# prometheus-client leaves these unannotated: call them through ``Any``.
_MmapedDict: Any = MmapedDict
_mark_process_dead: Any = mark_process_dead
_merge_files: Any = MultiProcessCollector.merge

_FILE = re.compile(r"^(?P<kind>[a-z]+)(?:_(?P<mode>[a-z]+))?_(?P<owner>\d+|merged)\.db$")


@attrs.frozen
class MetricFile:
    """One ``.db`` file of the folder: its kind, gauge mode, and owning pid (``None`` for a merged file)."""

    path: Path
    kind: str
    mode: str
    pid: int | None

    @property
    def prefix(self) -> str:
        return f"{self.kind}_{self.mode}" if self.kind == "gauge" else self.kind

    @property
    def mergeable(self) -> bool:
        """Whether its values outlive the process (else they are dropped with it)."""
        return self.kind in _SUMMED_KINDS or (self.kind == "gauge" and self.mode in _KEPT_GAUGE_MODES)


def parse_file(path: Path) -> MetricFile | None:
    """Recognise prometheus-client's file names, and ours (``<prefix>_merged.db``)."""
    match = _FILE.match(path.name)
    if match is None:
        return None
    kind, mode, owner = match["kind"], match["mode"] or "", match["owner"]
    if (kind == "gauge") != bool(mode):
        return None
    return MetricFile(path, kind, mode, None if owner == MERGED else int(owner))


def metric_files(directory: Path) -> list[MetricFile]:
    found = (parse_file(p) for p in directory.glob("*.db"))
    return [f for f in found if f is not None]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts: its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def directory_lock(directory: Path, *, exclusive: bool) -> Iterator[None]:
    """``flock`` the folder: exclusive to rewrite merged files, shared to read them all."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def prepare_directory(directory: str | os.PathLike[str]) -> Path:
    """Create the folder, or empty it of a previous run's files; return its absolute path."""
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    with directory_lock(path, exclusive=True):
        for stale in [*path.glob("*.db"), *path.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
    return path


def _combine(prefix: str, old: tuple[float, float], new: tuple[float, float]) -> tuple[float, float]:
    (old_value, old_ts), (new_value, new_ts) = old, new
    if prefix == "gauge_min":
        return (min(old_value, new_value), max(old_ts, new_ts))
    if prefix == "gauge_max":
        return (max(old_value, new_value), max(old_ts, new_ts))
    if prefix == "gauge_mostrecent":
        return new if new_ts >= old_ts else old
    return (old_value + new_value, max(old_ts, new_ts))  # counters, histograms, summaries, gauge_sum


def _merge_into(directory: Path, prefix: str, sources: Iterable[Path]) -> None:
    target = directory / f"{prefix}_{MERGED}.db"
    values: dict[str, tuple[float, float]] = {}
    for source in [target, *sources] if target.exists() else list(sources):
        for key, value, timestamp, _ in _MmapedDict.read_all_values_from_file(str(source)):
            old = values.get(key)
            values[key] = (value, timestamp) if old is None else _combine(prefix, old, (value, timestamp))
    tmp = directory / f".{prefix}_{MERGED}.{os.getpid()}.tmp"
    out = _MmapedDict(str(tmp))
    try:
        for key, (value, timestamp) in values.items():
            out.write_value(key, value, timestamp)
    finally:
        out.close()
    os.replace(tmp, target)


def _retire_locked(directory: Path, pids: Collection[int]) -> None:
    """Fold the files of ``pids`` into the merged files and delete them; the exclusive lock is held."""
    mine = [f for f in metric_files(directory) if f.pid in pids]
    groups: dict[str, list[Path]] = {}
    for f in mine:
        if f.mergeable:
            groups.setdefault(f.prefix, []).append(f.path)
    for prefix, paths in sorted(groups.items()):
        _merge_into(directory, prefix, paths)
    for pid in pids:
        _mark_process_dead(pid, str(directory))
    for f in mine:
        f.path.unlink(missing_ok=True)


def retire_process(directory: Path, pid: int | None = None) -> None:
    """A worker stops: fold its files into the merged ones and remove them (default: this process)."""
    if not directory.is_dir():  # the serve parent already removed its private folder
        return
    with directory_lock(directory, exclusive=True):
        _retire_locked(directory, [os.getpid() if pid is None else pid])


def reap_dead_processes(directory: Path, alive: Callable[[int], bool] | None = None) -> list[int]:
    """Retire the files of workers that died without retiring themselves (SIGKILL, OOM); return their pids.

    ``alive`` tells whether a pid still runs (default :func:`pid_alive`).
    """
    alive = alive or pid_alive
    me = os.getpid()
    candidates = {f.pid for f in metric_files(directory) if f.pid is not None and f.pid != me}
    if not any(not alive(pid) for pid in candidates):
        return []
    with directory_lock(directory, exclusive=True):
        pids = {f.pid for f in metric_files(directory) if f.pid is not None and f.pid != me}
        dead = sorted(pid for pid in pids if not alive(pid))
        if dead:
            _retire_locked(directory, dead)
    if dead:
        log.info("metrics_reaped_dead_workers", extra={"pids": dead})
    return dead


def live_worker_pids(directory: Path, marker_prefix: str = "gauge_livesum") -> list[int]:
    """Pids of the live processes that write ``marker_prefix`` files (every worker does, from start-up)."""
    pids = {f.pid for f in metric_files(directory) if f.prefix == marker_prefix and f.pid is not None}
    return sorted(pid for pid in pids if pid_alive(pid))


class FilesCollector:
    """Every worker's values, merged: prometheus-client's ``MultiProcessCollector`` under the folder's lock.

    Dead workers are retired first, so their counts move to the merged files
    instead of lingering as per-pid files.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        reap_dead_processes(self.directory)
        with directory_lock(self.directory, exclusive=False):
            files = [str(p) for p in self.directory.glob("*.db")]
            return list(_merge_files(files, accumulate=True))


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class WorkerProcessCollector:
    """``process_*`` metrics (CPU, memory, file descriptors) of every live worker, labelled with its ``pid``.

    prometheus-client's ``ProcessCollector`` only sees the process that
    serves the scrape; this one reads ``/proc/<pid>`` for each worker found
    in the folder, at scrape time.
    """

    def __init__(self, directory: Path, proc: str = "/proc") -> None:
        self.directory = directory
        self.proc = proc

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        pids = set(live_worker_pids(self.directory)) | {os.getpid()}
        for pid in sorted(pids):
            collector = ProcessCollector(pid=_constant(pid), proc=self.proc, registry=None)
            for metric in collector.collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(metric.name, metric.documentation, metric.type)
                for sample in metric.samples:
                    family.samples.append(Sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value))
        return list(families.values())
