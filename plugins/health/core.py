"""The health plugin's plain-Python part: checks, grading, aggregation and the probe state.

Nothing here knows Falcon or the taskman app.  :class:`CheckRunner` runs the
named checks in worker threads with a deadline; :class:`HealthState` adds
what the process knows about itself (start-up completed, draining) and
builds the :class:`Report` of each probe.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

import attrs

from .signals import DrainOnSignals

log = logging.getLogger("taskman.health")

Status = Literal["healthy", "degraded", "unhealthy"]
HEALTHY: Status = "healthy"
DEGRADED: Status = "degraded"
UNHEALTHY: Status = "unhealthy"
STATUSES: tuple[Status, ...] = get_args(Status)
_RANK: dict[str, int] = {status: rank for rank, status in enumerate(STATUSES)}

#: A check: a plain callable that returns None, True or a status, and raises (or returns False) when it fails.
CheckFunc = Callable[[], "Status | bool | None"]

#: What replaces ``error`` when details are hidden.
HIDDEN_ERROR = "check failed (details hidden; see the server log)"

#: Pseudo-checks the state reports itself; contributed checks may not use these names.
STARTUP_CHECK = "startup"
SHUTDOWN_CHECK = "shutdown"
RESERVED_NAMES = frozenset({STARTUP_CHECK, SHUTDOWN_CHECK})
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _as_status(value: object) -> Status | None:
    return next((status for status in STATUSES if isinstance(value, str) and value == status), None)


def worst(statuses: Iterable[Status]) -> Status:
    """The worst of ``statuses`` (healthy < degraded < unhealthy); healthy when there are none."""
    return max(statuses, key=_RANK.__getitem__, default=HEALTHY)


def grade_latency(latency_ms: float, degraded_ms: float, unhealthy_ms: float) -> Status:
    """Healthy under ``degraded_ms``, degraded up to ``unhealthy_ms``, unhealthy above it."""
    if latency_ms > unhealthy_ms:
        return UNHEALTHY
    if latency_ms >= degraded_ms:
        return DEGRADED
    return HEALTHY


def http_status(status: Status) -> int:
    """200 for healthy and degraded, 503 for unhealthy."""
    return 503 if status == UNHEALTHY else 200


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: RFC 3339, UTC, milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def healthy_without_checks(timestamp: datetime, duration_ms: float) -> bytes:
    """The JSON of a report with no checks (liveness): a template, the same bytes as ``json.dumps``."""
    return b'{"status":"healthy","timestamp":"%s","checks":{},"duration_ms":%s}' % (
        rfc3339(timestamp).encode(),
        repr(round(duration_ms, 3)).encode(),
    )


@attrs.frozen
class CheckResult:
    """One check's outcome: ``status``, ``latency_ms`` and, when it is unhealthy, ``error``."""

    name: str
    status: Status
    latency_ms: float
    error: str | None = None

    def as_dict(self, show_details: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status, "latency_ms": round(self.latency_ms, 3)}
        if self.error is not None:
            doc["error"] = self.error if show_details else HIDDEN_ERROR
        return doc


@attrs.frozen
class Report:
    """A probe's answer: the aggregated ``status``, every check, when and how long it took."""

    checks: tuple[CheckResult, ...]
    timestamp: datetime
    duration_ms: float

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    @property
    def http_status(self) -> int:
        return http_status(self.status)

    def as_dict(self, show_details: bool = True) -> dict[str, Any]:
        return {
            "status": self.status,
            "timestamp": rfc3339(self.timestamp),
            "checks": {c.name: c.as_dict(show_details) for c in self.checks},
            "duration_ms": round(self.duration_ms, 3),
        }

    def to_json(self, show_details: bool = True) -> bytes:
        """:meth:`as_dict` as compact JSON; without checks (liveness) a cheap template, same bytes."""
        if not self.checks:
            return healthy_without_checks(self.timestamp, self.duration_ms)
        return json.dumps(self.as_dict(show_details), separators=(",", ":")).encode()


class CheckContributionError(ValueError):
    """A plugin contributed a malformed, reserved or duplicate check; the message names the plugin."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


def collect_checks(contributions: Iterable[tuple[str, Any]]) -> dict[str, CheckFunc]:
    """Merge ``(plugin, result)`` pairs of ``taskman_health_checks`` into ``{name: check}``.

    A result is None, a mapping ``{name: check}`` or an iterable of
    ``(name, check)`` pairs.  Names must be unique across plugins.
    """
    checks: dict[str, CheckFunc] = {}
    owners: dict[str, str] = {}
    for plugin, result in contributions:
        if result is None:
            continue
        items = result.items() if isinstance(result, Mapping) else result
        try:
            pairs = list(items)
        except TypeError:
            raise CheckContributionError(
                plugin, f"plugin {plugin!r} returned {result!r}; expected {{name: check}} or [(name, check)]"
            ) from None
        for item in pairs:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise CheckContributionError(plugin, f"plugin {plugin!r} contributed {item!r}; expected (name, check)")
            name, check = item
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise CheckContributionError(
                    plugin, f"plugin {plugin!r} contributed a check named {name!r}; use 1-64 of A-Z a-z 0-9 _ . : -"
                )
            if name in RESERVED_NAMES:
                raise CheckContributionError(
                    plugin, f"plugin {plugin!r} contributed check {name!r}: the name is reserved"
                )
            if not callable(check):
                raise CheckContributionError(
                    plugin, f"plugin {plugin!r} contributed check {name!r}: {check!r} is not callable"
                )
            if name in checks:
                raise CheckContributionError(
                    plugin, f"health check {name!r} is contributed by plugin {owners[name]!r} and plugin {plugin!r}"
                )
            checks[name], owners[name] = check, plugin
    return checks


@attrs.define(eq=False)
class _Run:
    """One execution of a check in its own thread."""

    started: float
    done: threading.Event = attrs.field(factory=threading.Event)
    status: Status = UNHEALTHY
    latency_ms: float = 0.0
    error: str | None = None


class CheckRunner:
    """Run named checks concurrently, each in a daemon thread, all bounded by one deadline.

    A check still running at the deadline is reported unhealthy, "timed out
    after N ms"; its thread is left to finish (Python cannot kill it), and
    until it does, later probes wait on that same run instead of starting
    another, so a hung dependency costs at most one thread per check.
    Concurrent probes share a run in the same way.  ``cleanup`` runs in the
    check's thread after every check (to return its database connection).
    """

    def __init__(
        self,
        checks: Mapping[str, CheckFunc],
        *,
        degraded_ms: float,
        unhealthy_ms: float,
        timeout_ms: float,
        cleanup: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.checks = dict(checks)
        self.degraded_ms = degraded_ms
        self.unhealthy_ms = unhealthy_ms
        self.timeout_ms = timeout_ms
        self._cleanup = cleanup
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, _Run] = {}
        self._last: dict[str, Status] = {}

    def running(self) -> list[str]:
        """Names of the checks whose thread is still running."""
        with self._lock:
            return sorted(self._running)

    def run(self) -> tuple[CheckResult, ...]:
        """Run every check (or join its run in progress) and wait at most ``timeout_ms`` in all."""
        deadline = self._clock() + self.timeout_ms / 1000
        runs = [(name, self._start(name, check)) for name, check in self.checks.items()]
        results = []
        for name, run in runs:
            finished = run.done.wait(max(0.0, deadline - self._clock()))
            if finished:
                results.append(CheckResult(name, run.status, run.latency_ms, run.error))
            else:
                elapsed_ms = (self._clock() - run.started) * 1000
                results.append(CheckResult(name, UNHEALTHY, elapsed_ms, f"timed out after {self.timeout_ms:g} ms"))
        self._log_changes(results)
        return tuple(results)

    def _start(self, name: str, check: CheckFunc) -> _Run:
        with self._lock:
            run = self._running.get(name)
            if run is not None:
                return run
            run = self._running[name] = _Run(started=self._clock())
        thread = threading.Thread(target=self._execute, args=(name, check, run), name=f"health-{name}", daemon=True)
        try:
            thread.start()
        except BaseException as exc:  # no thread could be started: report, do not hang
            run.error = f"could not start the check: {type(exc).__name__}: {exc}"
            self._finish(name, run)
        return run

    def _execute(self, name: str, check: CheckFunc, run: _Run) -> None:
        started = self._clock()
        returned: object = None
        try:
            returned = check()
        except BaseException as exc:  # a check's failure, whatever it is, is its result
            run.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            run.latency_ms = (self._clock() - started) * 1000
            try:
                if self._cleanup is not None:
                    self._cleanup()
            except Exception as exc:
                log.warning("health_check_cleanup_failed", extra={"check": name, "error": repr(exc)})
            if run.error is None:
                run.status, run.error = self._grade(returned, run.latency_ms)
            self._finish(name, run)

    def _grade(self, returned: object, latency_ms: float) -> tuple[Status, str | None]:
        if returned is None or returned is True:
            reported: Status | None = HEALTHY
        elif returned is False:
            return UNHEALTHY, "the check returned False"
        else:
            reported = _as_status(returned)
        if reported is None:
            return UNHEALTHY, f"returned {returned!r}; a check returns None, a bool or one of {', '.join(STATUSES)}"
        status = worst([grade_latency(latency_ms, self.degraded_ms, self.unhealthy_ms), reported])
        if status != UNHEALTHY:
            return status, None
        if reported == UNHEALTHY:
            return UNHEALTHY, "the check reported unhealthy"
        return UNHEALTHY, f"latency {latency_ms:.1f} ms above {self.unhealthy_ms:g} ms"

    def _finish(self, name: str, run: _Run) -> None:
        with self._lock:
            if self._running.get(name) is run:
                del self._running[name]
        run.done.set()

    def _log_changes(self, results: Iterable[CheckResult]) -> None:
        """Log a check's status when it changes (probes come every few seconds: no log flood)."""
        for result in results:
            with self._lock:
                previous = self._last.get(result.name)
                self._last[result.name] = result.status
            if previous == result.status or (previous is None and result.status == HEALTHY):
                continue
            log.log(
                logging.INFO if result.status == HEALTHY else logging.WARNING,
                "health_check_status_changed",
                extra={
                    "check": result.name,
                    "status": result.status,
                    "previous": previous,
                    "latency_ms": round(result.latency_ms, 3),
                    "error": result.error,
                },
            )


class RuntimeLike(Protocol):
    """What :class:`HealthState` reads of the app's runtime (``app.taskman``)."""

    @property
    def state(self) -> str: ...

    @property
    def pid(self) -> int | None: ...


#: Runtime states in which start-up has completed in this process.
_STARTED_STATES = frozenset({"started", "stopping", "stopped"})
_STOPPING_STATES = frozenset({"stopping", "stopped"})


class HealthState:
    """The probes' shared state: start-up tracking, draining, the checks and their settings.

    Created with the app (so the start-up probe says "not yet" from the
    very beginning, never "started" on a first probe), told by the start-up
    hook when start-up completed and by a signal or the shut-down hook when
    the process starts draining.  Draining never ends: a process that
    began shutting down does not become ready again.
    """

    def __init__(
        self,
        *,
        degraded_ms: float = 100,
        unhealthy_ms: float = 1000,
        timeout_ms: float = 1000,
        show_details: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.degraded_ms = degraded_ms
        self.unhealthy_ms = unhealthy_ms
        self.timeout_ms = timeout_ms
        self.show_details = show_details
        self._clock = clock
        self._now = now
        self.created = clock()
        self.runner = CheckRunner({}, degraded_ms=degraded_ms, unhealthy_ms=unhealthy_ms, timeout_ms=timeout_ms)
        self._runtime: weakref.ref[Any] | None = None
        self._started_pid: int | None = None
        self._started_at: float | None = None
        # Written from a signal handler: plain attribute stores only, no locks.
        self.draining_reason: str | None = None
        self._signals: DrainOnSignals | None = None

    # -- lifecycle ------------------------------------------------------------

    def bind(self, runtime: RuntimeLike) -> None:
        """Follow ``runtime``'s state (weakly: the state must not keep an app alive)."""
        self._runtime = weakref.ref(runtime)

    @property
    def runtime(self) -> RuntimeLike | None:
        return self._runtime() if self._runtime is not None else None

    def set_checks(self, checks: Mapping[str, CheckFunc], cleanup: Callable[[], None] | None = None) -> None:
        self.runner = CheckRunner(
            checks,
            degraded_ms=self.degraded_ms,
            unhealthy_ms=self.unhealthy_ms,
            timeout_ms=self.timeout_ms,
            cleanup=cleanup,
            clock=self._clock,
        )

    def mark_started(self) -> None:
        """Start-up (migrations and every start-up hook) completed in this process."""
        self._started_pid = os.getpid()
        self._started_at = self._clock()

    def mark_draining(self, reason: str) -> None:
        """Shutdown began: readiness fails from now on; safe to call from a signal handler."""
        if self.draining_reason is None:
            self.draining_reason = reason

    def watch_signals(self) -> bool:
        """Start draining at SIGTERM/SIGINT, before the server's own handler runs; False off the main thread."""
        self.unwatch_signals()
        drain = DrainOnSignals(lambda signum: self.mark_draining(f"{signal.Signals(signum).name} received"))
        if not drain.install():
            return False
        self._signals = drain
        return True

    def unwatch_signals(self) -> None:
        """Put the previous signal handlers back (where ours is still the current one)."""
        drain, self._signals = self._signals, None
        if drain is not None:
            drain.uninstall()

    @property
    def started(self) -> bool:
        """Start-up completed in this process (and the runtime, if bound, agrees)."""
        if self._started_pid != os.getpid():
            return False
        runtime = self.runtime
        return runtime is None or (runtime.state in _STARTED_STATES and runtime.pid == os.getpid())

    @property
    def draining(self) -> bool:
        runtime = self.runtime
        return self.draining_reason is not None or (runtime is not None and runtime.state in _STOPPING_STATES)

    @property
    def startup_ms(self) -> float | None:
        """Milliseconds from the creation of this state (the app) to the end of start-up."""
        return None if self._started_at is None else (self._started_at - self.created) * 1000

    # -- probes ---------------------------------------------------------------

    def liveness(self) -> Report:
        """The process answers: always healthy, no checks, no I/O."""
        return self._report(tuple)

    def liveness_json(self) -> bytes:
        """``liveness().to_json()`` without building the report: the liveness probe is the hot one."""
        timestamp = self._now()
        begin = self._clock()
        return healthy_without_checks(timestamp, (self._clock() - begin) * 1000)

    def startup(self) -> Report:
        """Healthy once start-up completed, unhealthy before."""
        return self._report(lambda: (self._startup_check(),))

    def readiness(self) -> Report:
        """Unhealthy before start-up completed and once draining; otherwise the checks decide."""

        def checks() -> tuple[CheckResult, ...]:
            if not self.started:
                return (self._startup_check(),)
            if self.draining:
                reason = self.draining_reason or "the app is stopping"
                return (CheckResult(SHUTDOWN_CHECK, UNHEALTHY, 0.0, f"draining: {reason}"),)
            return self.runner.run()

        return self._report(checks)

    def _startup_check(self) -> CheckResult:
        if self.started:
            return CheckResult(STARTUP_CHECK, HEALTHY, 0.0)
        return CheckResult(STARTUP_CHECK, UNHEALTHY, 0.0, "start-up has not completed")

    def _report(self, checks: Callable[[], tuple[CheckResult, ...]]) -> Report:
        timestamp = self._now()
        begin = self._clock()
        results = checks()
        return Report(results, timestamp, (self._clock() - begin) * 1000)
