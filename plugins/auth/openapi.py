"""Document the bearer scheme and each operation's requirement in the OpenAPI document (openapi plugin)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .access import FAIL_CLOSED, OPTIONAL, PUBLIC, resolve
from .settings import AuthSettings

SCHEME = "bearerAuth"
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token (`tm_...`) from `taskman tokens create`; scopes: read, write, admin.",
}


def amend(
    document: dict[str, Any], declarations: Iterable[tuple[str, Mapping[str, Any]]], settings: AuthSettings
) -> None:
    """Add the scheme, each operation's ``security`` and its 401/403 responses."""
    from ..openapi.document import add_response, operations, path_key

    document.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = dict(BEARER_SCHEME)
    declared = {path_key(template): rule for _, mapping in declarations for template, rule in (mapping or {}).items()}
    anonymous = frozenset(settings.anonymous_scopes) if settings.allow_anonymous else frozenset()
    for path, method, operation in operations(document):
        rule = declared.get(path_key(path), FAIL_CLOSED)
        if isinstance(rule, Mapping):
            rule = {m.upper(): r for m, r in rule.items()}.get(method.upper(), FAIL_CLOSED)
        requirement = resolve(rule, method.upper(), settings.metrics_access)
        if requirement == PUBLIC:
            operation["security"] = []
            continue
        if requirement == OPTIONAL:
            operation["security"] = [{}, {SCHEME: []}]
        else:
            without_token = requirement in anonymous or "admin" in anonymous
            operation["security"] = [*([{}] if without_token else []), {SCHEME: [requirement]}]
            add_response(operation, 403, "Forbidden")
        add_response(operation, 401, "Unauthorized")
