"""health: liveness, readiness and start-up probes, and a hook for other plugins' checks.

``GET /health/live`` (the process answers), ``GET /health/ready`` (start-up
completed, not draining, every check passes), ``GET /health/startup`` and
the deprecated ``GET /health``.  The work is plain Python in :mod:`.core`
(checks, grading, aggregation, state) and :mod:`.signals` (draining at
SIGTERM); :mod:`.resources` is the Falcon glue.  Other plugins add checks
with the ``taskman_health_checks(config)`` hook (:mod:`.hookspecs`);
this plugin contributes ``database``.  See docs/health.md.

Each app's :class:`~.core.HealthState` lives on its runtime; the checks are
collected once the app is built (``taskman_validate``: a reserved or
duplicate name stops start-up and fails ``taskman check``) and run from
start-up on.
"""

from __future__ import annotations

import logging
from typing import Any

import taskman
from taskman import hookimpl

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

#: The hook this plugin adds (registered by the core when it loads the plugin).
taskman_hookspecs = hookspecs

log = logging.getLogger("taskman.health")


class _Checks:
    """The checks collected for one app (by ``taskman_validate``)."""

    found: dict[str, CheckFunc] | None = None


def _state(runtime: taskman.Runtime) -> HealthState:
    def create() -> HealthState:
        settings = runtime.settings(HealthSettings)
        state = HealthState(
            degraded_ms=settings.degraded_ms,
            unhealthy_ms=settings.unhealthy_ms,
            timeout_ms=settings.timeout_ms,
            show_details=settings.details_shown(runtime.config.environment),
        )
        state.bind(runtime)
        return state

    return runtime.component(HealthState, create)


def state_of(app: Any) -> HealthState | None:
    """The health state serving ``app``'s probes (None if the health routes were not built for it)."""
    runtime = getattr(app, "taskman", None)
    return None if runtime is None else runtime.find(HealthState)


def _release_connections(db: Any) -> None:
    """Return the check thread's connections: the app's database and the shared proxy's."""
    taskman.release_connection(db)
    taskman.release_connection(taskman.database)


# -- hooks --------------------------------------------------------------------


@hookimpl
def taskman_settings() -> type:
    return HealthSettings


@hookimpl
def taskman_routes(runtime: taskman.Runtime) -> list[tuple[str, object]]:
    settings = runtime.settings(HealthSettings)
    return resources.routes(_state(runtime), settings.details_for_tokens(runtime.config.environment))


@hookimpl
def taskman_validate(runtime: taskman.Runtime) -> None:
    """Collect every plugin's checks: a malformed, reserved or duplicate one stops start-up naming its plugin."""
    contributions = runtime.plugins.call_each("taskman_health_checks", config=runtime.config)
    try:
        runtime.component(_Checks, _Checks).found = collect_checks(contributions)
    except CheckContributionError as exc:
        raise runtime.plugins.error(exc.plugin, str(exc), "taskman_health_checks") from None


@hookimpl(trylast=True)
def taskman_startup(runtime: taskman.Runtime) -> None:
    """After every other start-up hook: install the checks, chain the signal handlers, mark started."""
    state = _state(runtime)
    checks = runtime.component(_Checks, _Checks).found or {}
    database = runtime.database  # not the runtime: the state must not keep the app alive
    state.set_checks(checks, cleanup=lambda: _release_connections(database))
    watching = state.watch_signals()
    state.mark_started()
    log.info("health_started", extra={"checks": sorted(checks), "signals": watching})


@hookimpl(tryfirst=True)
def taskman_shutdown(runtime: taskman.Runtime) -> None:
    """Before every other shut-down hook: readiness fails from now on; restore the signal handlers."""
    state = runtime.find(HealthState)
    if state is None:
        return
    state.mark_draining("the app is stopping")
    state.unwatch_signals()


@hookimpl
def taskman_health_checks(runtime: taskman.Runtime) -> dict[str, CheckFunc]:
    """The database layer's check: one round trip on the app's database."""
    return {"database": DatabaseCheck(runtime.database)}


@hookimpl
def taskman_access() -> dict[str, str]:
    """For the auth plugin: probes need no token; readiness shows details to a token holder (``show_details``)."""
    return {
        resources.LIVE_PATH: "public",
        resources.STARTUP_PATH: "public",
        resources.READY_PATH: "optional",
        resources.LEGACY_PATH: "optional",
    }


@hookimpl
def taskman_openapi() -> dict[str, Any]:
    """The probes' paths and schemas, for the openapi plugin (never called while it is disabled)."""
    from . import openapi

    return openapi.fragment()
