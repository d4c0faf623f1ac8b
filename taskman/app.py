"""One factory, two flavours: ``falcon.App`` and ``falcon.asgi.App`` from one plugin set.

Start-up (migrations, then every ``taskman_startup`` hook) runs once per
process.  Under ASGI the lifespan protocol drives it; WSGI has no lifespan,
so the first request in a process starts it (``taskman.wsgi`` starts it at
import, in each gunicorn worker) and ``atexit`` runs shut-down.  Whoever
starts the app stops it: a test that starts it explicitly is not shut down
by the one-shot lifespan events of falcon's test client.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import falcon
import falcon.asgi

from taskman import errors
from taskman.asgi_adapters import MIDDLEWARE_METHODS, RESPONDER_PREFIX, adapt_middleware, adapt_resource, is_nonblocking
from taskman.config import Config, load_config
from taskman.db import UNAVAILABLE_ERRORS, PooledDatabase, database, make_database, release_connection
from taskman.migrations import Migrations
from taskman.plugins import PluginError, Plugins, RouteContribution
from taskman.servers import server_options

log = logging.getLogger("taskman")

AUTO_MIGRATE_ENVIRONMENTS = frozenset({"development", "testing"})

#: A middleware object needs one of these (sync or async request methods, or an ASGI start-up handler).
MIDDLEWARE_METHOD_NAMES = (*MIDDLEWARE_METHODS, *(f"{m}_async" for m in MIDDLEWARE_METHODS), "process_startup")


class StartupError(Exception):
    """The app cannot start; the message is the one line an operator needs."""


class PendingMigrationsError(StartupError):
    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        super().__init__(
            f"{len(pending)} migration(s) pending ({', '.join(pending)}); "
            "run `taskman migrate` before starting in this environment"
        )


class RouteConflictError(StartupError):
    pass


#: Plugins that guard the whole app: switching one off in production also needs
#: its opt-out flag set explicitly (as pytest's core names its essential plugins).
SAFEGUARDS: dict[str, str] = {"auth": "allow_anonymous"}
SAFEGUARDED_ENVIRONMENTS = frozenset({"production"})


class SafeguardError(StartupError):
    pass


def check_safeguards(config: Config) -> None:
    """Refuse a production app with a safeguard plugin disabled, unless its opt-out flag says so."""
    if config.environment not in SAFEGUARDED_ENVIRONMENTS:
        return
    for plugin, flag in SAFEGUARDS.items():
        if plugin in config.plugins.disable and not config.disabled_flag(plugin, flag):
            raise SafeguardError(
                f"plugin {plugin!r} is disabled in {config.environment}; set "
                f"APP_{plugin.upper()}__{flag.upper()}=true to run without it on purpose"
            )


class _ConnectionMiddleware:
    """Return the request thread's database connection to the pool, also after errors (WSGI)."""

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        release_connection(database)


class _LifespanMiddleware:
    """Drive start-up and shut-down from the ASGI lifespan protocol."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def process_startup(self, scope: Any, event: Any) -> None:
        # Sync code runs on the loop's default pool: as many threads as server.threads, which the
        # database pool is sized for (asyncio's own default grows with the CPUs, not with the pool).
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(self.runtime.config.server.threads, thread_name_prefix="taskman")
        )
        self.runtime.start(owner="lifespan")

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        self.runtime.stop(owner="lifespan")


class _Process:
    """This process's pid, kept current across ``fork`` so the request path needs no system call."""

    pid = os.getpid()

    @classmethod
    def forked(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_Process.forked)


@attrs.define(eq=False)
class Runtime:
    """What a taskman app carries besides falcon's own state: ``app.taskman``."""

    config: Config
    plugins: Plugins
    database: PooledDatabase
    app: Any = None
    state: str = "created"  # created | starting | started | stopping | stopped
    pid: int | None = None
    owner: str | None = None
    _lock: threading.RLock = attrs.field(factory=threading.RLock)

    @property
    def started(self) -> bool:
        # Asked on every request: compare with the pid cached for this process
        # (refreshed in a forked child) instead of calling os.getpid().
        return self.state == "started" and self.pid == _Process.pid

    def migrations(self) -> Migrations:
        return Migrations(self.database, self.plugins.migrations())

    def fire_event(self, name: str, payload: Mapping[str, Any]) -> None:
        """Notify every ``taskman_event`` listener of a domain event."""
        self.plugins.event(name, payload)

    def start(self, owner: str = "explicit") -> bool:
        """Run start-up once in this process; return False if it already ran."""
        with self._lock:
            if self.started:
                return False
            self.state, self.pid, self.owner = "starting", os.getpid(), owner
            try:
                self._apply_or_check_migrations()
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
        with self._lock:
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

    def _apply_or_check_migrations(self) -> None:
        migrations = self.migrations()
        if not migrations.runners:
            return
        pending = migrations.pending()
        if not pending:
            return
        if self.config.environment in AUTO_MIGRATE_ENVIRONMENTS:
            applied = migrations.apply()
            log.info("migrations_applied", extra={"migrations": applied})
        else:
            raise PendingMigrationsError(pending)


class App(falcon.App):  # type: ignore[type-arg]
    """``falcon.App`` that starts its plugins on the first request of each process."""

    taskman: Runtime

    def __call__(self, env: Any, start_response: Any) -> Any:
        runtime = self.taskman
        if runtime.state != "started" or runtime.pid != _Process.pid:
            runtime.start(owner="first-request")
        return super().__call__(env, start_response)


class AsgiApp(falcon.asgi.App):  # type: ignore[type-arg]
    """``falcon.asgi.App`` that starts on lifespan (or the first request without lifespan)."""

    taskman: Runtime

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # type: ignore[override]
        runtime = self.taskman
        if (runtime.state != "started" or runtime.pid != _Process.pid) and scope["type"] != "lifespan":
            await asyncio.to_thread(runtime.start, "first-request")
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # The server gave up on this request (graceful shutdown timed out): answer
            # 503 problem+json rather than let it send a bare 500, unless the response began.
            if scope["type"] != "http" or not await _send_cut_off(send, runtime.config.database.retry_after):
                raise


_CUT_OFF = json.dumps(
    {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "The server is shutting down and stopped this request; retry.",
    }
).encode()


async def _send_cut_off(send: Any, retry_after: int) -> bool:
    """Send a 503 problem to a request cut off by the server; False if its response had already started."""
    headers = [
        (b"content-type", errors.PROBLEM_CONTENT_TYPE.encode()),
        (b"retry-after", str(retry_after).encode()),
        (b"connection", b"close"),
    ]
    try:
        await send({"type": "http.response.start", "status": 503, "headers": headers})
    except RuntimeError:  # the response had started: nothing sane to add
        return False
    await send({"type": "http.response.body", "body": _CUT_OFF})
    return True


def _route_key(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template.rstrip("/") or "/")


def wrap_responders(resource: object, wrappers: Sequence[Callable[[Callable[..., Any]], Callable[..., Any]]]) -> object:
    """Return ``resource`` with every blocking sync responder decorated by ``wrappers`` (outermost first).

    Coroutine responders and ``nonblocking`` ones are left alone: the
    decorators are for work that holds a thread.  The result is a stand-in
    object with the same responders (and the original as ``wrapped``), so
    the plugin's resource itself is never changed.
    """
    if not wrappers or is_nonblocking(resource):
        return resource
    names = [n for n in dir(resource) if n.startswith(RESPONDER_PREFIX) and callable(getattr(resource, n))]
    blocking = [
        n
        for n in names
        if not inspect.iscoroutinefunction(getattr(resource, n)) and not is_nonblocking(getattr(resource, n))
    ]
    if not blocking:
        return resource
    namespace: dict[str, Any] = {"wrapped": resource, "__getattr__": lambda self, name: getattr(resource, name)}
    for name in names:
        responder = getattr(resource, name)
        if name in blocking:
            for wrapper in reversed(wrappers):
                responder = wrapper(responder)
        namespace[name] = staticmethod(responder)
    return type(type(resource).__name__, (), namespace)()


def _add_routes(
    app: falcon.App,  # type: ignore[type-arg]
    routes: Iterable[RouteContribution],
    plugins: Plugins,
    asgi: bool,
    wrappers: Sequence[Callable[[Callable[..., Any]], Callable[..., Any]]] = (),
    body_timeout: float | None = None,
) -> None:
    owners: dict[str, RouteContribution] = {}
    for route in routes:
        key = _route_key(route.uri_template)
        other = owners.get(key)
        if other is not None:
            raise RouteConflictError(
                f"route {route.uri_template} is claimed by plugin {other.plugin!r} "
                f"({plugins.distribution_of(other.plugin)}) and plugin {route.plugin!r} "
                f"({plugins.distribution_of(route.plugin)})"
            )
        owners[key] = route
        resource = wrap_responders(route.resource, wrappers)
        resource = adapt_resource(resource, body_timeout=body_timeout) if asgi else resource
        try:
            app.add_route(route.uri_template, resource, **route.kwargs)
        except Exception as exc:
            raise PluginError(route.plugin, plugins.distribution_of(route.plugin), exc, "taskman_routes") from exc


def create_app(config: Config | None = None, *, asgi: bool = False, plugins: Iterable[object] = ()) -> App | AsgiApp:
    """Build the app from every enabled plugin.

    ``config`` defaults to :func:`taskman.config.load_config`; ``plugins``
    adds plugin objects to the discovered ones (handy in tests).  Start-up
    hooks do not run here: see the module docstring.
    """
    extra = list(plugins)
    if config is None:
        config = load_config(extra_plugins=extra)
    check_safeguards(config)
    registry = Plugins.discover(config.plugins.disable, extra)
    registry.configure(config)
    db = make_database(config.database)
    database.initialize(db)
    runtime = Runtime(config=config, plugins=registry, database=db)

    contributed = registry.middleware(config)
    middleware: list[Any]
    # Under ASGI a sync responder's body is read on the event loop first, within the plugins' bound.
    body_timeout = server_options(registry, config, "asgi").body_timeout if asgi else None
    if asgi:
        middleware = [
            _LifespanMiddleware(runtime),
            *(adapt_middleware(mw, body_timeout=body_timeout) for _, mw in contributed),
        ]
    else:
        middleware = [_ConnectionMiddleware(), *(mw for _, mw in contributed)]
    for plugin, component in contributed:
        if not any(hasattr(component, m) for m in MIDDLEWARE_METHOD_NAMES):
            raise PluginError(
                plugin,
                registry.distribution_of(plugin),
                f"{component!r} has no middleware method",
                "taskman_middleware",
            )

    # Responders reach the runtime (to fire events, say) as ``req.taskman``: a
    # class attribute of this app's request type, so it costs no per-request work.
    base_request: type = falcon.asgi.Request if asgi else falcon.Request
    request_type = type("Request", (base_request,), {"taskman": runtime})
    app: App | AsgiApp
    if asgi:
        app = AsgiApp(middleware=middleware, request_type=request_type)
    else:
        app = App(middleware=middleware, request_type=request_type)
    app.taskman = runtime
    runtime.app = app
    errors.install(app, asgi=asgi, retry_after=config.database.retry_after, unavailable=UNAVAILABLE_ERRORS)
    wrappers = [wrapper for _, wrapper in registry.responder_wrappers(config)]
    _add_routes(app, registry.routes(config), registry, asgi, wrappers, body_timeout)
    if config.database.echo_sql:
        logging.getLogger("peewee").setLevel(logging.DEBUG)
    return app


def start(app: Any) -> bool:
    """Run start-up now (tests and embedding servers); a no-op if it already ran in this process."""
    return app.taskman.start(owner="explicit")  # type: ignore[no-any-return]


def stop(app: Any) -> bool:
    """Run shut-down now; a no-op if this process has not started."""
    return app.taskman.stop()  # type: ignore[no-any-return]
