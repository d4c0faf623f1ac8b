"""The smallest routes a taskman plugin can add, for cases that must not depend on a default plugin.

``GET /alive`` is what a plugin author writes for a responder that does no
I/O: plain sync code marked ``@taskman.nonblocking`` (the README's advice),
so under ASGI it runs on the event loop.  ``GET /alive/threaded`` is the
same responder unmarked: under ASGI the core runs it on the thread pool,
and the case that uses it shows what that hop costs.
"""

from __future__ import annotations

from typing import Any

from taskman import hookimpl, nonblocking

ALIVE_PATH = "/alive"
THREADED_PATH = "/alive/threaded"
taskman_plugin_name = "bench_alive"


class AliveResource:
    @nonblocking
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"status": "alive"}


class ThreadedAliveResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"status": "alive"}


@hookimpl
def taskman_routes(config: Any) -> list[tuple[str, object]]:
    return [(ALIVE_PATH, AliveResource()), (THREADED_PATH, ThreadedAliveResource())]


@hookimpl
def taskman_access(config: Any) -> dict[str, str]:
    """For the auth plugin: anyone may ask (an undeclared route would need an admin token)."""
    return {ALIVE_PATH: "public", THREADED_PATH: "public"}
