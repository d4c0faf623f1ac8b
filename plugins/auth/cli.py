"""``taskman tokens create|list|revoke``: manage API tokens from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click

import taskman

from .tokens import TokenError, TokenInfo, TokenStore, parse_duration


@contextmanager
def token_store(runtime: taskman.Runtime) -> Iterator[TokenStore]:
    """The store on the app's database, migrated as start-up would (or refused, outside development and testing)."""
    try:
        runtime.ensure_migrated()
    except taskman.StartupError as exc:
        raise click.ClickException(str(exc)) from None
    yield TokenStore()


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


def add_commands(group: click.Group) -> None:
    """Add the ``tokens`` group."""

    @group.group("tokens")
    def tokens() -> None:
        """Create, list and revoke API tokens."""

    @tokens.command("create")
    @click.option("--name", required=True, help="A unique name, such as ci or grafana.")
    @click.option("--scope", "scopes", default="read", show_default=True, help="Comma-separated: read,write,admin.")
    @click.option("--expires", default=None, help="Lifetime such as 90m, 12h, 30d or 2w (default: never).")
    @taskman.pass_runtime
    def create(runtime: taskman.Runtime, name: str, scopes: str, expires: str | None) -> None:
        """Create a token and print it once."""
        try:
            lifetime = parse_duration(expires) if expires else None
            with token_store(runtime) as store:
                token, info = store.create(name, scopes, lifetime)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from None
        announce_token(token, info)

    @tokens.command("list")
    @taskman.pass_runtime
    def list_tokens(runtime: taskman.Runtime) -> None:
        """List tokens (names, prefixes, scopes and dates; never the tokens)."""
        with token_store(runtime) as store:
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
    @taskman.pass_runtime
    def revoke(runtime: taskman.Runtime, name: str) -> None:
        """Revoke (delete) the token called NAME."""
        with token_store(runtime) as store:
            if not store.revoke(name):
                raise click.ClickException(f"no token named {name!r}")
        click.echo(f"revoked {name}")
