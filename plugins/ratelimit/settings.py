"""The ``[ratelimit]`` settings section (``APP_RATELIMIT__*``), validated by attrs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlsplit

import attrs
import limits
from attrs import validators as v

from taskman import setting, settings_section

StorageFailure = Literal["open", "closed"]

#: Storage URL schemes this plugin knows how to share and time out.
MEMORY_SCHEMES = frozenset({"memory"})
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})

_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def parse_rate(text: str) -> limits.RateLimitItem:
    """The one rate in ``text`` (limits' notation: ``300/minute``, ``10 per second``); ValueError otherwise.

    ``limits.parse`` would silently keep the first of several rates: one
    group has exactly one rate, so several are refused.
    """
    try:
        rates = limits.parse_many(text)
    except ValueError:
        raise ValueError(f"must be a rate like '300/minute' or '10 per second', got {text!r}") from None
    if len(rates) != 1:
        raise ValueError(f"must be one rate like '300/minute' (not several), got {text!r}")
    if rates[0].amount < 1:
        raise ValueError(f"must allow at least one request, got {text!r}")
    return rates[0]


def _check_rate(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str):
        raise ValueError(f"must be a rate like '300/minute', got {value!r}")
    parse_rate(value)


def _check_storage_url(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    known = ", ".join(f"{s}://" for s in sorted(MEMORY_SCHEMES | REDIS_SCHEMES))
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"must be a URL ({known}), got {value!r}") from None
    if parts.scheme not in MEMORY_SCHEMES | REDIS_SCHEMES:
        raise ValueError(f"must be a URL with one of the schemes {known}, got {parts.scheme or value!r}")


def _check_exempt_paths(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    for path in value:
        if not isinstance(path, str) or not path.startswith("/") or "*" in path:
            raise ValueError(f"entries must be path prefixes starting with '/', without '*', got {path!r}")


def _check_key_prefix(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or not _KEY_PREFIX.fullmatch(value):
        raise ValueError(f"must be 1-64 characters among A-Z a-z 0-9 _ . : -, got {value!r}")


def _check_forwarded_for_retired(instance: object, attribute: attrs.Attribute, value: bool) -> None:  # type: ignore[type-arg]
    if value:
        raise ValueError(
            "is replaced by server.forwarded_allow_ips: the servers now resolve the client address for every plugin "
            "(set APP_SERVER__FORWARDED_ALLOW_IPS to your proxies' addresses and remove this setting)"
        )


@settings_section("ratelimit")
@attrs.frozen
class RateLimitSettings:
    """Rates per route group, where the counts live and what happens when that storage is unreachable."""

    # Per token: generous, so a script seeding a few hundred records a minute (retries and refusals included)
    # never meets them; per address without a token: stricter, as anyone may be that caller (docs/ratelimit.md).
    reads: str = setting("3000/minute", "rate of GET and HEAD requests per token (limits' notation)", _check_rate)
    writes: str = setting(
        "1200/minute", "rate of POST, PUT, PATCH and DELETE requests per token (limits' notation)", _check_rate
    )
    anonymous_reads: str = setting(
        "300/minute", "rate of GET and HEAD requests without a token, per client address", _check_rate
    )
    anonymous_writes: str = setting(
        "60/minute", "rate of POST, PUT, PATCH and DELETE requests without a token, per client address", _check_rate
    )
    auth_failures: str = setting(
        "30/minute",
        "refused authentications per client address; past it, requests with a token get 429 before any lookup",
        _check_rate,
    )
    storage_url: str = setting(
        "memory://",
        "memory:// (per process) or redis://host:port/db (shared by every worker and machine)",
        _check_storage_url,
    )
    storage_failure: StorageFailure = setting(
        "open",
        "when the storage is unreachable: open (serve unlimited) or closed (503)",
        v.in_(("open", "closed")),
    )
    storage_timeout: float = setting(
        0.5, "seconds to connect to, and to wait for, the Redis storage", [v.gt(0), v.le(30)]
    )
    storage_retry_interval: float = setting(
        1.0,
        "seconds after a storage failure before the storage is tried again; Retry-After of the closed-mode 503",
        [v.ge(0), v.le(300)],
    )
    failure_log_interval: float = setting(
        60.0, "at most one ratelimit_storage_unavailable warning per this many seconds", [v.ge(0), v.le(86_400)]
    )
    key_prefix: str = setting(
        "taskman", "prefix of the storage keys (tells apps sharing a Redis apart)", _check_key_prefix
    )
    trust_forwarded_for: bool = setting(
        False,
        "retired: the servers resolve the client address (server.forwarded_allow_ips); only false is accepted",
        [v.instance_of(bool), _check_forwarded_for_retired],
    )
    exempt_paths: tuple[str, ...] = setting(
        ("/health", "/metrics"), "path prefixes never limited (probes, scrapers)", _check_exempt_paths
    )

    def rates(self) -> dict[str, limits.RateLimitItem]:
        """The parsed rate of each route group."""
        return {
            "reads": parse_rate(self.reads),
            "writes": parse_rate(self.writes),
            "anonymous_reads": parse_rate(self.anonymous_reads),
            "anonymous_writes": parse_rate(self.anonymous_writes),
            "auth_failures": parse_rate(self.auth_failures),
        }
