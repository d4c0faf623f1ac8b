"""The handle every hook can take: :class:`Runtime`, one per app.

A runtime carries what a plugin needs of the app being built: its config
and typed settings, the plugin set, the database, event firing and a place
for the plugin's own per-app state.  It is ``app.taskman`` and
``req.taskman`` once the app exists, and the ``runtime`` argument of every
hook.  Two apps in one process share no runtime, no database and no state.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from taskman.config import Config, ConfigError
from taskman.db import UNAVAILABLE_ERRORS, PooledDatabase, release_connection, using
from taskman.migrations import MigrationError, Migrations
from taskman.plugins import PluginError, Plugins, RouteContribution

T = TypeVar("T")

log = logging.getLogger("taskman")

#: Environments in which start-up applies pending migrations itself; elsewhere it refuses to start.
AUTO_MIGRATE_ENVIRONMENTS = frozenset({"development", "testing"})

#: What a responder's committed changes owe the listeners, delivered once it returns (:func:`deferring_events`):
#: an event ``(name, payload)``, or an outbox's delivery (a callable, from :meth:`Runtime.record_events`).
Deferred = tuple[str, dict[str, Any]] | Callable[[], None]
_pending_events: contextvars.ContextVar[list[Deferred] | None] = contextvars.ContextVar(
    "taskman_pending_events", default=None
)


def _nothing() -> None:
    pass


class StartupError(Exception):
    """The app cannot start; the message is the one line an operator needs."""


class PendingMigrationsError(StartupError):
    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        super().__init__(
            f"{len(pending)} migration(s) pending ({', '.join(pending)}); "
            "run `taskman migrate` before starting in this environment"
        )


#: What stops start-up for a reason an operator can act on: reported in one line, the traceback only with --debug.
STARTUP_FAILURES: tuple[type[BaseException], ...] = (
    ConfigError,
    PluginError,
    MigrationError,
    StartupError,
    *UNAVAILABLE_ERRORS,
)


def describe_failure(exc: BaseException) -> str:
    """The one line that says why start-up failed."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return f"database unavailable: {type(exc).__name__}: {exc}".strip()
    if isinstance(exc, ConfigError):
        return f"invalid configuration: {exc}"
    return str(exc)


def debugging(config: Config | None = None) -> bool:
    """Whether start-up failures show their traceback: ``--debug`` (exported to workers) or ``debug = true``."""
    flag = os.environ.get("APP_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(config is not None and config.debug)


class _Process:
    """This process's pid, kept current across ``fork`` so the request path needs no system call."""

    pid = os.getpid()

    @classmethod
    def forked(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_Process.forked)


def current_pid() -> int:
    return _Process.pid


@attrs.define(eq=False)
class Runtime:
    """What a taskman app carries besides falcon's own state: ``app.taskman``, and every hook's ``runtime``."""

    config: Config
    plugins: Plugins
    database: PooledDatabase
    #: True for the ASGI flavour.
    asgi: bool = False
    #: The falcon app, once built (None while hooks build it).
    app: Any = None
    #: Every route of the app and the plugin that serves it, once built.
    routes: list[RouteContribution] = attrs.field(factory=list)
    #: The ordered middleware (a :class:`taskman.pipeline.Pipeline`), once built.
    pipeline: Any = None
    state: str = "created"  # created | starting | started | stopping | stopped
    #: Why start-up failed, in one line (the ASGI lifespan reports it so).
    startup_failure: str | None = None
    pid: int | None = None
    owner: str | None = None
    _components: dict[Any, Any] = attrs.field(factory=dict)
    _lock: threading.RLock = attrs.field(factory=threading.RLock)

    # -- what plugins use -----------------------------------------------------

    def settings(self, settings_class: type[T]) -> T:
        """This app's values of a declared settings section (``taskman.settings_section``)."""
        return self.config.settings(settings_class)

    def component(self, kind: Any, create: Callable[[], T]) -> T:
        """This app's one instance of a plugin's state, made by ``create()`` on first use.

        ``kind`` is the key, usually the state's class: per-app state lives
        here, never in a module-level registry.
        """
        with self._lock:
            if kind not in self._components:
                self._components[kind] = create()
            return self._components[kind]  # type: ignore[no-any-return]

    def find(self, kind: Any) -> Any:
        """The instance :meth:`component` made for ``kind``, or None if none was made."""
        with self._lock:
            return self._components.get(kind)

    def fire_event(self, name: str, payload: Mapping[str, Any]) -> None:
        """Tell every ``taskman_event`` listener of a domain event whose change has committed.

        Fired while a responder runs, the event waits until the responder
        returns (:func:`deferring_events`); elsewhere listeners run now.
        Each listener runs in isolation: one that raises is logged and
        reported, and never stops the others or changes the response.
        """
        pending = _pending_events.get()
        if pending is not None:
            pending.append((name, dict(payload)))
        else:
            self.plugins.event(name, payload)

    def record_events(self, events: Sequence[tuple[str, Mapping[str, Any]]]) -> Callable[[], None]:
        """Record a change's events inside its open transaction; return what to call once it has committed.

        Call it last in the transaction, then call what it returns after the
        commit (never after a rollback).  With an outbox plugin
        (``taskman_record_events``, the ``events`` plugin) the events are
        written in the transaction itself, so they exist exactly when the
        change does, and the outbox feeds the listeners from what committed;
        without one, the returned callable fires them (:meth:`fire_event`).
        Either way the listeners hear of them when the responder returns, or
        at once outside a responder.
        """
        batch = [(name, dict(payload)) for name, payload in events]
        if not batch:
            return _nothing
        deliver: Callable[[], None] | None = self.plugins.call_first("taskman_record_events", events=batch)
        if deliver is None:

            def fire() -> None:
                for name, payload in batch:
                    self.fire_event(name, payload)

            return fire
        outbox_delivery: Callable[[], None] = deliver

        def committed() -> None:
            pending = _pending_events.get()
            if pending is not None:
                pending.append(outbox_delivery)
            else:
                self._deliver(outbox_delivery)

        return committed

    def _deliver(self, delivery: Callable[[], None]) -> None:
        """Run an outbox's delivery; a failure is its plugin's (logged), never the request's."""
        try:
            delivery()
        except Exception:
            log.exception("outbox_delivery_failed")

    @contextlib.contextmanager
    def activated(self) -> Iterator[Runtime]:
        """Run code as this app: :data:`taskman.database` is this app's database meanwhile."""
        with using(self.database):
            yield self

    # -- the core's own -------------------------------------------------------------

    def report_failure(self, plugin: str, hook: str, error: BaseException) -> None:
        """A contained plugin failure: listeners of ``taskman_plugin_failed`` count it (metrics)."""
        self.plugins.plugin_failed(plugin, hook, error)

    @property
    def started(self) -> bool:
        # Asked on every request: compare with the pid cached for this process
        # (refreshed in a forked child) instead of calling os.getpid().
        return self.state == "started" and self.pid == _Process.pid

    def migrations(self) -> Migrations:
        return Migrations(self.database, self.plugins.migrations())

    def ensure_migrated(self) -> list[str]:
        """The one migrate-or-refuse policy: apply pending migrations in development and testing, else refuse."""
        migrations = self.migrations()
        if not migrations.runners:
            return []
        pending = migrations.pending()
        if not pending:
            return []
        if self.config.environment in AUTO_MIGRATE_ENVIRONMENTS:
            applied = migrations.apply()
            log.info("migrations_applied", extra={"migrations": applied})
            return applied
        raise PendingMigrationsError(pending)

    def start(self, owner: str = "explicit") -> bool:
        """Run start-up once in this process; return False if it already ran."""
        with self._lock, self.activated():
            if self.started:
                return False
            self.state, self.pid, self.owner = "starting", os.getpid(), owner
            try:
                self.ensure_migrated()
                self.plugins.startup(self.app, self.config)
            except BaseException:
                self.state = "created"
                raise
            finally:
                release_connection(self.database)
            self.state = "started"
            if owner != "lifespan":
                atexit.register(self._stop_at_exit)
            log.info("startup_complete", extra={"pid": self.pid, "owner": owner})
            return True

    def stop(self, owner: str | None = None) -> bool:
        """Run shut-down if this process started; ``owner`` stops only what it started."""
        with self._lock, self.activated():
            if not self.started or (owner is not None and owner != self.owner):
                return False
            self.state = "stopping"
            atexit.unregister(self._stop_at_exit)
            try:
                for failure in self.plugins.shutdown(self.app, self.config):
                    log.error("shutdown_hook_failed", extra={"error": str(failure)})
            finally:
                release_connection(self.database)
                self.database.close_all()
                self.state = "stopped"
            log.info("shutdown_complete", extra={"pid": self.pid, "owner": self.owner})
            return True

    def _stop_at_exit(self) -> None:
        self.stop()


def deferring_events(runtime: Runtime, responder: Callable[..., Any]) -> Callable[..., Any]:
    """``responder``, with the events it fires delivered once it returns (outside its time limit).

    Listeners then run in the thread that served the request, before the
    response goes out; the changes they hear of have committed, also when
    the responder failed afterwards.
    """

    @functools.wraps(responder)
    def respond(*args: Any, **kwargs: Any) -> Any:
        pending: list[Deferred] = []
        token = _pending_events.set(pending)
        try:
            return responder(*args, **kwargs)
        finally:
            _pending_events.reset(token)
            for item in pending:
                if callable(item):
                    runtime._deliver(item)
                else:
                    runtime.plugins.event(*item)

    return respond
