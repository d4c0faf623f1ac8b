"""The ``taskman`` command.  Plugins add subcommands through ``taskman_cli``.

click is already installed with uvicorn, and its groups are what a plugin
extends, so the CLI is click.
"""

from __future__ import annotations

import contextlib
import functools
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
from taskman.config import Config, env_name, load_config, plugin_selection, redact_text
from taskman.db import ping
from taskman.plugins import PluginError, Plugins
from taskman.runtime import STARTUP_FAILURES, Runtime, debugging, describe_failure

EXIT_OK = 0
EXIT_STARTUP = 1  # bad config, broken plugin, route conflict
EXIT_CONFIG = 3
EXIT_DATABASE = 4
EXIT_MIGRATIONS = 5


@attrs.define
class CliState:
    """What one ``taskman`` invocation knows: the config file, --debug, and the app it built (once)."""

    config_file: str | None = None
    debug: bool = False
    _config: Config | None = None
    _runtimes: dict[bool, Runtime] = attrs.field(factory=dict)

    def use_config_file(self, path: str) -> None:
        if path != self.config_file:
            # Given after a subcommand: what was loaded (to find plugin commands) was the default.
            self.config_file = path
            self.forget()

    def forget(self) -> None:
        """Load the config (and build the app) again on next use: its sources changed."""
        self.close()
        self._config = None
        self._runtimes.clear()

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_file)
        return self._config

    def runtime(self, *, asgi: bool = False) -> Runtime:
        """The app every command works with, built the way ``serve`` builds it (the one bootstrap path)."""
        from taskman.app import create_app

        if asgi not in self._runtimes:
            self._runtimes[asgi] = create_app(self.config(), asgi=asgi).taskman
        return self._runtimes[asgi]

    def close(self) -> None:
        for runtime in self._runtimes.values():
            runtime.database.close_all()


def _fail(message: str, code: int = EXIT_STARTUP) -> NoReturn:
    click.echo(f"taskman: error: {message}", err=True)
    sys.exit(code)


#: What ``reported`` turns into one line: start-up failures, and a command's own refusal.
_REPORTED: tuple[type[BaseException], ...] = (*STARTUP_FAILURES, click.ClickException)


@contextmanager
def reported(state: CliState, code: int = EXIT_STARTUP) -> Iterator[None]:
    """Turn a start-up failure, or a command's ``ClickException``, into one line on stderr (the traceback only
    with --debug)."""
    try:
        yield
    except _REPORTED as exc:
        if state.debug or debugging():
            # Config problems are redacted where they are made; this catches a URL in any other message.
            click.echo(redact_text(traceback.format_exc()).rstrip("\n"), err=True)
        # A command's own refusal (a plugin's subcommand raises ClickException) gets the same one line.
        message = exc.format_message() if isinstance(exc, click.ClickException) else describe_failure(exc)
        _fail(redact_text(message), code)


def _config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.ensure_object(CliState).use_config_file(value)
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
                config = state.config()
                Plugins.discover(config.plugins.disable, folder=config.plugins.directory).cli(group)
            for command in group.commands.values():
                _accept_common_options(command)
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


def _accept_common_options(command: click.Command) -> None:
    """``--config`` and ``--debug`` work after a plugin's subcommand too, as after the built-in ones."""
    names = {name for param in command.params for name in getattr(param, "opts", ())}
    if "--config" not in names:
        _config_option(command)
    if "--debug" not in names:
        _debug_option(command)
    for sub in getattr(command, "commands", {}).values():
        _accept_common_options(sub)


def pass_runtime(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a plugin's click command the app's :class:`~taskman.Runtime` as its first argument.

    The app is built as ``serve`` builds it (effective config, ``--config``,
    every plugin); a start-up failure, a database outage or the command's own
    ``ClickException`` is one ``taskman: error:`` line, as for built-in commands.
    """

    @click.pass_context
    @functools.wraps(command)
    def run(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        state = ctx.ensure_object(CliState)
        try:
            with reported(state):
                runtime = state.runtime()
                with runtime.activated():
                    return command(runtime, *args, **kwargs)
        finally:
            state.close()

    return run


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
@click.option(
    "--plugins-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Also load every *.py in this folder as a plugin (development; plugins.directory).",
)
@_config_option
@_debug_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    asgi: bool | None,
    workers: int | None,
    plugins_dir: str | None,
) -> None:
    """Serve the app: ASGI under uvicorn by default, WSGI under gunicorn with --wsgi."""
    state = _state(ctx)
    if plugins_dir:
        # The workers build their own app from the environment: tell them too.
        os.environ[env_name("plugins", "directory")] = os.path.abspath(plugins_dir)
        state.forget()
    if state.debug:
        os.environ["APP_DEBUG"] = "true"  # workers report their start-up failures with tracebacks too
    with reported(state):
        config = state.config()
        use_asgi = (config.server.flavour == "asgi") if asgi is None else asgi
        flavour = "asgi" if use_asgi else "wsgi"
        servers.check_thread_pool(config, flavour)
        runtime = _preflight(state, asgi=use_asgi)
        # The plugins' server options, checked here so a bad one is one line before any server starts.
        options = servers.server_options(runtime.plugins, config, flavour)
        server = config.server
        host = host or server.host
        port = port or server.port
        workers = workers or server.workers
        runtime.plugins.serve(config, workers)
    if config.file is not None:
        # Workers load their own config: make sure they read the same file.
        os.environ["APP_CONFIG_FILE"] = str(config.file.resolve())
    server_name = "ASGI (uvicorn)" if use_asgi else "WSGI (gunicorn)"
    _announce(
        f"serving {server_name} on http://{host}:{port}",
        event="serving",
        flavour=server_name,
        url=f"http://{host}:{port}",
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


def _preflight(state: CliState, *, asgi: bool) -> Runtime:
    """Fail in the parent, with one line, before any worker starts; apply migrations once."""
    runtime = state.runtime(asgi=asgi)
    try:
        with runtime.activated():
            applied = runtime.ensure_migrated()
        if applied:
            _announce(f"applied migrations: {', '.join(applied)}", event="migrations_applied", migrations=applied)
    finally:
        state.close()
    return runtime


# -- introspection ----------------------------------------------------------


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
@_debug_option
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, state and hooks (broken ones too, marked)."""
    state = _state(ctx)
    failure: PluginError | None = None
    with reported(state):
        try:
            config = state.config()
            disable, folder = config.plugins.disable, config.plugins.directory
        except PluginError as exc:  # list them all anyway, then say what is broken
            failure = exc
            disable, folder = plugin_selection(state.config_file)
        infos = Plugins.survey(disable, folder=folder)
    if as_json:
        click.echo(json.dumps([attrs.asdict(i) for i in infos], indent=2))
    else:
        for info in infos:
            status = "broken" if info.error else "enabled" if info.enabled else "disabled"
            detail = info.error or (", ".join(info.hooks) if info.enabled else "-")
            click.echo(f"{info.name:<20} {info.distribution} {info.version:<10} {status:<9} {detail}")
    broken = next((i for i in infos if i.error), None)
    if failure is None and broken is not None:
        failure = PluginError(broken.name, broken.distribution, broken.error or "")
    if failure is not None:
        with reported(state):
            raise failure


@cli.command()
@_config_option
@_debug_option
@click.pass_context
def routes(ctx: click.Context) -> None:
    """List every route with its methods and the plugin that serves it."""
    state = _state(ctx)
    with reported(state):
        contributions = state.runtime().routes
    state.close()
    for route in sorted(contributions, key=lambda r: r.uri_template):
        suffix = route.kwargs.get("suffix")
        methods = [
            m
            for m in falcon.constants.COMBINED_METHODS
            if hasattr(route.resource, f"on_{m.lower()}" + (f"_{suffix}" if suffix else ""))
        ]
        click.echo(f"{route.uri_template:<40} {','.join(methods):<30} {route.plugin}")


@cli.command("middleware")
@click.option("--asgi/--wsgi", "asgi", default=None, help="The chain of this flavour (default: server.flavour).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
@_debug_option
@click.pass_context
def middleware_command(ctx: click.Context, asgi: bool | None, as_json: bool) -> None:
    """Print the request pipeline: every middleware in the order it runs, with its stage and plugin."""
    state = _state(ctx)
    with reported(state):
        use_asgi = (state.config().server.flavour == "asgi") if asgi is None else asgi
        rows = state.runtime(asgi=use_asgi).pipeline.describe(asgi=use_asgi)
    state.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        stage = row["stage"] if row["declared"] else f"{row['stage']} (default)"
        methods = ", ".join(f"{name} ({how})" for name, how in row["methods"].items())
        click.echo(f"{stage:<20} {row['plugin']:<18} {row['middleware']:<28} {methods}")


@cli.command("hooks")
@_config_option
@_debug_option
@click.pass_context
def hooks_command(ctx: click.Context) -> None:
    """Print the index of every hook (the core's and the enabled plugins'), as a Markdown table."""
    from taskman.reference import hook_index, markdown_table

    state = _state(ctx)
    with reported(state):
        config = state.config()
        entries = hook_index(Plugins.discover(config.plugins.disable, folder=config.plugins.directory))
    click.echo(markdown_table(entries), nl=False)


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
        applied = state.runtime().migrations().apply()
    state.close()
    click.echo("\n".join(f"applied {name}" for name in applied) or "nothing to apply")


@migrate.command("status")
@click.pass_context
def migrate_status(ctx: click.Context) -> None:
    """List every migration and whether it is applied."""
    state = _state(ctx)
    with reported(state):
        rows = state.runtime().migrations().status()
    state.close()
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
        name = state.runtime().migrations().rollback()
    state.close()
    click.echo(f"rolled back {name}" if name else "nothing to roll back")


@cli.command()
@_config_option
@_debug_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Build the app for both flavours and check config, plugins, database and migrations (exit 3, 4, 5)."""
    state = _state(ctx)
    with reported(state, EXIT_CONFIG):
        runtime = state.runtime(asgi=False)
        state.runtime(asgi=True)
        for flavour in ("wsgi", "asgi"):
            servers.check_thread_pool(runtime.config, flavour)
            servers.server_options(runtime.plugins, runtime.config, flavour)
    click.echo("config: ok")
    with reported(state, EXIT_DATABASE):
        ping(runtime.database)
    click.echo("database: ok")
    with reported(state, EXIT_DATABASE):
        pending = runtime.migrations().pending()
    state.close()
    if pending:
        _fail(f"migrations pending: {', '.join(pending)}", EXIT_MIGRATIONS)
    click.echo("migrations: ok")


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="taskman")


if __name__ == "__main__":
    main()
