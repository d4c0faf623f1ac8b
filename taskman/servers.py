"""Running the app under uvicorn (ASGI) and gunicorn (WSGI), as ``taskman serve``, the deploy kit and the bench do.

The worker model and the request edge are decided here, once for both
flavours: :class:`ServerOptions` gathers the bounds plugins contribute
(``taskman_server_options``: the longest request target and header section
the app checks itself, the time a client gets to send its head and its
body), and :func:`gunicorn_settings` / :func:`uvicorn_settings` turn them and
the core's ``[server]`` settings into each server's own.  The servers run
taskman's hardened variants (:mod:`taskman.gunicorn_worker`,
:mod:`taskman.uvicorn_protocol`).  See docs/security.md.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from taskman.config import Config, ConfigError, Problem, ServerSettings

if TYPE_CHECKING:
    from taskman.plugins import Plugins

#: The uvicorn protocol every taskman ASGI server runs (an import string: uvicorn's workers are spawned, not forked).
UVICORN_PROTOCOL = "taskman.uvicorn_protocol:H11Protocol"

#: A request line is the target plus the method, two spaces and ``HTTP/1.1``: room for any method.
REQUEST_LINE_SLACK = 64
#: Beyond the target and the headers the app checks, a head holds line breaks and ": " separators.
HEAD_SLACK = 8192
#: gunicorn's own ceiling for ``limit_request_line``; 0 lifts it (the worker then bounds the whole head).
GUNICORN_MAX_REQUEST_LINE = 8190
GUNICORN_MAX_HEADER_FIELDS = 100
#: A gunicorn worker silent this long is killed: above the database statement timeout (30 s by default).
GUNICORN_WORKER_TIMEOUT = 60


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@attrs.frozen
class ServerOptions:
    """Bounds the server layer enforces for the app, as plugins contribute them through ``taskman_server_options``.

    Sizes say what the servers must let through to the app (the app answers
    beyond them itself): the largest contribution wins.  Timeouts bound a
    client: the smallest wins.  None means no plugin asked.
    """

    #: Longest request target (path and query) the app checks itself.
    max_request_target: int | None = None
    #: Largest header section (sum of names and values) the app checks itself.
    max_header_bytes: int | None = None
    #: Seconds a client has to send its request head, from its first byte.
    header_timeout: float | None = None
    #: Seconds a client has to send its request body, from the end of its head.
    body_timeout: float | None = None

    @property
    def max_head_bytes(self) -> int | None:
        """The largest request head (line and headers, as sent) that can still be within the app's own limits."""
        if self.max_request_target is None or self.max_header_bytes is None:
            return None
        return self.max_request_target + self.max_header_bytes + HEAD_SLACK


_SIZE_OPTIONS = {"max_request_target", "max_header_bytes"}
_TIME_OPTIONS = {"header_timeout", "body_timeout"}


def server_options(plugins: Plugins, config: Config, flavour: str) -> ServerOptions:
    """Merge every plugin's ``taskman_server_options``; a key or value the core does not know names the plugin."""
    from taskman.plugins import PluginError

    merged: dict[str, Any] = {}
    for plugin, contributed in plugins.call_each("taskman_server_options", config=config, flavour=flavour):
        for key, value in (contributed or {}).items():
            if key in _SIZE_OPTIONS and _positive_int(value):
                merged[key] = max(value, merged.get(key, value))
            elif key in _TIME_OPTIONS and _positive_seconds(value):
                merged[key] = float(min(value, merged.get(key, value)))
            else:
                known = ", ".join(sorted(_SIZE_OPTIONS | _TIME_OPTIONS))
                raise PluginError(
                    plugin,
                    plugins.distribution_of(plugin),
                    f"server option {key}={value!r} is not one of {known} with a positive value",
                    "taskman_server_options",
                )
    return ServerOptions(**merged)


def check_thread_pool(config: Config, flavour: str) -> None:
    """Refuse a worker whose request threads could outnumber the database connections it may open.

    Each thread that serves a request holds its own connection
    (``taskman.db`` keeps them per thread): more threads than the pool's
    ``pool_size + max_overflow`` would leave some waiting for one, and
    answering 503 after ``pool_timeout``.
    """
    server = config.server
    if flavour == "wsgi" and server.worker_class == "sync":
        return
    connections = config.database.pool_size + config.database.max_overflow
    if server.threads > connections:
        raise ConfigError(
            [
                Problem(
                    "server.threads",
                    config.sources.get("server.threads", "default"),
                    f"{server.threads} threads per worker, but database.pool_size + database.max_overflow allow "
                    f"{connections} connections: raise the pool or lower the threads",
                )
            ]
        )


def gunicorn_settings(server: ServerSettings, options: ServerOptions) -> dict[str, Any]:
    """gunicorn's settings for the worker model and request edge that ``server`` and ``options`` describe.

    ``taskman serve --wsgi`` and ``deploy/gunicorn.conf.py`` both use these.
    """
    from taskman import gunicorn_worker

    settings: dict[str, Any] = {
        "worker_class": gunicorn_worker.worker_class(server, options),
        "threads": server.threads if server.worker_class == "gthread" else 1,
        "keepalive": server.keepalive,
        "graceful_timeout": server.graceful_timeout,
        "timeout": GUNICORN_WORKER_TIMEOUT,
        # An empty list trusts no peer (gunicorn's default trusts loopback).
        "forwarded_allow_ips": ",".join(server.forwarded_allow_ips),
        "limit_request_fields": GUNICORN_MAX_HEADER_FIELDS,
    }
    if options.max_request_target is not None:
        line = options.max_request_target + REQUEST_LINE_SLACK
        if line > GUNICORN_MAX_REQUEST_LINE:
            # The threaded worker bounds the whole head instead; the sync one can only take gunicorn's ceiling.
            line = 0 if server.worker_class == "gthread" else GUNICORN_MAX_REQUEST_LINE
        settings["limit_request_line"] = line
    if options.max_header_bytes is not None:
        # One field may be as long as the whole section the app accepts.
        settings["limit_request_field_size"] = options.max_header_bytes + REQUEST_LINE_SLACK
    return settings


def uvicorn_settings(server: ServerSettings) -> dict[str, Any]:
    """uvicorn's keyword arguments for the ``[server]`` settings; the protocol reads the app's own bounds itself."""
    trusted = ",".join(server.forwarded_allow_ips)
    return {
        "http": UVICORN_PROTOCOL,
        "timeout_keep_alive": server.keepalive,
        "timeout_graceful_shutdown": server.graceful_timeout,
        # uvicorn trusts loopback's X-Forwarded-For by default: only the setting decides.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve_uvicorn(host: str, port: int, workers: int, config: Config) -> None:
    run_uvicorn("taskman.asgi:app", host, port, workers, settings=uvicorn_settings(config.server))


def run_uvicorn(
    app: str,
    host: str,
    port: int,
    workers: int,
    *,
    factory: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """Serve the ASGI app named ``app`` (``module:attribute``) under uvicorn, as ``taskman serve`` does.

    ``settings`` are uvicorn keyword arguments; by default those of the
    ``[server]`` defaults.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    # When a plugin configured logging (the root logger has a handler once
    # the app was built), uvicorn leaves logging alone: its loggers
    # propagate to that handler here and in each worker, where importing the
    # app runs taskman_configure before uvicorn logs anything.  Otherwise
    # uvicorn's own console logging.
    routed = bool(logging.getLogger().handlers)
    # After a graceful stop, uvicorn (one worker) re-raises the SIGTERM or
    # SIGINT it handled under the handler it found, which would end the
    # command killed by that signal; gunicorn, and uvicorn with several
    # workers, exit 0.  A handler that exits 0 makes every clean stop alike
    # (and a signal arriving before uvicorn takes over still stops us).
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _exit_cleanly)
    bind_tcp_sockets_as_tcp()
    uvicorn.run(
        app,
        factory=factory,
        host=host,
        port=port,
        workers=workers,
        lifespan="on",
        access_log=False,  # one access line per request comes from the logging plugin
        log_config=None if routed else LOGGING_CONFIG,
        log_level="info",
        **(uvicorn_settings(ServerSettings()) if settings is None else settings),
    )


def bind_tcp_sockets_as_tcp() -> None:
    """Have uvicorn's pre-bound listener (``--workers`` > 1) say IPPROTO_TCP, so connections get TCP_NODELAY.

    uvicorn creates it with ``proto`` 0; accepted sockets inherit that, and
    asyncio only sets TCP_NODELAY when it reads IPPROTO_TCP there: Nagle then
    holds each response body until the client's delayed ACK of the headers,
    about 40 ms per keep-alive request (Kludex/uvicorn#3149).
    """
    import socket

    from uvicorn.config import Config

    bind_socket = Config.bind_socket
    if getattr(bind_socket, "taskman_tcp", False):
        return

    def bind_tcp_socket(self: Config) -> socket.socket:
        sock = bind_socket(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock

    bind_tcp_socket.taskman_tcp = True  # type: ignore[attr-defined]
    Config.bind_socket = bind_tcp_socket  # type: ignore[method-assign]


def serve_gunicorn(host: str, port: int, workers: int, config: Config, options: ServerOptions | None = None) -> None:
    """Serve ``taskman.wsgi:app`` under gunicorn with the worker model and edge ``config`` and its plugins ask for.

    ``options`` are the plugins' (:func:`server_options`), gathered here when not given.
    """
    if options is None:
        from taskman.plugins import Plugins

        plugins = Plugins.discover(config.plugins.disable, folder=config.plugins.directory)
        options = server_options(plugins, config, "wsgi")
    settings = gunicorn_settings(config.server, options)

    def load_app() -> Any:
        # Imported in each worker after the fork: start-up runs once per worker.
        from taskman.wsgi import app

        return app

    run_gunicorn(host, port, workers, load_app=load_app, settings=settings)


def run_gunicorn(
    host: str,
    port: int,
    workers: int,
    *,
    load_app: Callable[[], Any],
    settings: Mapping[str, Any] | None = None,
    proc_name: str = "taskman",
) -> None:
    """Serve the WSGI app ``load_app()`` returns (called in each worker) under gunicorn, as ``taskman serve`` does.

    ``settings`` are gunicorn settings; by default those of the ``[server]``
    defaults with no plugin's bounds (:func:`gunicorn_settings`).
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    class RootLogger(Logger):  # type: ignore[misc]
        """gunicorn's own lines (arbiter and workers) go to the root logger's handlers, its access log stays off."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                    log.removeHandler(handler)
            self.error_log.propagate = True

    # When a plugin configured logging (the root logger has a handler once
    # the app was built), gunicorn logs through it; forked workers inherit
    # it.  Otherwise gunicorn's own console logging.
    routed = bool(logging.getLogger().handlers)
    chosen = gunicorn_settings(ServerSettings(), ServerOptions()) if settings is None else settings

    class TaskmanGunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            for name, value in chosen.items():
                self.cfg.set(name, value)
            self.cfg.set("accesslog", None)
            self.cfg.set("proc_name", proc_name)
            if routed:
                self.cfg.set("logger_class", RootLogger)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn 23+: one control socket per user; two servers would steal each other's.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return load_app()

    TaskmanGunicorn().run()
