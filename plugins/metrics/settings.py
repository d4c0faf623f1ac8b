"""The ``[metrics]`` settings section (``APP_METRICS__*``), validated by attrs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import attrs
from attrs import validators as v

from taskman import setting, settings_section

#: ``http.server.request.duration`` buckets advised by the OpenTelemetry HTTP semantic conventions (seconds).
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

#: Body size buckets (bytes): 0, then powers of 4 from 64 B to 16 MiB.
DEFAULT_SIZE_BUCKETS: tuple[float, ...] = (0.0, *(float(64 * 4**i) for i in range(10)))

#: Paths the HTTP metrics skip by default: the scrape itself and the probes.
DEFAULT_EXCLUDE: tuple[str, ...] = ("/metrics", "/health", "/health/*")


def check_buckets(instance: object, attribute: attrs.Attribute, value: Sequence[float]) -> None:  # type: ignore[type-arg]
    if not value:
        raise ValueError(f"'{attribute.name}' must list at least one bucket bound")
    if any(not isinstance(b, (int, float)) or isinstance(b, bool) or not math.isfinite(b) or b < 0 for b in value):
        raise ValueError(f"'{attribute.name}' bounds must be finite numbers >= 0: {list(value)!r}")
    if any(a >= b for a, b in itertools.pairwise(value)):
        raise ValueError(f"'{attribute.name}' bounds must be strictly increasing: {list(value)!r}")


def _check_path(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or not value.startswith("/") or "*" in value or "//" in value:
        raise ValueError(f"'{attribute.name}' must be a path starting with '/', without '*': {value!r}")


def _check_patterns(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    for pattern in value:
        if not isinstance(pattern, str) or not pattern.startswith("/") or "*" in pattern[:-1]:
            raise ValueError(
                f"'{attribute.name}' entries must be paths starting with '/', "
                f"optionally ending in '*' (prefix match): {pattern!r}"
            )


@settings_section("metrics")
@attrs.frozen
class MetricsSettings:
    """Where the scrape is served, what the HTTP metrics skip, and how they are bucketed."""

    path: str = setting("/metrics", "path of the Prometheus scrape endpoint", _check_path)
    exclude: tuple[str, ...] = setting(
        DEFAULT_EXCLUDE,
        "request paths left out of the HTTP metrics; a trailing '*' matches any suffix",
        _check_patterns,
    )
    duration_buckets: tuple[float, ...] = setting(
        DEFAULT_DURATION_BUCKETS, "bucket bounds (seconds) of http_server_request_duration_seconds", check_buckets
    )
    size_buckets: tuple[float, ...] = setting(
        DEFAULT_SIZE_BUCKETS, "bucket bounds (bytes) of the request and response body size histograms", check_buckets
    )
    multiprocess_dir: str | None = setting(
        None,
        "folder for the workers' metric files under `taskman serve` (emptied at start); "
        "unset: $PROMETHEUS_MULTIPROC_DIR, else a private temporary folder",
        v.optional(v.min_len(1)),
    )
    process_metrics: bool = setting(True, "export process CPU, memory and file descriptors", v.instance_of(bool))
