"""The ``[auth]`` settings section (``APP_AUTH__*``), validated by attrs."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

SCOPES = ("read", "write", "admin")

MetricsAccess = Literal["open", "token"]


def _field(default: Any, help: str, validator: Any = None) -> Any:
    return attrs.field(default=default, validator=validator, metadata={"help": help})


def _known_scopes(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; scopes are {', '.join(SCOPES)}")


@attrs.frozen
class AuthSettings:
    """Bearer API tokens: who may call without one, how long lookups are cached, what /metrics needs."""

    allow_anonymous: bool = _field(
        False,
        "serve requests without a token (with anonymous_scopes); also required to disable this plugin in production",
        v.instance_of(bool),
    )
    anonymous_scopes: tuple[str, ...] = _field(
        ("read",), "scopes of a request without a token when allow_anonymous is true", _known_scopes
    )
    metrics_access: MetricsAccess = _field(
        "token", "open: anyone may scrape /metrics; token: a token with the read scope", v.in_(("open", "token"))
    )
    cache_seconds: float = _field(
        5.0, "seconds a process trusts a token lookup (a revocation takes effect within this)", [v.ge(0), v.le(300)]
    )
    last_used_interval: int = _field(
        60, "seconds between two writes of a token's last-used time by one process", [v.ge(1), v.le(86400)]
    )
    bootstrap_token: bool = _field(
        True, "in development, `taskman serve` creates and prints a token when none exists", v.instance_of(bool)
    )
