"""Running the app under uvicorn (ASGI) and gunicorn (WSGI), as ``taskman serve`` and the bench do."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from taskman.config import Config


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve_uvicorn(host: str, port: int, workers: int, config: Config) -> None:
    run_uvicorn("taskman.asgi:app", host, port, workers, graceful_timeout=config.server.graceful_timeout)


def run_uvicorn(
    app: str,
    host: str,
    port: int,
    workers: int,
    *,
    factory: bool = False,
    graceful_timeout: int | None = None,
) -> None:
    """Serve the ASGI app named ``app`` (``module:attribute``) under uvicorn, as ``taskman serve`` does."""
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
        timeout_graceful_shutdown=graceful_timeout,
        log_level="info",
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


def serve_gunicorn(host: str, port: int, workers: int, config: Config) -> None:
    def load_app() -> Any:
        # Imported in each worker after the fork: start-up runs once per worker.
        from taskman.wsgi import app

        return app

    run_gunicorn(host, port, workers, load_app=load_app, graceful_timeout=config.server.graceful_timeout)


def run_gunicorn(
    host: str,
    port: int,
    workers: int,
    *,
    load_app: Callable[[], Any],
    graceful_timeout: int | None = None,
    proc_name: str = "taskman",
) -> None:
    """Serve the WSGI app ``load_app()`` returns (called in each worker) under gunicorn, as ``taskman serve`` does."""
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

    class TaskmanGunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            if graceful_timeout is not None:
                self.cfg.set("graceful_timeout", graceful_timeout)
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
