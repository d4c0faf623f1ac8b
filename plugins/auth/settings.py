"""The ``[auth]`` settings section (``APP_AUTH__*``), validated by attrs."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from taskman import setting, settings_section

SCOPES = ("read", "write", "admin")

MetricsAccess = Literal["open", "token"]


def _known_scopes(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; scopes are {', '.join(SCOPES)}")


@settings_section("auth")
@attrs.frozen
class AuthSettings:
    """Bearer API tokens: who may call without one, how long lookups are cached, what /metrics needs."""

    allow_anonymous: bool = setting(
        False,
        "serve requests without a token (with anonymous_scopes); also required to disable this plugin in production",
        v.instance_of(bool),
    )
    anonymous_scopes: tuple[str, ...] = setting(
        ("read",), "scopes of a request without a token when allow_anonymous is true", _known_scopes
    )
    metrics_access: MetricsAccess = setting(
        "token", "open: anyone may scrape /metrics; token: a token with the read scope", v.in_(("open", "token"))
    )
    cache_seconds: float = setting(
        5.0, "seconds a process trusts a token lookup (a revocation takes effect within this)", [v.ge(0), v.le(300)]
    )
    last_used_interval: int = setting(
        60, "seconds between two writes of a token's last-used time by one process", [v.ge(1), v.le(86400)]
    )
    bootstrap_token: bool = setting(
        True, "in development, `taskman serve` creates and prints a token when none exists", v.instance_of(bool)
    )
