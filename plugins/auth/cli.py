"""``taskman tokens create|list|revoke``: manage API tokens from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from taskman.app import AUTO_MIGRATE_ENVIRONMENTS
from taskman.config import Config
from taskman.db import database, make_database
from taskman.migrations import Migrations
from taskman.plugins import Plugins

from .tokens import TokenError, TokenInfo, TokenStore, parse_duration


@contextmanager
def token_store(config: Config) -> Iterator[TokenStore]:
    """The store on the configured database, its table created first where start-up would create it."""
    db = make_database(config.database)
    database.initialize(db)
    try:
        migrations = Migrations(db, Plugins.discover(config.plugins.disable).migrations())
        pending = [name for name in migrations.pending() if name.startswith("auth:")]
        if pending:
            if config.environment not in AUTO_MIGRATE_ENVIRONMENTS:
                raise click.ClickException(f"migration(s) pending ({', '.join(pending)}): run `taskman migrate` first")
            migrations.apply()
        yield TokenStore()
    finally:
        db.close_all()


def _when(value: datetime | None, default: str = "-") -> str:
    return value.isoformat(timespec="seconds") + "Z" if value else default


def announce_token(token: str, info: TokenInfo) -> None:
    """Tell the user once: the details on stderr, the token alone on the last line of stdout."""
    click.echo(
        f"Created token {info.name!r} (prefix {info.prefix}, scopes {','.join(info.scopes)}, "
        f"expires {_when(info.expires_at, 'never')}). It is shown only now; store it safely:",
        err=True,
    )
    click.echo(token)


def add_commands(group: click.Group, config_of: Any, report: Any) -> None:
    """Add the ``tokens`` group; ``config_of(ctx)`` returns the effective config.

    ``report(ctx)`` is the core's context manager that turns a failure (a
    ``ClickException``, a database outage) into one ``taskman: error: ...``
    line and a non-zero exit.
    """

    @group.group("tokens")
    def tokens() -> None:
        """Create, list and revoke API tokens."""

    @tokens.command("create")
    @click.option("--name", required=True, help="A unique name, such as ci or grafana.")
    @click.option("--scope", "scopes", default="read", show_default=True, help="Comma-separated: read,write,admin.")
    @click.option("--expires", default=None, help="Lifetime such as 90m, 12h, 30d or 2w (default: never).")
    @click.pass_context
    def create(ctx: click.Context, name: str, scopes: str, expires: str | None) -> None:
        """Create a token and print it once."""
        with report(ctx):
            try:
                lifetime = parse_duration(expires) if expires else None
                with token_store(config_of(ctx)) as store:
                    token, info = store.create(name, scopes, lifetime)
            except TokenError as exc:
                raise click.ClickException(str(exc)) from None
        announce_token(token, info)

    @tokens.command("list")
    @click.pass_context
    def list_tokens(ctx: click.Context) -> None:
        """List tokens (names, prefixes, scopes and dates; never the tokens)."""
        with report(ctx), token_store(config_of(ctx)) as store:
            rows = store.list()
        if not rows:
            click.echo("no tokens")
            return
        click.echo(f"{'NAME':<24} {'PREFIX':<12} {'SCOPES':<18} {'CREATED':<21} {'EXPIRES':<21} LAST USED")
        for row in rows:
            click.echo(
                f"{row.name:<24} {row.prefix:<12} {','.join(row.scopes):<18} {_when(row.created_at):<21} "
                f"{_when(row.expires_at, 'never'):<21} {_when(row.last_used_at, 'never')}"
            )

    @tokens.command("revoke")
    @click.argument("name")
    @click.pass_context
    def revoke(ctx: click.Context, name: str) -> None:
        """Revoke (delete) the token called NAME."""
        with report(ctx), token_store(config_of(ctx)) as store:
            if not store.revoke(name):
                raise click.ClickException(f"no token named {name!r}")
        click.echo(f"revoked {name}")
