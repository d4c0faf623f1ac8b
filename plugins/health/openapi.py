"""The health plugin's OpenAPI fragment (read by the openapi plugin through ``taskman_openapi``).

Plain data describing exactly what :mod:`.resources` renders: a
:class:`~.core.Report` as JSON, 200 for healthy or degraded, 503 for
unhealthy, always ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from .core import HIDDEN_ERROR, SHUTDOWN_CHECK, STARTUP_CHECK, STATUSES
from .resources import LEGACY_PATH, LIVE_PATH, READY_PATH, STARTUP_PATH

TAG = "health"

_SCHEMAS = "#/components/schemas/"

SCHEMAS: dict[str, Any] = {
    "HealthStatus": {
        "type": "string",
        "enum": list(STATUSES),
        "description": "healthy < degraded < unhealthy; only unhealthy is a 503.",
    },
    "HealthCheckResult": {
        "type": "object",
        "description": "One check's outcome; `error` is there exactly when it is unhealthy.",
        "required": ["status", "latency_ms"],
        "properties": {
            "status": {"$ref": _SCHEMAS + "HealthStatus"},
            "latency_ms": {"type": "number", "minimum": 0},
            "error": {
                "type": "string",
                "description": f"`ExceptionType: message`, or {HIDDEN_ERROR!r} where details are hidden.",
            },
        },
        "additionalProperties": False,
        "if": {"properties": {"status": {"const": "unhealthy"}}},
        "then": {"required": ["error"]},
        "else": {"not": {"required": ["error"]}},
    },
    "HealthReport": {
        "type": "object",
        "description": "A probe's answer: the worst status of its checks.",
        "required": ["status", "timestamp", "checks", "duration_ms"],
        "properties": {
            "status": {"$ref": _SCHEMAS + "HealthStatus"},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "When the probe started (RFC 3339, UTC, milliseconds).",
            },
            "checks": {
                "type": "object",
                "description": f"Each check by name; `{STARTUP_CHECK}` and `{SHUTDOWN_CHECK}` are the process's own.",
                "additionalProperties": {"$ref": _SCHEMAS + "HealthCheckResult"},
            },
            "duration_ms": {"type": "number", "minimum": 0, "description": "How long the probe took."},
        },
        "additionalProperties": False,
    },
}

_NO_STORE = {"description": "`no-store`", "required": True, "schema": {"type": "string", "const": "no-store"}}


def _report(description: str, statuses: list[str], extra_headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Cache-Control": _NO_STORE, **(extra_headers or {})},
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": _SCHEMAS + "HealthReport"},
                        {"properties": {"status": {"enum": statuses}}},
                    ]
                }
            }
        },
    }


_OK = ["healthy", "degraded"]
_UNHEALTHY = ["unhealthy"]

_READY_503 = (
    "Not ready: start-up has not completed (check `startup`), the process is draining after SIGTERM "
    "(check `shutdown`), or a check is unhealthy (it failed, returned False, timed out or was slower "
    "than `health.unhealthy_ms`)."
)

_LEGACY_HEADERS = {
    "Deprecation": {"description": "The endpoint is deprecated.", "required": True, "schema": {"const": "true"}},
    "Link": {
        "description": f'`<{READY_PATH}>; rel="successor-version"`',
        "required": True,
        "schema": {"type": "string"},
    },
}


def _operation(operation_id: str, summary: str, description: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "tags": [TAG],
            "summary": summary,
            "description": description,
            "responses": responses,
        }
    }


def fragment() -> dict[str, Any]:
    """``paths``, ``components`` and ``tags`` of the four probes."""
    return {
        "paths": {
            LIVE_PATH: _operation(
                "health_live",
                "Liveness probe",
                "200 while the process can serve; no checks, never touches the database.",
                {"200": _report("The process is alive (`status` healthy, no checks).", ["healthy"])},
            ),
            READY_PATH: _operation(
                "health_ready",
                "Readiness probe",
                "Runs every check (the `database` one and those other plugins contribute), within `health.timeout_ms`.",
                {
                    "200": _report("Ready: every check is healthy or degraded.", _OK),
                    "503": _report(_READY_503, _UNHEALTHY),
                },
            ),
            STARTUP_PATH: _operation(
                "health_startup",
                "Start-up probe",
                "503 until start-up (migrations and every start-up hook) has completed in this process.",
                {
                    "200": _report("Start-up has completed (check `startup` healthy).", ["healthy"]),
                    "503": _report("Start-up has not completed (check `startup` unhealthy).", _UNHEALTHY),
                },
            ),
            LEGACY_PATH: {
                "get": {
                    **_operation("health_legacy", "Readiness (deprecated)", f"Use {READY_PATH}.", {})["get"],
                    "deprecated": True,
                    "responses": {
                        "200": _report("As `GET /health/ready`.", _OK, _LEGACY_HEADERS),
                        "503": _report(_READY_503, _UNHEALTHY, _LEGACY_HEADERS),
                    },
                }
            },
        },
        "components": {"schemas": SCHEMAS},
        "tags": [{"name": TAG, "description": "Liveness, readiness and start-up probes."}],
    }
