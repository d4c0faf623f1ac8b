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
import functools
import importlib.metadata
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import falcon
import falcon.asgi
import falcon.media
import orjson

from taskman import errors
from taskman.asgi_adapters import RESPONDER_PREFIX, adapt_resource, is_nonblocking
from taskman.config import Config, load_config
from taskman.db import UNAVAILABLE_ERRORS, PooledDatabase, database, make_database, release_connection, using
from taskman.pipeline import Pipeline, PipelineError
from taskman.plugins import PluginError, Plugins, RouteContribution
from taskman.runtime import (
    AUTO_MIGRATE_ENVIRONMENTS,
    STARTUP_FAILURES,
    PendingMigrationsError,
    Runtime,
    StartupError,
    current_pid,
    debugging,
    deferring_events,
    describe_failure,
)
from taskman.servers import server_options

__all__ = [
    "AUTO_MIGRATE_ENVIRONMENTS",
    "App",
    "AsgiApp",
    "PendingMigrationsError",
    "RouteConflictError",
    "Runtime",
    "SafeguardError",
    "StartupError",
    "create_app",
    "routed_methods",
    "start",
    "stop",
]

log = logging.getLogger("taskman")


class RouteConflictError(StartupError):
    pass


#: Environments where a safeguard holds (pytest's essential plugins, as a contract any plugin may declare).
SAFEGUARDED_ENVIRONMENTS = frozenset({"production"})
#: Installed plugins declare their safeguard here: ``auth = "allow_anonymous"`` (the opt-out setting).
SAFEGUARD_ENTRY_POINT_GROUP = "taskman.safeguards"


class SafeguardError(StartupError):
    pass


def _safeguards(extra: Iterable[object]) -> dict[str, str]:
    """``{plugin: opt-out setting}`` of every plugin that guards the whole app, read without importing it."""
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=SAFEGUARD_ENTRY_POINT_GROUP)}
    for obj in extra:
        flag = getattr(obj, "taskman_safeguard", None)
        if isinstance(flag, str):
            declared[_plugin_name(obj)] = flag
    return declared


def _plugin_name(obj: object) -> str:
    return str(getattr(obj, "taskman_plugin_name", None) or getattr(obj, "__name__", None) or type(obj).__name__)


def check_safeguards(config: Config, extra: Iterable[object] = ()) -> None:
    """Refuse a production app with a safeguarding plugin disabled, unless its opt-out setting says so."""
    if config.environment not in SAFEGUARDED_ENVIRONMENTS:
        return
    for plugin, flag in sorted(_safeguards(extra).items()):
        if plugin in config.plugins.disable and not config.disabled_flag(plugin, flag):
            raise SafeguardError(
                f"plugin {plugin!r} is disabled in {config.environment}; set "
                f"APP_{plugin.upper()}__{flag.upper()}=true to run without it on purpose"
            )


class _ConnectionMiddleware:
    """Return the request thread's database connection to the pool, also after errors (WSGI)."""

    def __init__(self, db: PooledDatabase) -> None:
        self.db = db

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        release_connection(self.db)


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
        try:
            self.runtime.start(owner="lifespan")
        except STARTUP_FAILURES as exc:
            self.runtime.startup_failure = describe_failure(exc)
            raise

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        self.runtime.stop(owner="lifespan")


class App(falcon.App):  # type: ignore[type-arg]
    """``falcon.App`` that starts its plugins on the first request of each process."""

    taskman: Runtime

    def __call__(self, env: Any, start_response: Any) -> Any:
        runtime = self.taskman
        if runtime.state != "started" or runtime.pid != current_pid():
            runtime.start(owner="first-request")
        with using(runtime.database):  # this app's database while it serves the request
            return super().__call__(env, start_response)


class AsgiApp(falcon.asgi.App):  # type: ignore[type-arg]
    """``falcon.asgi.App`` that starts on lifespan (or the first request without lifespan)."""

    taskman: Runtime

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # type: ignore[override]
        runtime = self.taskman
        if (runtime.state != "started" or runtime.pid != current_pid()) and scope["type"] != "lifespan":
            await asyncio.to_thread(runtime.start, "first-request")
        if scope["type"] == "lifespan" and not debugging(runtime.config):
            send = _one_line_startup_failure(send, runtime)
        try:
            with using(runtime.database):  # this app's database while it serves (threads it hands work to too)
                await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # The server gave up on this request (graceful shutdown timed out): answer
            # 503 problem+json rather than let it send a bare 500, unless the response began.
            if scope["type"] != "http" or not await _send_cut_off(send, runtime.config.database.retry_after):
                raise


def _one_line_startup_failure(send: Any, runtime: Runtime) -> Any:
    """Falcon reports a failed start-up to the server with the whole traceback: say it in one line."""

    async def send_one_line(message: dict[str, Any]) -> None:
        if message.get("type") == "lifespan.startup.failed" and runtime.startup_failure:
            message = {**message, "message": f"taskman: error: {runtime.startup_failure}"}
        await send(message)

    return send_one_line


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


#: Types orjson would write on its own that the stdlib's encoder refuses (a responder sending one gets the 500
#: it always got); keys that are not strings are written as the stdlib writes them.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dump_json(media: Any) -> bytes:
    """A response's media as JSON, with orjson: an order of magnitude faster than ``json.dumps`` on a page of records.

    The bytes differ from ``json.dumps`` only in whitespace (none), in
    floats over 1e16 (``1e16``, not ``1e+16``) and in NaN and infinities
    (``null``, where ``json.dumps`` writes tokens JSON does not have).  What
    orjson cannot write (an integer over 64 bits, a type it leaves to the
    caller) goes to ``json.dumps`` as before.
    """
    try:
        return orjson.dumps(media, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(media, ensure_ascii=False).encode()


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


def answering_head(resource: object) -> object:
    """``resource``, answering HEAD wherever it answers GET (RFC 9110 section 9.1: a server MUST support both).

    The HEAD responder is the GET one: falcon sends the headers (Content-Length
    included) and no body.  A resource with its own ``on_head`` keeps it.
    """
    names = [n for n in dir(resource) if n.startswith(RESPONDER_PREFIX) and callable(getattr(resource, n))]
    heads = {
        "on_head" + name.removeprefix("on_get"): getattr(resource, name)
        for name in names
        if name.startswith("on_get") and "on_head" + name.removeprefix("on_get") not in names
    }
    if not heads:
        return resource
    namespace: dict[str, Any] = {"wrapped": resource, "__getattr__": lambda self, name: getattr(resource, name)}
    for name in names:
        namespace[name] = staticmethod(getattr(resource, name))
    for name, responder in heads.items():
        namespace[name] = staticmethod(responder)
    stand_in = type(type(resource).__name__, (), namespace)
    if is_nonblocking(resource):
        stand_in.taskman_nonblocking = True  # type: ignore[attr-defined]
    return stand_in()


def routed_methods(app: Any) -> dict[str, frozenset[str]]:
    """``{uri_template: methods}`` for every route of a built app: the methods its own responders answer.

    Falcon's default responders (``OPTIONS`` on every route, the 405s) are left
    out; HEAD is in wherever GET is (:func:`answering_head`).  The compiled
    router is walked directly: ``falcon.inspect`` also reads the source file of
    every responder, which cost about 0.4 s per app.
    """
    routed: dict[str, frozenset[str]] = {}

    def walk(nodes: Iterable[Any], parent: str) -> None:
        for node in nodes:
            path = f"{parent}/{node.raw_segment}"
            if node.resource is not None:
                routed[path] = frozenset(
                    method for method, responder in (node.method_map or {}).items() if not _is_falcon_default(responder)
                )
            walk(node.children or (), path)

    walk(app._router._roots, "")
    return routed


def _is_falcon_default(responder: Any) -> bool:
    function = responder.func if isinstance(responder, functools.partial) else responder
    return (getattr(function, "__module__", None) or "").startswith("falcon.")


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
        resource = wrap_responders(answering_head(route.resource), wrappers)
        resource = adapt_resource(resource, body_timeout=body_timeout) if asgi else resource
        try:
            app.add_route(route.uri_template, resource, **route.kwargs)
        except Exception as exc:
            raise PluginError(route.plugin, plugins.distribution_of(route.plugin), exc, "taskman_routes") from exc


def create_app(config: Config | None = None, *, asgi: bool = False, plugins: Iterable[object] = ()) -> App | AsgiApp:
    """Build the app from every enabled plugin.

    ``config`` defaults to :func:`taskman.config.load_config`; ``plugins``
    adds plugin objects to the discovered ones (handy in tests).  Every
    build-time check runs here (``taskman check`` builds both flavours);
    start-up hooks do not: see the module docstring.
    """
    extra = list(plugins)
    if config is None:
        config = load_config(extra_plugins=extra)
    check_safeguards(config, extra)
    registry = Plugins.discover(config.plugins.disable, extra, config.plugins.directory)
    db = make_database(config.database)
    database.initialize(db)
    runtime = Runtime(config=config, plugins=registry, database=db, asgi=asgi)
    registry.runtime = runtime
    registry.on_contained_failure = runtime.report_failure
    with runtime.activated():
        registry.configure(config)
        try:
            pipeline = Pipeline.compile(registry.middleware(config))
        except PipelineError as exc:
            raise registry.error(exc.plugin, str(exc), "taskman_middleware") from None
        # Under ASGI a sync responder's body is read on the event loop first, within the plugins' bound.
        body_timeout = server_options(registry, config, "asgi").body_timeout if asgi else None
        core: list[Any] = [_LifespanMiddleware(runtime)] if asgi else [_ConnectionMiddleware(db)]
        # Responders reach the runtime (to fire events, say) as ``req.taskman``: a
        # class attribute of this app's request type, so it costs no per-request work.
        base_request: type = falcon.asgi.Request if asgi else falcon.Request
        request_type = type("Request", (base_request,), {"taskman": runtime})
        app: App | AsgiApp
        app_class = AsgiApp if asgi else App
        middleware: list[Any] = [*core, *pipeline.middleware(asgi=asgi, body_timeout=body_timeout)]
        app = app_class(middleware=middleware, request_type=request_type)
        app.taskman = runtime
        runtime.app = app
        runtime.pipeline = pipeline
        errors.install(app, asgi=asgi, retry_after=config.database.retry_after, unavailable=UNAVAILABLE_ERRORS)
        app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=dump_json)
        # Events wait for the responder to return (outermost), outside any time limit a plugin adds.
        wrappers = [functools.partial(deferring_events, runtime)]
        wrappers += [wrapper for _, wrapper in registry.responder_wrappers(config)]
        runtime.routes = registry.routes(config)
        _add_routes(app, runtime.routes, registry, asgi, wrappers, body_timeout)
        registry.validate(config)
    if config.database.echo_sql:
        logging.getLogger("peewee").setLevel(logging.DEBUG)
    return app


def start(app: Any) -> bool:
    """Run start-up now (tests and embedding servers); a no-op if it already ran in this process."""
    return app.taskman.start(owner="explicit")  # type: ignore[no-any-return]


def stop(app: Any) -> bool:
    """Run shut-down now; a no-op if this process has not started."""
    return app.taskman.stop()  # type: ignore[no-any-return]
