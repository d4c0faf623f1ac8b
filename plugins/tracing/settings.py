"""The ``[tracing]`` settings section (``APP_TRACING__*`` in the environment)."""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs import validators as v

from taskman import setting, settings_section

SECTION = "tracing"


def _endpoint(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value and not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"must be empty (tracing off) or an http:// or https:// URL, got {value!r}", attribute, value)


@settings_section("tracing")
@attrs.frozen
class TracingSettings:
    """Tracing is on exactly when ``otlp_endpoint`` is set."""

    otlp_endpoint: str = setting(
        "",
        "OTLP/HTTP collector URL (http://collector:4318); /v1/traces is appended unless present; empty = off",
        [v.instance_of(str), _endpoint],
    )
    service_name: str = setting("", "service.name of the exported spans; empty = app_name", v.instance_of(str))
    sample_ratio: float = setting(
        1.0, "share of new traces recorded (0-1); an incoming traceparent's decision wins", [v.ge(0.0), v.le(1.0)]
    )
    export_timeout: float = setting(10.0, "seconds one export request to the collector may take", [v.gt(0), v.le(300)])
    trace_database: bool = setting(True, "a CLIENT span for every SQL statement", v.instance_of(bool))

    @property
    def enabled(self) -> bool:
        return bool(self.otlp_endpoint)


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for ``endpoint``: a base URL gets ``/v1/traces``, a full one is kept."""
    endpoint = endpoint.strip()
    if endpoint.rstrip("/").endswith("/v1/traces"):
        return endpoint.rstrip("/")
    return endpoint.rstrip("/") + "/v1/traces"
