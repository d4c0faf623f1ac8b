"""The outbox: events written in their change's transaction, fed to the listeners from what committed.

Plain Python over the database (no Falcon).  :meth:`Outbox.record` runs
inside the caller's transaction, last: it inserts one row per event and
returns the delivery the core runs once the responder returns.  On
PostgreSQL it first takes a transaction-scoped advisory lock, held until
the commit: ids are then handed out in commit order, so a reader that sees
id ``n`` sees every id below it that will ever exist, and the feed can be
walked by id without missing an event that commits late.  SQLite has one
writer at a time, which gives the same order for free.

Each row carries ``dispatched`` (have the in-process listeners heard of
it) and a lease: the request that committed it delivers it and
acknowledges it (acknowledgements are written in batches by the
background round).  A row still not dispatched when its lease runs out
belongs to a worker that died between the commit and the acknowledgement:
any worker's background round claims it, delivers it and marks it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import peewee

import taskman

from .settings import EventsSettings

log = logging.getLogger("taskman.events")

#: Any constant: "taskman events", so the outbox's lock is told apart from other advisory locks.
ADVISORY_LOCK_KEY = 0x7A5C3E01
#: Rows claimed for redelivery, or handed to a consumer, per transaction.
BATCH = 200
#: Events inserted per statement when recording (10 parameters each).
INSERT_ROWS = 1000
#: Old rows deleted per transaction when pruning: short transactions that never hold writers up for long.
PRUNE_BATCH = 500

Consumer = Callable[[list[dict[str, Any]]], Callable[[], None] | None]


def utcnow() -> datetime.datetime:
    """Naive UTC, the form every timestamp column holds."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rfc3339(value: Any) -> str:
    if isinstance(value, str):  # SQLite hands timestamps back as text in raw queries
        value = datetime.datetime.fromisoformat(value)
    return str(value.isoformat(timespec="microseconds")) + "Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return rfc3339(value.astimezone(datetime.UTC).replace(tzinfo=None) if value.tzinfo else value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def encode(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default)


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


@attrs.frozen
class Actor:
    """Who caused the changes of the request being served: the principal's name and the request id."""

    principal: str | None = None
    request_id: str | None = None


#: Set around each responder (:func:`recording_actor`); read when its events are recorded.
_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("taskman_events_actor", default=None)


def actor_of(req: Any) -> Actor:
    """Who calls, as an identity plugin put it on ``req.context.auth`` (anything with a ``name``); the request id."""
    context = getattr(req, "context", None)
    principal = getattr(context, "auth", None)
    name = getattr(principal, "name", None) if principal is not None else None
    request_id = getattr(context, "request_id", None)
    return Actor(
        name if isinstance(name, str) else None,
        request_id if isinstance(request_id, str) else None,
    )


def recording_actor(responder: Callable[..., Any]) -> Callable[..., Any]:
    """A responder wrapper: the events its changes record name who sent the request."""

    @functools.wraps(responder)
    def respond(req: Any, resp: Any, **params: Any) -> Any:
        token = _actor.set(actor_of(req))
        try:
            return responder(req, resp, **params)
        finally:
            _actor.reset(token)

    return respond


def is_postgres(db: Any) -> bool:
    return isinstance(getattr(db, "obj", db), peewee.PostgresqlDatabase)


def stamp(db: Any, value: datetime.datetime) -> Any:
    """A timestamp as a query parameter: SQLite compares text, so always with microseconds."""
    if is_postgres(db):
        return value
    return value.isoformat(" ", timespec="microseconds")


def write_transaction(db: Any) -> Any:
    """A write transaction; on SQLite the write lock is taken up front (a deferred one may fail at once when busy)."""
    target = getattr(db, "obj", db)
    return target.atomic() if is_postgres(target) else target.atomic(lock_type="IMMEDIATE")


COLUMNS = "id, type, occurred_at, principal, request_id, project_id, subject_kind, subject_id, payload"


def row_to_event(row: Sequence[Any]) -> dict[str, Any]:
    """A stored row as consumers, the feed and the webhooks see it."""
    event_id, kind, occurred_at, principal, request_id, project_id, subject_kind, subject_id, payload = row
    return {
        "id": int(event_id),
        "type": kind,
        "occurred_at": rfc3339(occurred_at),
        "principal": principal,
        "request_id": request_id,
        "project_id": project_id,
        "subject": None if subject_kind is None else {"kind": subject_kind, "id": subject_id},
        "data": json.loads(payload),
    }


#: Every outbox of this process, made afresh in a forked child (:func:`_after_fork_in_child`).
_outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for box in list(_outboxes):
        box.forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Outbox:
    """One app's outbox: recording, delivery to the listeners, and the background round."""

    def __init__(
        self,
        runtime: taskman.Runtime,
        settings: EventsSettings,
        subject_of: Callable[[str, dict[str, Any]], tuple[str, str] | None],
        clock: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.subject_of = subject_of
        self.clock = clock
        self.consumers: dict[str, tuple[str, Consumer]] = {}
        self._acks: set[int] = set()
        self._acks_lock = threading.Lock()
        self._wake = taskman.Wakeup()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune: float | None = None
        #: Notified whenever this process learns of new events (the feed's long polls wait on it).
        self.news = threading.Condition()
        self.waiting = threading.BoundedSemaphore(max(settings.max_waiting, 1))
        _outboxes.add(self)

    def forked(self) -> None:
        """In a forked child: no thread of the parent's runs here, and a lock one of them held stays held.

        Fresh locks and no thread, so the child's own start-up starts its
        round; the parent's pending acknowledgements are the parent's to write.
        """
        self._acks = set()
        self._acks_lock = threading.Lock()
        self._wake = taskman.Wakeup()
        self._stop = threading.Event()
        self._thread = None
        self.news = threading.Condition()
        self.waiting = threading.BoundedSemaphore(max(self.settings.max_waiting, 1))

    @property
    def db(self) -> Any:
        return self.runtime.database

    # -- recording, inside the caller's transaction ---------------------------------------

    def record(self, events: Sequence[tuple[str, dict[str, Any]]]) -> Callable[[], None]:
        """Insert ``events`` in the open transaction; return their delivery, for once it has committed."""
        actor = _actor.get() or Actor()
        db = self.db
        now = self.clock()
        lease = stamp(db, now + datetime.timedelta(seconds=self.settings.redeliver_after))
        occurred = stamp(db, now)
        rows = []
        for name, payload in events:
            subject = self.subject_of(name, payload)
            project = payload.get("project_id")
            rows.append(
                (
                    name,
                    occurred,
                    actor.principal,
                    actor.request_id,
                    project if isinstance(project, str) else None,
                    subject[0] if subject else None,
                    subject[1] if subject else None,
                    encode(payload),
                    False,
                    lease,
                )
            )
        if is_postgres(db):
            # Held until the commit: ids are taken, and become visible, in commit order.
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        stored: list[tuple[int, str, str]] = []
        # In statements of INSERT_ROWS: an import's thousands of events stay under the databases' parameter
        # limits (PostgreSQL's 65,535; SQLite's 32,766 in many builds).
        for start in range(0, len(rows), INSERT_ROWS):
            chunk = rows[start : start + INSERT_ROWS]
            values = ", ".join("(" + ", ".join([db.param] * 10) + ")" for _ in chunk)
            sql = (
                "INSERT INTO event_outbox (type, occurred_at, principal, request_id, project_id, subject_kind, "
                f"subject_id, payload, dispatched, lease_until) VALUES {values} RETURNING id"
            )
            ids = sorted(int(r[0]) for r in db.execute_sql(sql, [v for row in chunk for v in row]).fetchall())
            stored.extend((event_id, row[0], row[7]) for event_id, row in zip(ids, chunk, strict=True))
        return functools.partial(self._deliver_committed, stored)

    def _deliver_committed(self, stored: list[tuple[int, str, str]]) -> None:
        """Tell the listeners of events this process committed, then acknowledge them (in the background)."""
        for _, name, payload in stored:
            self.runtime.fire_event(name, json.loads(payload))
        self.acknowledge([event_id for event_id, _, _ in stored])
        self.announce()

    def acknowledge(self, ids: Sequence[int]) -> None:
        with self._acks_lock:
            self._acks.update(ids)
        self._wake.ring()

    def announce(self) -> None:
        """New events exist: wake the long polls and the background round (consumers follow at once)."""
        with self.news:
            self.news.notify_all()
        self._wake.ring()

    # -- the background round -------------------------------------------------------------

    def run_once(self, *, prune: bool | None = None) -> None:
        """One round: write acknowledgements, feed the consumers, redeliver orphans, prune when due."""
        with self.runtime.activated():
            try:
                self.flush_acks()
                for name in list(self.consumers):
                    while self.consume(name) == BATCH:
                        pass
                while self.redeliver() == BATCH:
                    pass
                if prune or (prune is None and self._prune_due()):
                    self.prune()
            finally:
                taskman.release_connection(self.db)

    def _prune_due(self) -> bool:
        now = time.monotonic()
        if self._last_prune is None or now - self._last_prune >= self.settings.prune_interval:
            self._last_prune = now
            return True
        return False

    def flush_acks(self) -> None:
        with self._acks_lock:
            ids, self._acks = sorted(self._acks), set()
        if not ids:
            return
        try:
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                marks = ", ".join([self.db.param] * len(chunk))
                with write_transaction(self.db):
                    self.db.execute_sql(f"UPDATE event_outbox SET dispatched = TRUE WHERE id IN ({marks})", chunk)
        except BaseException:
            with self._acks_lock:  # written next round; until then a redelivery would repeat them
                self._acks.update(ids)
            raise

    def redeliver(self) -> int:
        """Deliver events whose worker died before acknowledging them (their lease ran out); return how many."""
        db = self.db
        now = self.clock()
        lease = stamp(db, now + datetime.timedelta(seconds=self.settings.redeliver_after))
        p = db.param
        orphans = f"SELECT id FROM event_outbox WHERE NOT dispatched AND lease_until < {p}"
        # A plain read first: an idle round never takes SQLite's write lock.
        if db.execute_sql(f"{orphans} LIMIT 1", (stamp(db, now),)).fetchone() is None:
            return 0
        claim = f"{orphans} ORDER BY id LIMIT {BATCH}"
        if is_postgres(db):
            claim += " FOR UPDATE SKIP LOCKED"  # several workers share the work, none takes another's rows
        with write_transaction(db):
            rows = db.execute_sql(
                f"UPDATE event_outbox SET lease_until = {p} WHERE id IN ({claim}) RETURNING id, type, payload",
                (lease, stamp(db, now)),
            ).fetchall()
        rows = sorted(rows, key=lambda r: int(r[0]))
        with self._acks_lock:
            # Heard here already, the acknowledgement not yet written (a round that started before it came):
            # not an orphan, whatever the clock says.
            heard = self._acks.intersection(int(r[0]) for r in rows)
        orphans_found = [r for r in rows if int(r[0]) not in heard]
        for _, name, payload in orphans_found:
            self.runtime.fire_event(name, json.loads(payload))
        if orphans_found:
            log.warning("events_redelivered", extra={"count": len(orphans_found), "first": int(orphans_found[0][0])})
        if rows:
            self.acknowledge([int(r[0]) for r in rows])
            self.flush_acks()
        return len(rows)

    def consume(self, name: str) -> int:
        """Hand the next events after its position to consumer ``name`` in one transaction; return how many."""
        plugin, consumer = self.consumers[name]
        db = self.db
        p = db.param
        after: Callable[[], None] | None = None
        known = db.execute_sql(f"SELECT position FROM event_consumer WHERE name = {p}", (name,)).fetchone()
        (head,) = db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM event_outbox").fetchone()
        if known is None or int(head) <= int(known[0]):
            return 0  # nothing new: no write transaction (and no SQLite write lock) for an idle round
        try:
            with write_transaction(db):
                lock = " FOR UPDATE SKIP LOCKED" if is_postgres(db) else ""
                row = db.execute_sql(f"SELECT position FROM event_consumer WHERE name = {p}{lock}", (name,)).fetchone()
                if row is None:  # another worker feeds it right now
                    return 0
                events = [
                    row_to_event(r)
                    for r in db.execute_sql(
                        f"SELECT {COLUMNS} FROM event_outbox WHERE id > {p} ORDER BY id LIMIT {BATCH}", (int(row[0]),)
                    ).fetchall()
                ]
                if not events:
                    return 0
                after = consumer(events)
                db.execute_sql(
                    f"UPDATE event_consumer SET position = {p}, updated_at = {p} WHERE name = {p}",
                    (events[-1]["id"], stamp(db, self.clock()), name),
                )
        except taskman.UNAVAILABLE_ERRORS:
            raise
        except Exception as exc:
            # The consumer's failure: its position stays, the same events come again next round.
            log.exception("event_consumer_failed", extra={"consumer": name, "plugin": plugin})
            self.runtime.report_failure(plugin, "taskman_event_consumers", exc)
            return 0
        if after is not None:
            after()
        return len(events)

    def register_consumers(self, consumers: Mapping[str, tuple[str, Consumer]]) -> None:
        """Known consumers start at the newest event when first seen: a new consumer does not replay history."""
        self.consumers = dict(consumers)
        if not consumers:
            return
        db = self.db
        p = db.param
        with self.runtime.activated():
            try:
                with write_transaction(db):
                    (head,) = db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM event_outbox").fetchone()
                    for name in consumers:
                        conflict = " ON CONFLICT (name) DO NOTHING"
                        db.execute_sql(
                            f"INSERT INTO event_consumer (name, position, updated_at) VALUES ({p}, {p}, {p}){conflict}",
                            (name, int(head), stamp(db, self.clock())),
                        )
            finally:
                taskman.release_connection(db)

    def prune(self) -> int:
        """Delete delivered events older than the retention, in short batches; return how many."""
        db = self.db
        p = db.param
        cutoff = self.clock() - datetime.timedelta(days=self.settings.retention_days)
        total = 0
        while True:
            with write_transaction(db):
                deleted = db.execute_sql(
                    f"DELETE FROM event_outbox WHERE id IN (SELECT id FROM event_outbox WHERE occurred_at < {p} "
                    f"AND dispatched ORDER BY id LIMIT {PRUNE_BATCH})",
                    (stamp(db, cutoff),),
                ).rowcount
            total += int(deleted)
            if deleted < PRUNE_BATCH:
                break
        if total:
            log.info("events_pruned", extra={"count": total, "before": rfc3339(cutoff)})
        return total

    # -- the thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="taskman-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        self._stop.set()
        self._wake.ring()
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        with contextlib.suppress(Exception), self.runtime.activated():
            try:
                self.flush_acks()  # what this worker delivered is not delivered again by another
            finally:
                taskman.release_connection(self.db)

    def _loop(self) -> None:
        untraced()
        while not self._stop.is_set():
            seen = self._wake.rings()
            try:
                self.run_once()
            except Exception as exc:
                # A database outage, typically: the next round tries again.
                log.warning("events_round_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._wake.wait(seen, self.settings.poll_interval)

    # -- reading ------------------------------------------------------------------------

    def wait_for_news(self, timeout: float) -> None:
        with self.news:
            self.news.wait(timeout)


@contextlib.contextmanager
def reading(db: Any) -> Iterator[None]:
    """A read transaction: one snapshot for a whole page."""
    with getattr(db, "obj", db).atomic():
        yield
