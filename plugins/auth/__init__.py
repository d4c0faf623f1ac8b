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

import taskman
from taskman import hookimpl

from . import hookspecs
from .access import AccessTable, Decision, DeclarationError, Principal, decide
from .middleware import Authorize, Identify, access_table, app_routes, bearer_token
from .settings import AuthSettings
from .tokens import Authenticator, TokenError, TokenStore

__all__ = [
    "AccessTable",
    "AuthSettings",
    "Authenticator",
    "Authorize",
    "Decision",
    "Identify",
    "Principal",
    "TokenError",
    "TokenStore",
    "access_table",
    "app_routes",
    "bearer_token",
    "decide",
]

BOOTSTRAP_TOKEN_NAME = "dev"

#: The hook this plugin adds (registered by the core when it loads the plugin).
taskman_hookspecs = hookspecs

#: In production, disabling this plugin also needs ``auth.allow_anonymous = true`` (declared in the
#: distribution's ``taskman.safeguards`` entry points too, so the core reads it without importing us).
taskman_safeguard = "allow_anonymous"

log = logging.getLogger("taskman.auth")


def _authorize(runtime: taskman.Runtime) -> Authorize:
    return runtime.component(Authorize, lambda: Authorize(runtime.settings(AuthSettings)))


@hookimpl
def taskman_settings() -> type:
    return AuthSettings


@hookimpl
def taskman_migrations() -> Path:
    return Path(__file__).parent / "migrations"


@hookimpl
def taskman_middleware(runtime: taskman.Runtime) -> list[object]:
    settings = runtime.settings(AuthSettings)
    authenticator = Authenticator(
        TokenStore(), cache_seconds=settings.cache_seconds, last_used_interval=settings.last_used_interval
    )
    return [Identify(authenticator), _authorize(runtime)]


@hookimpl
def taskman_validate(runtime: taskman.Runtime) -> None:
    """Every route's rule, resolved once the routes exist: a bad or dangling declaration stops start-up."""
    try:
        table = access_table(runtime, runtime.settings(AuthSettings))
    except DeclarationError as exc:
        raise runtime.plugins.error(exc.plugin, str(exc), "taskman_access") from None
    _authorize(runtime).table = table
    if table.undeclared:
        log.warning(
            "auth_undeclared_routes", extra={"routes": [f"{m} {t}" for t, m in table.undeclared], "need": "admin"}
        )


@hookimpl
def taskman_serve(runtime: taskman.Runtime) -> None:
    """Fresh start in development: no token yet, so make one and print it once."""
    settings = runtime.settings(AuthSettings)
    if runtime.config.environment != "development" or not settings.bootstrap_token or settings.allow_anonymous:
        return
    from .cli import announce_token

    with runtime.activated():
        runtime.ensure_migrated()
        store = TokenStore()
        try:
            if store.count():
                return
            token, info = store.create(BOOTSTRAP_TOKEN_NAME, ("read", "write", "admin"))
        finally:
            taskman.release_connection(runtime.database)
    announce_token(token, info)


@hookimpl
def taskman_openapi_amend(runtime: taskman.Runtime, plugins: Any, document: Any) -> None:
    """For the openapi plugin: the bearer scheme, and what each operation needs (with its 401 and 403)."""
    from . import openapi

    openapi.amend(document, plugins.call_each("taskman_access", config=runtime.config), runtime.settings(AuthSettings))


@hookimpl
def taskman_cli(group: click.Group) -> None:
    from .cli import add_commands

    add_commands(group)
