"""Subscriptions, fan-out and delivery: plain Python over the database (no Falcon).

* **Fan-out** is a durable consumer of the change feed (the events plugin's
  ``taskman_event_consumers``): in the transaction that advances its
  position, every event becomes one delivery row per enabled subscription
  whose filter matches.  Each event is fanned out exactly once.
* **Delivery** keeps each subscription a queue: a worker claims a
  subscription (a lease, taken with ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL so two workers never claim the same one; SQLite has one writer
  at a time) and sends its oldest pending delivery, then the next.  A
  failure that is worth retrying holds the queue until the retry, so a
  receiver gets its events in order.  The lease outlives the timeout: a
  worker killed mid-delivery lets another take the subscription over when
  it runs out, and the same delivery (same ``webhook-id``) is sent again.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import peewee

import taskman

from . import sender
from .settings import WebhooksSettings

log = logging.getLogger("taskman.webhooks")

#: ``*``, ``task.*``, ``task.created``: what an event-type filter may hold.
PATTERN = re.compile(r"\*|[a-z][a-z0-9_]{0,49}(\.[a-z0-9_]{1,49}){0,3}(\.\*)?")
MAX_PATTERNS = 20
#: Deliveries one claim sends to a subscription before it lets others have a turn.
TURN = 50
PRUNE_BATCH = 500
PRUNE_EVERY = 600.0
STATUSES = ("pending", "succeeded", "failed")

SUBSCRIPTION_COLUMNS = (
    "id, url, event_types, description, enabled, disabled_reason, consecutive_failures, next_attempt_at, "
    "created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "id, event_id, event_type, occurred_at, message_id, status, attempts, created_at, last_attempt_at, "
    "delivered_at, last_status_code, last_outcome, last_error, last_duration_ms"
)
ATTEMPT_COLUMNS = "id, delivery_id, event_id, attempt, started_at, duration_ms, status_code, outcome, error"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return str(value.isoformat(timespec="microseconds")) + "Z"


def is_postgres(db: Any) -> bool:
    return isinstance(getattr(db, "obj", db), peewee.PostgresqlDatabase)


def stamp(db: Any, value: datetime.datetime) -> Any:
    """A timestamp parameter; SQLite compares text, so always with microseconds."""
    return value if is_postgres(db) else value.isoformat(" ", timespec="microseconds")


def write_transaction(db: Any) -> Any:
    target = getattr(db, "obj", db)
    return target.atomic() if is_postgres(target) else target.atomic(lock_type="IMMEDIATE")


def matches(patterns: Iterable[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def backoff(attempts: int, base: float, ceiling: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``base`` up to ``ceiling``, half of it jitter."""
    delay = min(ceiling, base * 2 ** min(max(attempts - 1, 0), 40))
    return float(delay / 2 + rng() * delay / 2)


def untraced() -> None:
    """Mark this background thread's work as not to be traced (OpenTelemetry's suppress-instrumentation flag).

    Its polling is not a request: traced, every idle round would be root
    spans.  Instrumentations that honour the flag (the tracing plugin's SQL
    spans do) leave it out; without OpenTelemetry this does nothing.
    """
    try:
        from opentelemetry import context
    except ImportError:  # pragma: no cover - installed with taskman
        return
    key = getattr(context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
    if key is not None:
        context.attach(context.set_value(key, True))


class NotFound(LookupError):
    pass


class Refused(ValueError):
    """The subscription cannot be saved as asked; ``pointer`` names the field."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail


class Conflict(RuntimeError):
    pass


def subscription_view(row: Sequence[Any], pending: int) -> dict[str, Any]:
    sub_id, url, types, description, enabled, reason, failures, next_at, created, updated = row
    return {
        "id": sub_id,
        "url": url,
        "event_types": json.loads(types),
        "description": description,
        "enabled": bool(enabled),
        "disabled_reason": reason,
        "consecutive_failures": int(failures),
        "pending_deliveries": pending,
        "next_attempt_at": rfc3339(next_at) if pending else None,
        "created_at": rfc3339(created),
        "updated_at": rfc3339(updated),
    }


def delivery_view(row: Sequence[Any]) -> dict[str, Any]:
    (d_id, event_id, event_type, occurred, message_id, status, attempts, created, last_at, delivered, code, outcome,
     error, duration) = row  # fmt: skip
    return {
        "id": int(d_id),
        "event_id": None if event_id is None else int(event_id),
        "event_type": event_type,
        "occurred_at": rfc3339(occurred),
        "message_id": message_id,
        "status": status,
        "attempts": int(attempts),
        "created_at": rfc3339(created),
        "delivered_at": rfc3339(delivered),
        "last_attempt": None
        if last_at is None
        else {
            "at": rfc3339(last_at),
            "status_code": code,
            "outcome": outcome,
            "error": error,
            "duration_ms": duration,
        },
    }


def attempt_view(row: Sequence[Any]) -> dict[str, Any]:
    a_id, delivery_id, event_id, attempt, started, duration, code, outcome, error = row
    return {
        "id": int(a_id),
        "delivery_id": int(delivery_id),
        "event_id": None if event_id is None else int(event_id),
        "attempt": int(attempt),
        "started_at": rfc3339(started),
        "duration_ms": int(duration),
        "status_code": code,
        "outcome": outcome,
        "error": error,
    }


#: Every delivery service of this process, made afresh in a forked child (:meth:`Webhooks.forked`).
_services: weakref.WeakSet[Webhooks] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for service in list(_services):
        service.forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Webhooks:
    """One app's subscriptions and their delivery."""

    def __init__(
        self,
        runtime: taskman.Runtime,
        settings: WebhooksSettings,
        *,
        resolver: sender.Resolver = sender.resolve,
        clock: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.allow_private = settings.private_targets_allowed(runtime.config.environment)
        self.resolver = resolver
        self.clock = clock
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.on_attempt: Callable[[str], None] = lambda outcome: None
        self._wake = taskman.Wakeup()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_prune = 0.0
        _services.add(self)

    def forked(self) -> None:
        """In a forked child: none of the parent's threads runs here; the child's start-up starts its own."""
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = taskman.Wakeup()
        self._stop = threading.Event()
        self._threads = []

    @property
    def db(self) -> Any:
        return self.runtime.database

    def _p(self) -> str:
        return str(self.db.param)

    # -- subscriptions ------------------------------------------------------------------

    def check_url(self, url: str) -> None:
        problem = sender.target_problem(
            url, allow_private=self.allow_private, timeout=min(self.settings.timeout, 2.0), resolver=self.resolver
        )
        if problem:
            raise Refused("/url", problem)

    @staticmethod
    def check_types(types: list[str]) -> list[str]:
        if not 1 <= len(types) <= MAX_PATTERNS:
            raise Refused("/event_types", f"must list 1 to {MAX_PATTERNS} event types")
        for index, pattern in enumerate(types):
            if not isinstance(pattern, str) or not PATTERN.fullmatch(pattern):
                raise Refused(f"/event_types/{index}", "must be *, a type (task.created) or a prefix (task.*)")
        return list(dict.fromkeys(types))

    def create(
        self, url: str, event_types: list[str], description: str = "", enabled: bool = True
    ) -> tuple[dict[str, Any], str]:
        """A new subscription, and its secret (shown this once)."""
        types = self.check_types(event_types)
        self.check_url(url)
        secret = sender.new_secret()
        sub_id = "wh_" + secrets.token_hex(10)
        db, p = self.db, self._p()
        now = stamp(db, self.clock())
        with write_transaction(db):
            (count,) = db.execute_sql("SELECT COUNT(*) FROM webhook_subscription").fetchone()
            if int(count) >= self.settings.max_subscriptions:
                raise Conflict(f"There are already {count} subscriptions (webhooks.max_subscriptions).")
            db.execute_sql(
                "INSERT INTO webhook_subscription (id, url, event_types, description, secret, enabled, "
                f"consecutive_failures, created_at, updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, 0, {p}, {p})",
                (sub_id, url, json.dumps(types), description, secret, enabled, now, now),
            )
        found = self.get(sub_id)
        assert found is not None
        return found, secret

    def all(self) -> list[dict[str, Any]]:
        rows = self.db.execute_sql(f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscription ORDER BY created_at, id")
        rows = rows.fetchall()
        pending = self._pending_counts()
        return [subscription_view(row, pending.get(row[0], 0)) for row in rows]

    def _pending_counts(self, sub_id: str | None = None) -> dict[str, int]:
        p = self._p()
        where = "status = 'pending'" + (f" AND subscription_id = {p}" if sub_id else "")
        rows = self.db.execute_sql(
            f"SELECT subscription_id, COUNT(*) FROM webhook_delivery WHERE {where} GROUP BY subscription_id",
            (sub_id,) if sub_id else (),
        ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def get(self, sub_id: str) -> dict[str, Any] | None:
        row = self.db.execute_sql(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscription WHERE id = {self._p()}", (sub_id,)
        ).fetchone()
        if row is None:
            return None
        return subscription_view(row, self._pending_counts(sub_id).get(sub_id, 0))

    def secret_of(self, sub_id: str) -> str | None:
        row = self.db.execute_sql(f"SELECT secret FROM webhook_subscription WHERE id = {self._p()}", (sub_id,))
        found = row.fetchone()
        return None if found is None else str(found[0])

    def update(self, sub_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change url, event_types, description or enabled; enabling again resets the failure count."""
        db, p = self.db, self._p()
        sets: list[str] = []
        params: list[Any] = []
        if "event_types" in changes:
            sets.append(f"event_types = {p}")
            params.append(json.dumps(self.check_types(list(changes["event_types"]))))
        if "url" in changes:
            self.check_url(changes["url"])
            sets.append(f"url = {p}")
            params.append(changes["url"])
        if "description" in changes:
            sets.append(f"description = {p}")
            params.append(changes["description"])
        now = stamp(db, self.clock())
        with write_transaction(db):
            current = self.get(sub_id)
            if current is None:
                raise NotFound(sub_id)
            if "enabled" in changes and bool(changes["enabled"]) != current["enabled"]:
                sets.append(f"enabled = {p}")
                params.append(bool(changes["enabled"]))
                if changes["enabled"]:
                    # Back on: its kept deliveries are due now, and it gets a fresh run of attempts.
                    sets += ["disabled_reason = NULL", "consecutive_failures = 0", f"next_attempt_at = {p}"]
                    params.append(now)
                else:
                    sets.append(f"disabled_reason = {p}")
                    params.append("disabled through the API")
            if sets:
                sets.append(f"updated_at = {p}")
                params.append(now)
                db.execute_sql(f"UPDATE webhook_subscription SET {', '.join(sets)} WHERE id = {p}", (*params, sub_id))
        self._wake.ring()
        found = self.get(sub_id)
        if found is None:
            raise NotFound(sub_id)
        return found

    def delete(self, sub_id: str) -> bool:
        with write_transaction(self.db):
            deleted = self.db.execute_sql(f"DELETE FROM webhook_subscription WHERE id = {self._p()}", (sub_id,))
        return bool(deleted.rowcount)

    def ping(self, sub_id: str) -> dict[str, Any]:
        """Queue a ``webhook.ping`` for this subscription alone (behind its pending deliveries)."""
        db, p = self.db, self._p()
        now = self.clock()
        message_id = "ping_" + secrets.token_hex(12)
        body = {"type": "webhook.ping", "timestamp": rfc3339(now), "data": {"webhook_id": sub_id}}
        with write_transaction(db):
            current = self.get(sub_id)
            if current is None:
                raise NotFound(sub_id)
            if not current["enabled"]:
                raise Conflict(f"Subscription {sub_id} is disabled; enable it to ping it.")
            self._insert_deliveries(
                [(sub_id, None, "webhook.ping", stamp(db, now), message_id, json.dumps(body), stamp(db, now))]
            )
            db.execute_sql(
                f"UPDATE webhook_subscription SET next_attempt_at = COALESCE(next_attempt_at, {p}) WHERE id = {p}",
                (stamp(db, now), sub_id),
            )
            row = db.execute_sql(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_delivery WHERE message_id = {p}", (message_id,)
            ).fetchone()
        self._wake.ring()
        return delivery_view(row)

    def deliveries(self, sub_id: str, status: str | None, before: int | None, limit: int) -> dict[str, Any]:
        """The subscription's deliveries, newest first."""
        p = self._p()
        where, params = [f"subscription_id = {p}"], [sub_id]
        if status is not None:
            where.append(f"status = {p}")
            params.append(status)
        if before is not None:
            where.append(f"id < {p}")
            params.append(before)  # type: ignore[arg-type]
        rows = self.db.execute_sql(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_delivery WHERE {' AND '.join(where)} "
            f"ORDER BY id DESC LIMIT {limit + 1}",
            params,
        ).fetchall()
        items = [delivery_view(row) for row in rows[:limit]]
        more = len(rows) > limit
        return {"items": items, "next_before": items[-1]["id"] if more else None, "has_more": more}

    def attempts(self, sub_id: str, before: int | None, limit: int) -> dict[str, Any]:
        """The log of every attempt to deliver to this subscription, newest first."""
        p = self._p()
        where, params = f"subscription_id = {p}", [sub_id]
        if before is not None:
            where += f" AND id < {p}"
            params.append(before)  # type: ignore[arg-type]
        rows = self.db.execute_sql(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempt WHERE {where} ORDER BY id DESC LIMIT {limit + 1}", params
        ).fetchall()
        items = [attempt_view(row) for row in rows[:limit]]
        more = len(rows) > limit
        return {"items": items, "next_before": items[-1]["id"] if more else None, "has_more": more}

    # -- fan-out: a consumer of the change feed -----------------------------------------------

    def fan_out(self, events: list[dict[str, Any]]) -> Callable[[], None] | None:
        """In the events plugin's transaction: one delivery per event and matching enabled subscription."""
        db, p = self.db, self._p()
        subscriptions = [
            (row[0], json.loads(row[1]))
            for row in db.execute_sql(
                "SELECT id, event_types FROM webhook_subscription WHERE enabled ORDER BY id"
            ).fetchall()
        ]
        if not subscriptions:
            return None
        now = stamp(db, self.clock())
        rows = []
        touched = set()
        for event in events:
            body = json.dumps(
                {
                    "id": event["id"],
                    "type": event["type"],
                    "timestamp": event["occurred_at"],
                    "principal": event["principal"],
                    "data": event["data"],
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            occurred = stamp(db, datetime.datetime.fromisoformat(event["occurred_at"].removesuffix("Z")))
            for sub_id, types in subscriptions:
                if matches(types, event["type"]):
                    rows.append((sub_id, event["id"], event["type"], occurred, f"evt_{event['id']}", body, now))
                    touched.add(sub_id)
        if not rows:
            return None
        self._insert_deliveries(rows)
        for sub_id in sorted(touched):
            db.execute_sql(
                f"UPDATE webhook_subscription SET next_attempt_at = COALESCE(next_attempt_at, {p}) WHERE id = {p}",
                (now, sub_id),
            )
        return self._wake.ring

    def _insert_deliveries(self, rows: list[tuple[Any, ...]]) -> None:
        p = self._p()
        for start in range(0, len(rows), 200):
            chunk = rows[start : start + 200]
            values = ", ".join(f"({p}, {p}, {p}, {p}, {p}, {p}, 'pending', 0, {p})" for _ in chunk)
            self.db.execute_sql(
                "INSERT INTO webhook_delivery (subscription_id, event_id, event_type, occurred_at, message_id, body, "
                f"status, attempts, created_at) VALUES {values}",
                [value for row in chunk for value in row],
            )

    # -- delivery ---------------------------------------------------------------------------

    def _lease_seconds(self) -> float:
        # Beyond the longest exchange and its bookkeeping, so a live worker never loses its claim mid-delivery;
        # short enough that another worker takes over soon after one is killed.
        return 2 * self.settings.timeout + 5.0

    def claim(self) -> tuple[str, str, str] | None:
        """Lease one enabled subscription with a due delivery: ``(id, url, secret)``, or None."""
        db, p = self.db, self._p()
        now = self.clock()
        due = (
            f"enabled AND next_attempt_at <= {p} AND (lease_until IS NULL OR lease_until < {p}) AND EXISTS "
            "(SELECT 1 FROM webhook_delivery d WHERE d.subscription_id = webhook_subscription.id "
            "AND d.status = 'pending')"
        )
        params = (stamp(db, now), stamp(db, now))
        # A plain read first: an idle worker never takes SQLite's write lock.
        if db.execute_sql(f"SELECT 1 FROM webhook_subscription WHERE {due} LIMIT 1", params).fetchone() is None:
            return None
        pick = f"SELECT id FROM webhook_subscription WHERE {due} ORDER BY next_attempt_at LIMIT 1"
        if is_postgres(db):
            pick += " FOR UPDATE SKIP LOCKED"  # two workers never claim the same subscription
        lease = stamp(db, now + datetime.timedelta(seconds=self._lease_seconds()))
        with write_transaction(db):
            row = db.execute_sql(
                f"UPDATE webhook_subscription SET lease_owner = {p}, lease_until = {p} WHERE id = ({pick}) "
                "RETURNING id, url, secret",
                (self.owner, lease, *params),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def deliver_next(self) -> bool:
        """Claim a subscription and send its due deliveries in order; False when none was due."""
        with self.runtime.activated():
            try:
                claimed = self.claim()
                if claimed is None:
                    return False
                sub_id, url, secret = claimed
                for _ in range(TURN):
                    if self._stop.is_set():
                        break
                    if not self._send_head(sub_id, url, secret):
                        return True  # released already (or no longer ours)
                self._release(sub_id)  # a turn used up, or stopping: let another worker go on
                return True
            finally:
                taskman.release_connection(self.db)

    def _release(self, sub_id: str) -> None:
        p = self._p()
        with write_transaction(self.db):
            self.db.execute_sql(
                f"UPDATE webhook_subscription SET lease_owner = NULL, lease_until = NULL "
                f"WHERE id = {p} AND lease_owner = {p}",
                (sub_id, self.owner),
            )

    def _send_head(self, sub_id: str, url: str, secret: str) -> bool:
        """Send the subscription's oldest pending delivery; True to go on with the next one now."""
        db, p = self.db, self._p()
        head = db.execute_sql(
            f"SELECT id, event_id, message_id, body, attempts FROM webhook_delivery "
            f"WHERE subscription_id = {p} AND status = 'pending' ORDER BY id LIMIT 1",
            (sub_id,),
        ).fetchone()
        taskman.release_connection(db)  # no connection held while a receiver takes its time
        if head is None:
            self._release(sub_id)
            return False
        delivery_id, event_id, message_id, body_text, attempts = head
        body = str(body_text).encode()
        started = self.clock()
        outcome = sender.post(
            url,
            body,
            sender.signed_headers(secret, str(message_id), body),
            timeout=self.settings.timeout,
            allow_private=self.allow_private,
            resolver=self.resolver,
        )
        self.on_attempt(outcome.outcome)
        return self._record(sub_id, int(delivery_id), event_id, int(attempts) + 1, started, outcome)

    def _record(
        self,
        sub_id: str,
        delivery_id: int,
        event_id: Any,
        attempt: int,
        started: datetime.datetime,
        outcome: sender.Outcome,
    ) -> bool:
        db, p = self.db, self._p()
        now = self.clock()
        settings = self.settings
        if outcome.outcome == sender.SUCCESS:
            status = "succeeded"
        elif outcome.outcome == sender.HTTP_ERROR:
            status = "failed"  # refused by the receiver (a 4xx, a redirect): sending it again changes nothing
        else:
            status = "pending"
        go_on = status != "pending"
        with write_transaction(db):
            db.execute_sql(
                "INSERT INTO webhook_attempt (delivery_id, subscription_id, event_id, attempt, started_at, "
                f"duration_ms, status_code, outcome, error) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
                (
                    delivery_id,
                    sub_id,
                    event_id,
                    attempt,
                    stamp(db, started),
                    outcome.duration_ms,
                    outcome.status_code,
                    outcome.outcome,
                    outcome.error,
                ),
            )
            db.execute_sql(
                f"UPDATE webhook_delivery SET status = {p}, attempts = {p}, last_attempt_at = {p}, delivered_at = {p}, "
                f"last_status_code = {p}, last_outcome = {p}, last_error = {p}, last_duration_ms = {p} WHERE id = {p}",
                (
                    status,
                    attempt,
                    stamp(db, started),
                    stamp(db, now) if status == "succeeded" else None,
                    outcome.status_code,
                    outcome.outcome,
                    outcome.error,
                    outcome.duration_ms,
                    delivery_id,
                ),
            )
            row = db.execute_sql(
                f"SELECT consecutive_failures, lease_owner FROM webhook_subscription WHERE id = {p}", (sub_id,)
            ).fetchone()
            if row is None or row[1] != self.owner:
                return False  # deleted, or taken over after our lease ran out: its new owner goes on
            failures = 0 if outcome.outcome == sender.SUCCESS else int(row[0]) + 1
            reason = None
            if outcome.outcome == sender.GONE:
                reason = f"the receiver answered 410 Gone on {rfc3339(now)}"
            elif failures >= settings.disable_after:
                reason = f"{failures} failed attempts in a row (last: {outcome.error or outcome.outcome})"
            if reason is not None:
                log.warning("webhook_disabled", extra={"webhook_id": sub_id, "reason": reason})
                db.execute_sql(
                    f"UPDATE webhook_subscription SET enabled = FALSE, disabled_reason = {p}, "
                    f"consecutive_failures = {p}, lease_owner = NULL, lease_until = NULL, updated_at = {p} "
                    f"WHERE id = {p}",
                    (reason, failures, stamp(db, now), sub_id),
                )
                return False
            if go_on:
                next_at = now
            else:
                wait = backoff(attempt, settings.retry_base, settings.retry_max)
                if outcome.retry_after is not None:
                    wait = max(wait, min(outcome.retry_after, settings.retry_max))
                next_at = now + datetime.timedelta(seconds=wait)
            if go_on:  # the lease is renewed for the next delivery
                lease = f", lease_until = {p}"
                params: tuple[Any, ...] = (stamp(db, now + datetime.timedelta(seconds=self._lease_seconds())),)
            else:
                lease, params = ", lease_owner = NULL, lease_until = NULL", ()
            db.execute_sql(
                f"UPDATE webhook_subscription SET consecutive_failures = {p}, next_attempt_at = {p}{lease} "
                f"WHERE id = {p}",
                (failures, stamp(db, next_at), *params, sub_id),
            )
        return go_on

    # -- upkeep -------------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete finished deliveries (and their attempts) older than the retention, in short batches."""
        db, p = self.db, self._p()
        cutoff = stamp(db, self.clock() - datetime.timedelta(days=self.settings.retention_days))
        total = 0
        while True:
            with write_transaction(db):
                deleted = int(
                    db.execute_sql(
                        f"DELETE FROM webhook_delivery WHERE id IN (SELECT id FROM webhook_delivery "
                        f"WHERE status <> 'pending' AND created_at < {p} ORDER BY id LIMIT {PRUNE_BATCH})",
                        (cutoff,),
                    ).rowcount
                )
            total += deleted
            if deleted < PRUNE_BATCH:
                return total

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest event still waiting for an enabled subscription; None if there is none."""
        row = self.db.execute_sql(
            "SELECT MIN(d.occurred_at) FROM webhook_delivery d JOIN webhook_subscription s "
            "ON s.id = d.subscription_id WHERE d.status = 'pending' AND s.enabled"
        ).fetchone()
        if row is None or row[0] is None:
            return None
        oldest = row[0] if isinstance(row[0], datetime.datetime) else datetime.datetime.fromisoformat(row[0])
        return max((self.clock() - oldest).total_seconds(), 0.0)

    # -- threads ------------------------------------------------------------------------------

    def start(self, threads: int | None = None) -> None:
        if self._threads:
            return
        self._stop.clear()
        for n in range(threads or self.settings.concurrency):
            thread = threading.Thread(target=self._loop, name=f"taskman-webhooks-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.ring()
        limit = self.settings.timeout + 5 if timeout is None else timeout
        for thread in self._threads:
            thread.join(limit)
        self._threads = []

    def wake(self) -> None:
        self._wake.ring()

    def request_stop(self) -> None:
        """Ask the threads to stop (from a signal handler): :meth:`run_until_stopped` returns, then :meth:`stop`."""
        self._stop.set()  # only: a signal handler must not wait for a lock a delivery thread may hold

    def run_until_stopped(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def _loop(self) -> None:
        untraced()
        while not self._stop.is_set():
            seen = self._wake.rings()
            try:
                busy = self.deliver_next()
                if time.monotonic() - self._last_prune > PRUNE_EVERY:
                    self._last_prune = time.monotonic()
                    with self.runtime.activated():
                        try:
                            self.prune()
                        finally:
                            taskman.release_connection(self.db)
            except Exception as exc:
                log.warning("webhooks_round_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                busy = False
            if not busy:
                self._wake.wait(seen, self.settings.poll_interval)
