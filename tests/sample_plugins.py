"""Small plugins the tests register through ``create_app(plugins=...)``."""

from __future__ import annotations

from typing import Any

import attrs
import falcon

from taskman import hookimpl
from taskman.db import database
from taskman.errors import ValidationProblem


class EchoResource:
    """Plain sync responders, as a plugin author writes them."""

    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"status": "alive"}

    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = {"received": req.get_media()}
        resp.status = falcon.HTTP_201

    def on_put(self, req: Any, resp: Any) -> None:
        resp.media = {"raw": req.bounded_stream.read().decode()}


class FailingResource:
    def on_get(self, req: Any, resp: Any) -> None:
        raise RuntimeError("password=hunter2 at /srv/secret/path")


class InvalidResource:
    def on_post(self, req: Any, resp: Any) -> None:
        raise ValidationProblem([{"pointer": "/title", "detail": "must not be empty"}])


class DatabaseResource:
    def on_get(self, req: Any, resp: Any) -> None:
        (value,) = database.execute_sql("SELECT 1").fetchone()
        resp.media = {"value": value}


class AsyncResource:
    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"async": True}


class AsyncPlugin:
    taskman_plugin_name = "async_only"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/async", AsyncResource())]


class EchoPlugin:
    taskman_plugin_name = "echo"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [
            ("/echo", EchoResource()),
            ("/boom", FailingResource()),
            ("/invalid", InvalidResource()),
            ("/db", DatabaseResource()),
        ]


class HeaderMiddleware:
    """Plain sync middleware."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def process_request(self, req: Any, resp: Any) -> None:
        self.calls.append("request")

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.calls.append("response")
        resp.set_header("X-Sync-Middleware", "yes")


class MiddlewarePlugin:
    taskman_plugin_name = "headers"

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def taskman_middleware(self, config: Any) -> list[object]:
        return [HeaderMiddleware(self.calls)]


class LifecyclePlugin:
    taskman_plugin_name = "lifecycle"

    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0
        self.events: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def taskman_startup(self, app: Any, config: Any) -> None:
        self.started += 1

    @hookimpl
    def taskman_shutdown(self, app: Any, config: Any) -> None:
        self.stopped += 1

    @hookimpl
    def taskman_event(self, name: str, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))


@attrs.frozen
class GreetingSettings:
    greeting: str = "hello"
    repeat: int = attrs.field(default=1, validator=[attrs.validators.ge(1), attrs.validators.le(5)])
    loud: bool = False


class SettingsPlugin:
    taskman_plugin_name = "greeter"

    @hookimpl
    def taskman_settings(self) -> tuple[str, type]:
        return ("greeter", GreetingSettings)


class RoutePlugin:
    """A plugin that claims one route, to provoke conflicts."""

    def __init__(self, name: str, template: str) -> None:
        self.taskman_plugin_name = name
        self.template = template

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [(self.template, EchoResource())]


class ExplodingPlugin:
    taskman_plugin_name = "exploding"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        raise ValueError("kaboom")
