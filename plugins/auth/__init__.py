"""auth: bearer API tokens with scopes; every route declares what it needs.

Tokens are random (32 bytes), shown once, stored as a SHA-256 with a public
prefix (:mod:`.tokens`); ``taskman tokens create|list|revoke`` manages them
(:mod:`.cli`).  Plugins declare each route's rule through the
``taskman_access`` hook this plugin adds (:mod:`.hookspecs`); the plain
rules live in :mod:`.access` and the Falcon glue in :mod:`.middleware`.
Missing or bad token: 401 with ``WWW-Authenticate: Bearer``; a token
without the scope: 403.  See docs/auth.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from taskman import hookimpl
from taskman.config import plugin_settings

from . import hookspecs
from .access import AccessTable, Decision, Principal, decide
from .middleware import AuthMiddleware, access_table, app_routes, bearer_token
from .settings import AuthSettings
from .tokens import Authenticator, TokenError, TokenStore

__all__ = [
    "AccessTable",
    "AuthMiddleware",
    "AuthSettings",
    "Authenticator",
    "Decision",
    "Principal",
    "TokenError",
    "TokenStore",
    "access_table",
    "app_routes",
    "bearer_token",
    "decide",
]

SECTION = "auth"
BOOTSTRAP_TOKEN_NAME = "dev"

#: The hook this plugin adds (registered by the core when it loads the plugin).
taskman_hookspecs = hookspecs

log = logging.getLogger("taskman.auth")


def settings_of(config: Any) -> AuthSettings:
    return plugin_settings(config, SECTION, AuthSettings)


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, AuthSettings)


@hookimpl
def taskman_migrations() -> Path:
    return Path(__file__).parent / "migrations"


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    settings = settings_of(config)
    authenticator = Authenticator(
        TokenStore(), cache_seconds=settings.cache_seconds, last_used_interval=settings.last_used_interval
    )
    return [AuthMiddleware(settings, authenticator)]


@hookimpl
def taskman_serve(config: Any, workers: int) -> None:
    """Fresh start in development: no token yet, so make one and print it once."""
    settings = settings_of(config)
    if config.environment != "development" or not settings.bootstrap_token or settings.allow_anonymous:
        return
    from .cli import announce_token, token_store

    with token_store(config) as store:
        if store.count():
            return
        token, info = store.create(BOOTSTRAP_TOKEN_NAME, ("read", "write", "admin"))
    announce_token(token, info)


@hookimpl
def taskman_openapi_amend(config: Any, plugins: Any, document: dict[str, Any]) -> None:
    """For the openapi plugin: the bearer scheme, and what each operation needs (with its 401 and 403)."""
    from . import openapi

    openapi.amend(document, plugins.call_each("taskman_access", config=config), settings_of(config))


@hookimpl
def taskman_cli(group: click.Group) -> None:
    from taskman.cli import CliState, reported

    from .cli import add_commands

    def report(ctx: click.Context) -> Any:
        return reported(ctx.ensure_object(CliState))

    def config_of(ctx: click.Context) -> Any:
        with report(ctx):
            return ctx.ensure_object(CliState).config()

    add_commands(group, config_of, report)
