"""The database layer: a pooled peewee database built from a URL.

Plugins bind their models to :data:`database`, a proxy the app factory
points at the configured database.  Connections open lazily on the first
query and go back to the pool at the end of the request (or of each
offloaded sync call under ASGI), also when the request fails.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase, PooledSqliteDatabase

from taskman.config import DatabaseSettings

#: The database of the app being served in this context (a request, a hook call, a command).
_current: contextvars.ContextVar[peewee.Database | None] = contextvars.ContextVar("taskman_database", default=None)


class AppDatabase(peewee.DatabaseProxy):  # type: ignore[misc]
    """A proxy to the database of the app at work in the current context.

    Models bind to it once, at import; each app activates its own database
    around its requests and hooks (:func:`using`), so two apps in one process
    never share one.  Outside any app it is the database of the app built last.
    """

    __slots__ = ("_default",)

    def __init__(self) -> None:
        object.__setattr__(self, "_callbacks", [])
        object.__setattr__(self, "_default", None)

    def initialize(self, obj: Any) -> None:
        object.__setattr__(self, "_default", obj)
        for callback in self._callbacks:
            callback(obj)

    @property
    def obj(self) -> Any:
        current = _current.get()
        return self._default if current is None else current


@contextlib.contextmanager
def using(db: peewee.Database) -> Iterator[None]:
    """Point :data:`database` at ``db`` in this context (and the threads it hands work to)."""
    token = _current.set(db)
    try:
        yield
    finally:
        _current.reset(token)


#: Bind plugin models to this proxy: ``class Meta: database = taskman.database``.
database = AppDatabase()

#: Errors that mean "the database cannot serve right now": answered with 503 + Retry-After.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    peewee.OperationalError,
    peewee.InterfaceError,
    MaxConnectionsExceeded,
)


class _BoundedPoolMixin:
    """Keep at most ``pool_size`` idle connections; overflow ones close on return.

    peewee's pool only knows a maximum; ``pool_size`` / ``max_overflow`` are
    the knobs our operators already use (the seed's SQLAlchemy settings).
    """

    _pool_size: int
    _pool_lock: Any
    _connections: list[Any]

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        super()._close(conn, close_conn)  # type: ignore[misc]
        with self._pool_lock:
            while len(self._connections) > self._pool_size:
                _, _, extra = heapq.heappop(self._connections)
                self._close_raw(extra)  # type: ignore[attr-defined]
            # peewee wakes one waiter; a fork waiting for the pool to go idle is one more.
            self._pool_available.notify_all()  # type: ignore[attr-defined]


class SqliteDatabase(_BoundedPoolMixin, PooledSqliteDatabase):  # type: ignore[misc]
    pass


class PostgresqlDatabase(_BoundedPoolMixin, PooledPostgresqlDatabase):  # type: ignore[misc]
    pass


#: What :func:`make_database` builds.
PooledDatabase = SqliteDatabase | PostgresqlDatabase

#: Every pool this process made, for the fork handlers below.
_pools: weakref.WeakSet[Any] = weakref.WeakSet()

#: How long a fork waits for other threads to hand their connections back.
FORK_WAIT_SECONDS = 5.0

#: The pools whose lock the forking thread holds, from just before the fork until just after it.
_held_across_fork: list[Any] = []


def _quiet_pools_before_fork() -> None:
    """Fork only while no other thread is inside the database.

    SQLite keeps its file locks in a table of the whole process: a thread in
    the middle of a transaction at the instant of the fork leaves the child
    a lock that nobody there will ever release, and the child's first write
    fails with "database is locked" (or hangs on a mutex held for ever).  So
    the forking thread takes each pool's lock, waits (a bounded while) until
    the connections other threads checked out come back, and holds the locks
    across the fork, so none is checked out meanwhile.  Its own connection,
    if it holds one, is its own business.
    """
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    for db in list(_pools):
        db._pool_lock.acquire()
        _held_across_fork.append(db)
        own = None if db._state.closed else db.conn_key(db._state.conn)
        while any(key != own for key in db._in_use):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break  # a connection some thread never gives back: fork as before rather than never
            db._pool_available.wait(min(remaining, 0.1))


def _release_pools_after_fork() -> None:
    while _held_across_fork:
        _held_across_fork.pop()._pool_lock.release()


def _fresh_pools_after_fork() -> None:
    """A forked child (gunicorn ``--preload``) starts each pool afresh.

    Plugins run background threads (the events and webhooks plugins do): one
    of them may hold the pool's lock, or a connection, at the instant of the
    fork, and that lock would stay held in the child for ever.  The child
    gets new locks and an empty pool; the parent's connections are its
    parent's (closing one here would end the parent's session), so they are
    kept referenced, never closed nor used.
    """
    _held_across_fork.clear()
    for db in list(_pools):
        inherited = [conn for _, _, conn in db._connections] + [pc.connection for pc in db._in_use.values()]
        db._inherited_connections = [*getattr(db, "_inherited_connections", ()), *inherited]
        db._connections = []
        db._in_use = {}
        db._pool_lock = threading.RLock()
        db._pool_available = threading.Condition(db._pool_lock)
        db._lock = threading.Lock()
        db._state.reset()


os.register_at_fork(
    before=_quiet_pools_before_fork,
    after_in_parent=_release_pools_after_fork,
    after_in_child=_fresh_pools_after_fork,
)


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> str:
    """``sqlite:///taskman.db`` is relative to the working directory, ``sqlite:////abs.db`` absolute."""
    path = url[len("sqlite://") :]
    path = path[1:] if path.startswith("/") else path
    return unquote(path.split("?", 1)[0]) or ":memory:"


def make_database(settings: DatabaseSettings) -> PooledDatabase:
    """Build the pooled database that ``settings.url`` describes."""
    pool: dict[str, Any] = {
        "max_connections": settings.pool_size + settings.max_overflow,
        "timeout": settings.pool_timeout,
        "stale_timeout": 3600,
    }
    db: PooledDatabase
    if is_sqlite_url(settings.url):
        db = SqliteDatabase(
            sqlite_path(settings.url),
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": settings.busy_timeout_ms,
                "synchronous": "normal",
            },
            check_same_thread=False,
            **pool,
        )
    else:
        parts = urlsplit(settings.url)
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        params.setdefault("connect_timeout", max(1, round(settings.connect_timeout)))
        if settings.statement_timeout_ms:
            params.setdefault("options", f"-c statement_timeout={settings.statement_timeout_ms}")
        db = PostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            host=parts.hostname,
            port=parts.port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            prefer_psycopg3=True,
            **params,
            **pool,
        )
    db._pool_size = settings.pool_size  # type: ignore[attr-defined]
    _pools.add(db)
    return db


def release_connection(db: peewee.Database | peewee.DatabaseProxy) -> None:
    """Return this thread's connection to the pool, if it opened one."""
    target: Any = db.obj if isinstance(db, peewee.DatabaseProxy) else db
    if target is None or target.is_closed():
        return
    if target.in_transaction():
        # A leaked atomic(): forget it here; the pool rolls back on check-in.
        target._state.transactions.clear()
    target.close()


def ping(db: peewee.Database) -> None:
    """One round trip; raises one of :data:`UNAVAILABLE_ERRORS` when the database is not there."""
    try:
        db.execute_sql("SELECT 1").fetchone()
    finally:
        release_connection(db)
