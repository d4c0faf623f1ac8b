"""``taskman webhooks add|list|remove|deliveries|run``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import click

import taskman

from .service import STATUSES, Conflict, Refused, Webhooks


def add_commands(group: click.Group, webhooks_of: Callable[[taskman.Runtime], Webhooks]) -> None:
    """Add the ``webhooks`` group."""

    def ready(runtime: taskman.Runtime) -> Webhooks:
        try:
            runtime.ensure_migrated()
        except taskman.StartupError as exc:
            raise click.ClickException(str(exc)) from None
        return webhooks_of(runtime)

    @group.group("webhooks")
    def webhooks() -> None:
        """Subscribe URLs to events, list them, see their deliveries, run delivery on its own."""

    @webhooks.command("add")
    @click.argument("url")
    @click.option("--events", "events", default="*", show_default=True, help="Comma list: *, task.*, task.created.")
    @click.option("--description", default="", help="What the subscription is for.")
    @click.option("--disabled", is_flag=True, help="Create it disabled.")
    @taskman.pass_runtime
    def add(runtime: taskman.Runtime, url: str, events: str, description: str, disabled: bool) -> None:
        """Subscribe URL; print its id, and its signing secret once (last line)."""
        try:
            created, secret = ready(runtime).create(
                url, [e.strip() for e in events.split(",") if e.strip()], description, not disabled
            )
        except (Refused, Conflict) as exc:
            raise click.ClickException(f"{getattr(exc, 'pointer', '').lstrip('/') or 'webhook'} {exc}") from None
        click.echo(
            f"Created webhook {created['id']} for {created['url']} ({', '.join(created['event_types'])}). "
            "Its signing secret is shown only now; store it safely:",
            err=True,
        )
        click.echo(secret)

    @webhooks.command("list")
    @taskman.pass_runtime
    def list_webhooks(runtime: taskman.Runtime) -> None:
        """List subscriptions (never their secrets)."""
        rows = ready(runtime).all()
        if not rows:
            click.echo("no webhooks")
            return
        click.echo(f"{'ID':<24} {'STATE':<9} {'PENDING':>7} {'FAILS':>5}  {'EVENTS':<24} URL")
        for row in rows:
            state = "enabled" if row["enabled"] else "disabled"
            click.echo(
                f"{row['id']:<24} {state:<9} {row['pending_deliveries']:>7} {row['consecutive_failures']:>5}  "
                f"{','.join(row['event_types']):<24} {row['url']}"
            )
            if row["disabled_reason"]:
                click.echo(f"{'':<24} disabled: {row['disabled_reason']}")

    @webhooks.command("remove")
    @click.argument("webhook_id")
    @taskman.pass_runtime
    def remove(runtime: taskman.Runtime, webhook_id: str) -> None:
        """Delete a subscription with its deliveries."""
        if not ready(runtime).delete(webhook_id):
            raise click.ClickException(f"no webhook {webhook_id!r}")
        click.echo(f"removed {webhook_id}")

    @webhooks.command("deliveries")
    @click.argument("webhook_id")
    @click.option("--status", type=click.Choice(STATUSES), default=None, help="Only deliveries in this state.")
    @click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
    @click.option("--attempts", "show_attempts", is_flag=True, help="The log of every attempt instead.")
    @taskman.pass_runtime
    def deliveries(
        runtime: taskman.Runtime, webhook_id: str, status: str | None, limit: int, show_attempts: bool
    ) -> None:
        """A subscription's deliveries (newest first): status, attempts, the last answer."""
        service = ready(runtime)
        if service.get(webhook_id) is None:
            raise click.ClickException(f"no webhook {webhook_id!r}")
        if show_attempts:
            attempts: list[dict[str, Any]] = service.attempts(webhook_id, None, limit)["items"]
            click.echo(f"{'ATTEMPT':>8} {'EVENT':>8} {'#':>3} {'OUTCOME':<17} {'CODE':>4} {'MS':>6}  STARTED")
            for a in attempts:
                click.echo(
                    f"{a['id']:>8} {a['event_id'] or '-':>8} {a['attempt']:>3} {a['outcome']:<17} "
                    f"{a['status_code'] or '-':>4} {a['duration_ms']:>6}  {a['started_at']}"
                    + (f"  {a['error']}" if a["error"] else "")
                )
            return
        items = service.deliveries(webhook_id, status, None, limit)["items"]
        if not items:
            click.echo("no deliveries")
            return
        click.echo(f"{'DELIVERY':>8} {'EVENT':>8} {'TYPE':<24} {'STATUS':<10} {'TRIES':>5} {'CODE':>4} {'MS':>6}  LAST")
        for d in items:
            last = d["last_attempt"] or {}
            click.echo(
                f"{d['id']:>8} {d['event_id'] or '-':>8} {d['event_type']:<24} {d['status']:<10} {d['attempts']:>5} "
                f"{last.get('status_code') or '-':>4} {last.get('duration_ms') or '-':>6}  "
                f"{last.get('outcome') or '-'}" + (f": {last['error']}" if last.get("error") else "")
            )

    @webhooks.command("run")
    @click.option(
        "--concurrency", type=click.IntRange(1, 32), default=None, help="Delivery threads (webhooks.concurrency)."
    )
    @taskman.pass_runtime
    def run(runtime: taskman.Runtime, concurrency: int | None) -> None:
        """Deliver webhooks in this process until SIGTERM or SIGINT (beside or instead of the servers)."""
        service = ready(runtime)
        taskman.release_connection(runtime.database)
        service.start(concurrency)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.request_stop())
        click.echo(f"delivering webhooks with {concurrency or service.settings.concurrency} thread(s)", err=True)
        service.run_until_stopped()
        service.stop()
        click.echo("stopped", err=True)
