"""The plugin contract: every hook the core calls, typed and documented.

Each spec is a bare function with a one-line docstring; the hook reference
in the README documents each one and a meta-test keeps the two in step.
A concern plugin may add hooks of its own: it exposes a module or class of
``@hookspec`` functions as its ``taskman_hookspecs`` attribute.  Hooks that
contribute things return them; the core does the wiring, so a plugin never
needs to know whether it runs under WSGI or ASGI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from taskman.config import Config
    from taskman.plugins import Plugins

PROJECT_NAME = "taskman"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: A route contribution: ``(uri_template, resource)`` or
#: ``(uri_template, resource, add_route_kwargs)`` (for example ``{"suffix": "item"}``).
Route = tuple[str, object] | tuple[str, object, dict[str, Any]]

#: A responder decorator: takes a sync responder ``(req, resp, **params)`` and returns one with the same signature.
ResponderWrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


@hookspec
def taskman_configure(config: Config, plugins: Plugins) -> None:
    """Set up process-wide state (logging, for example); called each time an app is built, so be idempotent."""


@hookspec
def taskman_serve(config: Config, workers: int) -> None:
    """Prepare the ``taskman serve`` parent process before it starts its workers."""


@hookspec
def taskman_settings() -> tuple[str, type] | None:
    """Return ``(section_name, attrs_class)`` so the plugin owns a validated config section."""


@hookspec
def taskman_routes(config: Config) -> Sequence[Route] | None:
    """Return ``(uri_template, resource)`` pairs to mount; sync responders work under ASGI too."""


@hookspec
def taskman_middleware(config: Config) -> Sequence[object] | None:
    """Return middleware objects; plain sync middleware works under both flavours."""


@hookspec
def taskman_responder_wrappers(config: Config) -> Sequence[ResponderWrapper] | None:
    """Return decorators the core applies to every sync responder that may block (a time limit, for example)."""


@hookspec
def taskman_server_options(config: Config, flavour: str) -> Mapping[str, Any] | None:
    """Return request-edge bounds for the server layer to enforce (the fields of ``taskman.servers.ServerOptions``)."""


@hookspec
def taskman_startup(app: Any, config: Config) -> None:
    """Run once per worker process before it serves, after migrations are applied."""


@hookspec
def taskman_shutdown(app: Any, config: Config) -> None:
    """Run once per worker process when it stops serving."""


@hookspec
def taskman_migrations() -> str | Path | None:
    """Return the folder holding this plugin's numbered migration scripts."""


@hookspec
def taskman_event(name: str, payload: dict[str, Any]) -> None:
    """Receive a domain event (for example ``task.created``) fired by a resource plugin."""


@hookspec
def taskman_cli(group: click.Group) -> None:
    """Add subcommands to the ``taskman`` command group."""
