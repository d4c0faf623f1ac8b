"""webhooks: events delivered to subscribed URLs, signed as Standard Webhooks, at least once and in order.

A subscription (``/api/v1/webhooks``, ``taskman webhooks``) has a URL, an
event-type filter, a secret shown once and an enabled flag.  Fan-out is a
durable consumer of the events plugin's change feed: each event becomes one
delivery per matching subscription, once.  Delivery threads in every server
worker (or ``taskman webhooks run``) send each subscription's deliveries in
order, retry with backoff and jitter, and disable a subscription that keeps
failing (:mod:`.service`).  Sending is bounded and checked
(:mod:`.sender`).  See docs/events.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

import taskman
from taskman import hookimpl

from . import openapi, web
from .sender import OUTCOMES
from .service import Webhooks
from .settings import WebhooksSettings

__all__ = ["Webhooks", "WebhooksSettings", "webhooks"]

#: The change feed is the events plugin's: without it there is nothing to deliver.
taskman_requires = ("events",)

log = logging.getLogger("taskman.webhooks")

CONSUMER = "webhooks"
DELIVERIES = "webhook_deliveries_total"
OLDEST = "webhook_oldest_undelivered_seconds"
OLDEST_HELP = "Age of the oldest event not yet delivered to an enabled subscription (0 when none is waiting)."


def webhooks(runtime: taskman.Runtime) -> Webhooks:
    """This app's webhooks (made on first use)."""
    return runtime.component(Webhooks, lambda: Webhooks(runtime, runtime.settings(WebhooksSettings)))


class OldestUndelivered:
    """``webhook_oldest_undelivered_seconds``, read from the database at scrape time (right across workers)."""

    def __init__(self, runtime: taskman.Runtime) -> None:
        self.runtime = runtime

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(OLDEST, OLDEST_HELP)]

    def collect(self) -> Iterable[Metric]:
        service = webhooks(self.runtime)
        db = self.runtime.database
        was_closed = db.is_closed()
        try:
            with self.runtime.activated():
                age = service.oldest_pending_age()
        except Exception as exc:
            log.warning("webhook_oldest_query_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return []
        finally:
            if was_closed:
                taskman.release_connection(db)
        return [GaugeMetricFamily(OLDEST, OLDEST_HELP, value=age or 0.0)]


@hookimpl
def taskman_settings() -> type:
    return WebhooksSettings


@hookimpl
def taskman_migrations() -> Path:
    return Path(__file__).parent / "migrations"


@hookimpl
def taskman_event_consumers(runtime: taskman.Runtime) -> dict[str, Callable[..., Any]]:
    return {CONSUMER: webhooks(runtime).fan_out}


@hookimpl
def taskman_routes(runtime: taskman.Runtime) -> list[tuple[str, object]]:
    return web.routes(lambda: webhooks(runtime))


@hookimpl
def taskman_access() -> dict[str, str]:
    """For the auth plugin: subscriptions hold secrets and send data out: admin only."""
    return {template: "admin" for template, _ in web.routes(lambda: None)}  # type: ignore[arg-type, return-value]


@hookimpl
def taskman_openapi() -> dict[str, Any]:
    return openapi.fragment(web.PREFIX)


@hookimpl
def taskman_metrics(runtime: taskman.Runtime, metrics: Any) -> None:
    counter = metrics.counter(DELIVERIES, "Webhook delivery attempts, by outcome.", ["outcome"])
    for outcome in OUTCOMES:
        counter.labels(outcome)  # every outcome shows from the start, at 0
    webhooks(runtime).on_attempt = lambda outcome: counter.labels(outcome).inc()
    metrics.collector(OldestUndelivered(runtime))


@hookimpl
def taskman_startup(runtime: taskman.Runtime) -> None:
    service = webhooks(runtime)
    if service.settings.deliver:
        service.start()


@hookimpl
def taskman_shutdown(runtime: taskman.Runtime) -> None:
    service = runtime.find(Webhooks)
    if service is not None:
        service.stop()


@hookimpl
def taskman_cli(group: click.Group) -> None:
    from .cli import add_commands

    add_commands(group, webhooks)
