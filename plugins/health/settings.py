"""The ``[health]`` settings section (``APP_HEALTH__*``), validated by attrs."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from taskman import setting, settings_section

ShowDetails = Literal["auto", "always", "token", "never"]

#: Environments in which ``show_details = "auto"`` shows failure details.
DETAIL_ENVIRONMENTS = frozenset({"development", "testing"})

MAX_MS = 60_000


@settings_section("health")
@attrs.frozen
class HealthSettings:
    """Latency thresholds, the per-check timeout and whether failure details are shown."""

    degraded_ms: int = setting(
        100, "a check slower than this (ms) is degraded (still 200)", [v.instance_of(int), v.ge(0), v.le(MAX_MS)]
    )
    unhealthy_ms: int = setting(
        1000, "a check slower than this (ms) is unhealthy (503)", [v.instance_of(int), v.ge(0), v.le(MAX_MS)]
    )
    timeout_ms: int = setting(
        1000,
        "a check still running after this (ms) is reported unhealthy: timed out",
        [v.instance_of(int), v.ge(1), v.le(MAX_MS)],
    )
    show_details: ShowDetails = setting(
        "auto",
        "auto (always in development/testing, token elsewhere), always, token (to callers with an API token) or never",
        v.in_(("auto", "always", "token", "never")),
    )

    def __attrs_post_init__(self) -> None:
        if self.degraded_ms > self.unhealthy_ms:
            raise ValueError(f"degraded_ms ({self.degraded_ms}) must not be above unhealthy_ms ({self.unhealthy_ms})")

    def details_shown(self, environment: str) -> bool:
        """Whether failing checks show their error text in ``environment``."""
        if self.show_details == "auto":
            return environment in DETAIL_ENVIRONMENTS
        return self.show_details == "always"

    def details_for_tokens(self, environment: str) -> bool:
        """Whether failing checks show their error text to callers the auth plugin identified."""
        if self.show_details == "auto":
            return environment not in DETAIL_ENVIRONMENTS
        return self.show_details == "token"
