"""health: liveness, readiness and start-up probes, and a hook for other plugins' checks.

``GET /health/live`` (the process answers), ``GET /health/ready`` (start-up
completed, not draining, every check passes), ``GET /health/startup`` and
the deprecated ``GET /health``.  The work is plain Python in :mod:`.core`
(checks, grading, aggregation, state) and :mod:`.signals` (draining at
SIGTERM); :mod:`.resources` is the Falcon glue.  Other plugins add checks
with the ``taskman_health_checks(config)`` hook (:mod:`.hookspecs`);
this plugin contributes ``database``.  See docs/health.md.

Routes are built (``taskman_routes``) before the app exists, and the app is
only known at start-up: the two meet through :class:`_States`, which pairs
the :class:`~.core.HealthState` made for a config with the app started
from that config.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import weakref
from typing import Any

from taskman import db as taskman_db
from taskman import hookimpl
from taskman.config import plugin_settings

from . import hookspecs, resources
from .checks import DatabaseCheck
from .core import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    CheckContributionError,
    CheckFunc,
    CheckResult,
    CheckRunner,
    HealthState,
    Report,
    Status,
    collect_checks,
    grade_latency,
    worst,
)
from .settings import HealthSettings

__all__ = [
    "DEGRADED",
    "HEALTHY",
    "UNHEALTHY",
    "CheckContributionError",
    "CheckFunc",
    "CheckResult",
    "CheckRunner",
    "DatabaseCheck",
    "HealthSettings",
    "HealthState",
    "Report",
    "Status",
    "collect_checks",
    "grade_latency",
    "state_of",
    "worst",
]

SECTION = "health"

#: The hook this plugin adds (registered by the core when it loads the plugin).
taskman_hookspecs = hookspecs

log = logging.getLogger("taskman.health")

#: The runtime whose start-up is collecting checks (read by this plugin's own taskman_health_checks).
_collecting_for: contextvars.ContextVar[Any] = contextvars.ContextVar("taskman_health_runtime", default=None)


class _States:
    """Each :class:`HealthState` by the config its routes were built from; weak all round.

    ``Config`` is frozen but unhashable, so entries are matched by identity.
    An app is matched with the state already bound to its runtime, else with
    the oldest unbound state of its config (apps are created then started,
    one after another).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[weakref.ref[Any], weakref.ref[HealthState]]] = []
        # Values are weak too: a strong one could keep its own key (the app) alive.
        self._by_app: weakref.WeakKeyDictionary[Any, weakref.ref[HealthState]] = weakref.WeakKeyDictionary()

    def add(self, config: Any, state: HealthState) -> None:
        with self._lock:
            self._entries = [(c, s) for c, s in self._entries if c() is not None and s() is not None]
            self._entries.append((weakref.ref(config), weakref.ref(state)))

    def of(self, app: Any) -> HealthState | None:
        runtime = getattr(app, "taskman", None)
        if runtime is None:
            return None
        with self._lock:
            bound = self._by_app.get(app)
            state = bound() if bound is not None else None
            if state is not None:
                return state
            candidates = [s for c, ref in self._entries if c() is runtime.config and (s := ref()) is not None]
            state = next((s for s in candidates if s.runtime is runtime), None) or next(
                (s for s in candidates if s.runtime is None), None
            )
            if state is not None:
                state.bind(runtime)
                self._by_app[app] = weakref.ref(state)
            return state


_states = _States()


def state_of(app: Any) -> HealthState | None:
    """The health state serving ``app``'s probes (None if the health routes were not built for it)."""
    return _states.of(app)


def settings_of(config: Any) -> HealthSettings:
    return plugin_settings(config, SECTION, HealthSettings)


def _release_connections(db: Any) -> None:
    """Return the check thread's connections: the app's database and the shared proxy's."""
    taskman_db.release_connection(db)
    taskman_db.release_connection(taskman_db.database)


# -- hooks --------------------------------------------------------------------


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, HealthSettings)


@hookimpl
def taskman_routes(config: Any) -> list[tuple[str, object]]:
    settings = settings_of(config)
    state = HealthState(
        degraded_ms=settings.degraded_ms,
        unhealthy_ms=settings.unhealthy_ms,
        timeout_ms=settings.timeout_ms,
        show_details=settings.details_shown(config.environment),
    )
    _states.add(config, state)
    return resources.routes(state, settings.details_for_tokens(config.environment))


@hookimpl(trylast=True)
def taskman_startup(app: Any, config: Any) -> None:
    """After every other start-up hook: collect the checks, chain the signal handlers, mark started."""
    state = _states.of(app)
    if state is None:
        log.warning("health_state_missing", extra={"reason": "the health routes were not built for this app"})
        return
    runtime = app.taskman
    token = _collecting_for.set(runtime)
    try:
        contributions = runtime.plugins.call_each("taskman_health_checks", config=config)
    finally:
        _collecting_for.reset(token)
    checks = collect_checks(contributions)
    database = runtime.database  # not the runtime: the state must not keep the app alive
    state.set_checks(checks, cleanup=lambda: _release_connections(database))
    watching = state.watch_signals()
    state.mark_started()
    log.info("health_started", extra={"checks": sorted(checks), "signals": watching})


@hookimpl(tryfirst=True)
def taskman_shutdown(app: Any, config: Any) -> None:
    """Before every other shut-down hook: readiness fails from now on; restore the signal handlers."""
    state = _states.of(app)
    if state is None:
        return
    state.mark_draining("the app is stopping")
    state.unwatch_signals()


@hookimpl
def taskman_health_checks(config: Any) -> dict[str, CheckFunc]:
    """The database layer's check: one round trip on the app's database."""
    runtime = _collecting_for.get()
    db = runtime.database if runtime is not None else taskman_db.database
    return {"database": DatabaseCheck(db)}


@hookimpl
def taskman_access(config: Any) -> dict[str, str]:
    """For the auth plugin: probes need no token; readiness shows details to a token holder (``show_details``)."""
    return {
        resources.LIVE_PATH: "public",
        resources.STARTUP_PATH: "public",
        resources.READY_PATH: "optional",
        resources.LEGACY_PATH: "optional",
    }


@hookimpl
def taskman_openapi(config: Any) -> dict[str, Any]:
    """The probes' paths and schemas, for the openapi plugin (never called while it is disabled)."""
    from . import openapi

    return openapi.fragment()
