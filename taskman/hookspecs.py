"""The plugin contract: every hook the core calls, typed and documented.

Each spec is a bare function with a one-line docstring; ``docs/hooks.md``
indexes every hook (these and those plugins add) and a meta-test keeps it in
step.  Every hook may take ``runtime``, the :class:`taskman.Runtime` of the
app being built (config, settings, plugins, database, events, per-app
state); an implementation accepts any subset of a spec's arguments.  A
concern plugin may add hooks of its own: it exposes a module or class of
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
    from taskman.runtime import Runtime

PROJECT_NAME = "taskman"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: A route contribution: ``(uri_template, resource)`` or
#: ``(uri_template, resource, add_route_kwargs)`` (for example ``{"suffix": "item"}``).
Route = tuple[str, object] | tuple[str, object, dict[str, Any]]

#: A responder decorator: takes a sync responder ``(req, resp, **params)`` and returns one with the same signature.
ResponderWrapper = Callable[[Callable[..., Any]], Callable[..., Any]]

#: Hooks whose implementations are called each in isolation: one that raises is
#: logged with its plugin's name and reported (``taskman_plugin_failed``), and the
#: others still run; the caller never sees the exception.
ISOLATED_HOOKS = frozenset({"taskman_event", "taskman_plugin_failed"})


@hookspec
def taskman_configure(runtime: Runtime, config: Config, plugins: Plugins) -> None:
    """Set up process-wide state (logging, for example); called each time an app is built, so be idempotent."""


@hookspec
def taskman_serve(runtime: Runtime, config: Config, workers: int) -> None:
    """Prepare the ``taskman serve`` parent process before it starts its workers."""


@hookspec
def taskman_settings() -> type | tuple[str, type] | None:
    """Return the plugin's settings class (declared with ``taskman.settings_section``): it owns that config section."""


@hookspec
def taskman_routes(runtime: Runtime, config: Config) -> Sequence[Route] | None:
    """Return ``(uri_template, resource)`` pairs to mount; sync responders work under ASGI too."""


@hookspec
def taskman_middleware(runtime: Runtime, config: Config) -> Sequence[object] | None:
    """Return middleware objects, each in a pipeline stage (``taskman_stage``); sync works under both flavours."""


@hookspec
def taskman_responder_wrappers(runtime: Runtime, config: Config) -> Sequence[ResponderWrapper] | None:
    """Return decorators the core applies to every sync responder that may block (a time limit, for example)."""


@hookspec
def taskman_validate(runtime: Runtime, config: Config) -> None:
    """Check the built app (routes, other plugins' declarations); raise to stop start-up and fail ``taskman check``."""


@hookspec
def taskman_server_options(runtime: Runtime, config: Config, flavour: str) -> Mapping[str, Any] | None:
    """Return request-edge bounds for the server layer to enforce (the fields of ``taskman.servers.ServerOptions``)."""


@hookspec
def taskman_startup(runtime: Runtime, app: Any, config: Config) -> None:
    """Run once per worker process before it serves, after migrations are applied."""


@hookspec
def taskman_shutdown(runtime: Runtime, app: Any, config: Config) -> None:
    """Run once per worker process when it stops serving."""


@hookspec
def taskman_migrations(runtime: Runtime) -> str | Path | None:
    """Return the folder holding this plugin's numbered migration scripts."""


@hookspec
def taskman_event(runtime: Runtime, name: str, payload: dict[str, Any]) -> None:
    """Receive a domain event (for example ``task.created``) once its change has committed."""


@hookspec(firstresult=True)
def taskman_record_events(runtime: Runtime, events: Sequence[tuple[str, dict[str, Any]]]) -> Callable[[], None] | None:
    """Store events in the caller's open transaction (an outbox); return what delivers them once it has committed."""


@hookspec
def taskman_plugin_failed(runtime: Runtime, plugin: str, hook: str, error: BaseException) -> None:
    """Hear of a plugin failure the core contained (a raising event listener or log processor), to count it."""


@hookspec
def taskman_cli(group: click.Group) -> None:
    """Add subcommands to the ``taskman`` command group."""
