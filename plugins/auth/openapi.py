"""Document the bearer scheme and each operation's requirement in the OpenAPI document (openapi plugin)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .access import OPTIONAL, PUBLIC, AccessTable, decide
from .settings import AuthSettings

SCHEME = "bearerAuth"
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token (`tm_...`) from `taskman tokens create`; scopes: read, write, admin.",
}


def amend(document: Any, declarations: Iterable[tuple[str, Mapping[str, Any]]], settings: AuthSettings) -> None:
    """Add the scheme, each operation's ``security`` and its 401/403 responses (none for open routes).

    The requirements come from the same :class:`AccessTable` the middleware
    enforces, keyed by OpenAPI's spelling of each path (``{index}`` for
    Falcon's ``{index:int(min=0)}``).  ``document`` is the openapi plugin's
    document helper (``operations``, ``add_response``, ``component``).
    """
    document.component("securitySchemes")[SCHEME] = dict(BEARER_SCHEME)
    documented = list(document.operations())
    routes: dict[str, list[str]] = {}
    for path, method, _ in documented:
        routes.setdefault(path, []).append(method.upper())
    table = AccessTable.build(routes.items(), declarations, metrics_access=settings.metrics_access)
    anonymous = frozenset(settings.anonymous_scopes) if settings.allow_anonymous else None
    for path, method, operation in documented:
        requirement = table.requirement(path, method.upper())
        if requirement == PUBLIC:
            operation["security"] = []
            continue
        if requirement == OPTIONAL:
            # A bad token counts as none there: never a 401.
            operation["security"] = [{}, {SCHEME: []}]
            continue
        without_token = decide(requirement, None, anonymous).allowed
        operation["security"] = [*([{}] if without_token else []), {SCHEME: [requirement]}]
        document.add_response(operation, 403, "Forbidden")
        document.add_response(operation, 401, "Unauthorized")
