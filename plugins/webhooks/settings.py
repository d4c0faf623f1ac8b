"""The ``[webhooks]`` settings section (``APP_WEBHOOKS__*``), validated by attrs."""

from __future__ import annotations

import attrs
from attrs import validators as v

from taskman import setting, settings_section

#: Where private targets are allowed unless the setting says otherwise: a developer's receiver runs on loopback.
PRIVATE_BY_DEFAULT = frozenset({"development", "testing"})


@settings_section("webhooks")
@attrs.frozen
class WebhooksSettings:
    """Delivery: timeouts, retries, when a failing subscription is disabled, where webhooks may go."""

    timeout: float = setting(
        10.0,
        "seconds a receiver gets for a whole delivery (resolving, connecting, TLS, request and answer)",
        [v.instance_of(float), v.ge(0.1), v.le(60.0)],
    )
    retry_base: float = setting(
        5.0,
        "seconds before the first retry; each later one waits twice as long (with jitter), up to retry_max",
        [v.instance_of(float), v.ge(0.01), v.le(3600.0)],
    )
    retry_max: float = setting(
        3600.0, "longest wait between two attempts, in seconds", [v.instance_of(float), v.ge(0.01), v.le(86400.0)]
    )
    disable_after: int = setting(
        40,
        "failed attempts in a row after which a subscription is disabled (its pending deliveries are kept)",
        [v.instance_of(int), v.ge(1), v.le(10000)],
    )
    allow_private_targets: bool | None = setting(
        None,
        "allow URLs that resolve to loopback, private or link-local addresses (default: in development and testing)",
        v.optional(v.instance_of(bool)),
    )
    deliver: bool = setting(
        True,
        "deliver from every server worker; false leaves delivery to `taskman webhooks run`",
        v.instance_of(bool),
    )
    concurrency: int = setting(
        2, "delivery threads per process (each holds a database connection)", [v.instance_of(int), v.ge(1), v.le(32)]
    )
    poll_interval: float = setting(
        1.0, "seconds a delivery thread waits when nothing is due", [v.instance_of(float), v.ge(0.05), v.le(60.0)]
    )
    retention_days: int = setting(
        30,
        "delivered and failed deliveries (and their attempts) older than this are pruned",
        [v.instance_of(int), v.ge(1), v.le(3650)],
    )
    max_subscriptions: int = setting(100, "subscriptions allowed at once", [v.instance_of(int), v.ge(1), v.le(10000)])

    def private_targets_allowed(self, environment: str) -> bool:
        if self.allow_private_targets is None:
            return environment in PRIVATE_BY_DEFAULT
        return self.allow_private_targets
