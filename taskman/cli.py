"""The ``taskman`` command.  Plugins add subcommands through ``taskman_cli``.

click is already installed with uvicorn, and its groups are what a plugin
extends, so the CLI is click.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import attrs
import click
import falcon

from taskman import servers
from taskman.config import Config, ConfigError, load_config
from taskman.db import UNAVAILABLE_ERRORS, make_database, ping
from taskman.migrations import MigrationError, Migrations
from taskman.plugins import PluginError, Plugins

EXIT_OK = 0
EXIT_STARTUP = 1  # bad config, broken plugin, route conflict
EXIT_CONFIG = 3
EXIT_DATABASE = 4
EXIT_MIGRATIONS = 5

_EXPECTED = (ConfigError, PluginError, MigrationError, *UNAVAILABLE_ERRORS)


@attrs.define
class CliState:
    config_file: str | None = None
    debug: bool = False
    _config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_file)
        return self._config


def _fail(message: str, code: int = EXIT_STARTUP) -> NoReturn:
    click.echo(f"taskman: error: {message}", err=True)
    sys.exit(code)


@contextmanager
def reported(state: CliState, code: int = EXIT_STARTUP) -> Iterator[None]:
    """Turn a start-up failure into one line on stderr (the traceback only with --debug)."""
    from taskman.app import StartupError

    try:
        yield
    except (*_EXPECTED, StartupError) as exc:
        if state.debug or os.environ.get("APP_DEBUG", "").lower() in ("1", "true", "yes", "on"):
            traceback.print_exc()
        message = str(exc)
        if isinstance(exc, UNAVAILABLE_ERRORS):
            message = f"database unavailable: {type(exc).__name__}: {exc}".strip()
        if isinstance(exc, ConfigError):
            message = f"invalid configuration: {exc}"
        _fail(message, code)


def _config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.ensure_object(CliState).config_file = value
        return value

    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        expose_value=False,
        callback=remember,
        is_eager=True,
        help="TOML config file (default: $APP_CONFIG_FILE or ./taskman.toml).",
    )(func)


def _debug_option(func: Callable[..., Any]) -> Callable[..., Any]:
    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(CliState).debug = True
        return value

    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=remember,
        is_eager=True,
        help="Show full tracebacks for start-up errors.",
    )(func)


class TaskmanGroup(click.Group):
    """Built-in commands plus those the enabled plugins add through ``taskman_cli``.

    Plugin commands go into a group of their own per invocation, loaded on
    first need, so built-in commands work even when a plugin is broken.
    """

    def _plugin_commands(self, ctx: click.Context) -> click.Group:
        group = ctx.meta.get("taskman.plugin_commands")
        if group is None:
            group = ctx.meta["taskman.plugin_commands"] = click.Group("taskman")
            state = ctx.ensure_object(CliState)
            with reported(state):
                Plugins.discover(state.config().plugins.disable).cli(group)
        return group  # type: ignore[no-any-return]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not ctx.resilient_parsing:
            command = self._plugin_commands(ctx).get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        with contextlib.suppress(SystemExit):  # help still lists the built-in commands
            names += self._plugin_commands(ctx).list_commands(ctx)
        return sorted(set(names))


@click.group(cls=TaskmanGroup)
@_config_option
@_debug_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """taskman: a Falcon API toolkit built from plugins."""
    ctx.ensure_object(CliState)


def _state(ctx: click.Context) -> CliState:
    return ctx.ensure_object(CliState)


# -- serve ------------------------------------------------------------------


@cli.command()
@click.option("--host", default=None, help="Interface to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="TCP port (default: server.port, 8000).")
@click.option("--asgi/--wsgi", "asgi", default=None, help="uvicorn (ASGI, default) or gunicorn (WSGI).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (default: 1).")
@_config_option
@_debug_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, asgi: bool | None, workers: int | None) -> None:
    """Serve the app: ASGI under uvicorn by default, WSGI under gunicorn with --wsgi."""
    state = _state(ctx)
    with reported(state):
        config = state.config()
        use_asgi = (config.server.flavour == "asgi") if asgi is None else asgi
        flavour = "asgi" if use_asgi else "wsgi"
        servers.check_thread_pool(config, flavour)
        registry = _preflight(config, asgi=use_asgi)
        # The plugins' server options, checked here so a bad one is one line before any server starts.
        options = servers.server_options(registry, config, flavour)
        server = config.server
        host = host or server.host
        port = port or server.port
        workers = workers or server.workers
        registry.serve(config, workers)
    if config.file is not None:
        # Workers load their own config: make sure they read the same file.
        os.environ["APP_CONFIG_FILE"] = str(config.file.resolve())
    flavour = "ASGI (uvicorn)" if use_asgi else "WSGI (gunicorn)"
    _announce(
        f"serving {flavour} on http://{host}:{port}", event="serving", flavour=flavour, url=f"http://{host}:{port}"
    )
    if use_asgi:
        servers.serve_uvicorn(host, port, workers, config)
    else:
        servers.serve_gunicorn(host, port, workers, config, options)


def _announce(message: str, *, event: str, **fields: Any) -> None:
    """Tell the operator: through the logging set up by a plugin when there is one, else plainly."""
    if logging.getLogger().handlers:
        logging.getLogger("taskman.cli").info(event, extra=fields)
    else:
        click.echo(f"taskman: {message}", err=True)


def _preflight(config: Config, *, asgi: bool) -> Plugins:
    """Fail in the parent, with one line, before any worker starts; apply migrations once."""
    from taskman.app import AUTO_MIGRATE_ENVIRONMENTS, PendingMigrationsError, create_app

    app = create_app(config, asgi=asgi)
    migrations = app.taskman.migrations()
    try:
        if migrations.runners:
            if config.environment in AUTO_MIGRATE_ENVIRONMENTS:
                applied = migrations.apply()
                if applied:
                    _announce(
                        f"applied migrations: {', '.join(applied)}", event="migrations_applied", migrations=applied
                    )
            else:
                pending = migrations.pending()
                if pending:
                    raise PendingMigrationsError(pending)
    finally:
        app.taskman.database.close_all()
    return app.taskman.plugins


# -- introspection ----------------------------------------------------------


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
@_debug_option
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, state and hooks."""
    state = _state(ctx)
    with reported(state):
        infos = Plugins.discover(state.config().plugins.disable).infos()
    if as_json:
        click.echo(json.dumps([attrs.asdict(i) for i in infos], indent=2))
        return
    for info in infos:
        status = "enabled" if info.enabled else "disabled"
        hooks = ", ".join(info.hooks) if info.enabled else "-"
        click.echo(f"{info.name:<20} {info.distribution} {info.version:<10} {status:<9} {hooks}")


@cli.command()
@_config_option
@_debug_option
@click.pass_context
def routes(ctx: click.Context) -> None:
    """List every route with its methods and the plugin that serves it."""
    state = _state(ctx)
    with reported(state):
        config = state.config()
        registry = Plugins.discover(config.plugins.disable)
        contributions = registry.routes(config)
    for route in sorted(contributions, key=lambda r: r.uri_template):
        suffix = route.kwargs.get("suffix")
        methods = [
            m
            for m in falcon.constants.COMBINED_METHODS
            if hasattr(route.resource, f"on_{m.lower()}" + (f"_{suffix}" if suffix else ""))
        ]
        click.echo(f"{route.uri_template:<40} {','.join(methods):<30} {route.plugin}")


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
@_debug_option
@click.pass_context
def config_command(ctx: click.Context, as_json: bool) -> None:
    """Show the effective configuration with the source of each value (secrets redacted)."""
    state = _state(ctx)
    with reported(state):
        rows = state.config().items()
    if as_json:
        click.echo(json.dumps([{"key": k, "value": v, "source": s} for k, v, s in rows], indent=2, default=str))
        return
    for key, value, source in rows:
        click.echo(f"{key:<32} {json.dumps(value, default=str):<40} {source}")


# -- database ---------------------------------------------------------------


def _migrations(config: Config) -> Migrations:
    registry = Plugins.discover(config.plugins.disable)
    return Migrations(make_database(config.database), registry.migrations())


@cli.group(invoke_without_command=True)
@_config_option
@_debug_option
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply pending migrations (default), show their status, or roll back one step."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(migrate_apply)


@migrate.command("apply")
@click.pass_context
def migrate_apply(ctx: click.Context) -> None:
    """Apply every pending migration."""
    state = _state(ctx)
    with reported(state):
        applied = _migrations(state.config()).apply()
    click.echo("\n".join(f"applied {name}" for name in applied) or "nothing to apply")


@migrate.command("status")
@click.pass_context
def migrate_status(ctx: click.Context) -> None:
    """List every migration and whether it is applied."""
    state = _state(ctx)
    with reported(state):
        rows = _migrations(state.config()).status()
    for row in rows:
        when = row.applied_at.isoformat(timespec="seconds") if row.applied_at else "pending"
        missing = "  (file missing)" if row.file_missing else ""
        click.echo(f"{row.qualified_name:<50} {when}{missing}")


@migrate.command("rollback")
@click.pass_context
def migrate_rollback(ctx: click.Context) -> None:
    """Revert the most recently applied migration."""
    state = _state(ctx)
    with reported(state):
        name = _migrations(state.config()).rollback()
    click.echo(f"rolled back {name}" if name else "nothing to roll back")


@cli.command()
@_config_option
@_debug_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check config, database and migrations; the exit code says which failed (3, 4, 5)."""
    state = _state(ctx)
    with reported(state, EXIT_CONFIG):
        config = state.config()
        registry = Plugins.discover(config.plugins.disable)
        registry.routes(config)
        servers.check_thread_pool(config, config.server.flavour)
        servers.server_options(registry, config, config.server.flavour)
    click.echo("config: ok")
    db = make_database(config.database)
    with reported(state, EXIT_DATABASE):
        ping(db)
    click.echo("database: ok")
    with reported(state, EXIT_DATABASE):
        pending = Migrations(db, registry.migrations()).pending()
    if pending:
        _fail(f"migrations pending: {', '.join(pending)}", EXIT_MIGRATIONS)
    click.echo("migrations: ok")


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="taskman")


if __name__ == "__main__":
    main()
