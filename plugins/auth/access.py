"""Which scope each route and method needs, and whether a caller has it; plain Python, no Falcon.

Plugins declare rules per URI template (the ``taskman_access`` hook); the
:class:`AccessTable` resolves them once at start-up into ``{template:
{method: requirement}}`` and answers :meth:`AccessTable.requirement` per
request with two dictionary lookups.  A route nobody declared needs
``admin``: an undeclared route fails closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .settings import SCOPES

PUBLIC = "public"
OPTIONAL = "optional"
BY_METHOD = "by-method"
METRICS = "metrics"
RULES = (PUBLIC, OPTIONAL, *SCOPES, BY_METHOD, METRICS)

READ_METHODS = frozenset({"GET", "HEAD"})
#: CORS preflights carry no credentials: every OPTIONS request is public.
ALWAYS_PUBLIC_METHODS = frozenset({"OPTIONS"})
FAIL_CLOSED = "admin"

#: What each scope includes besides itself.  ``write`` includes ``read``: a
#: write answers with the record written (and an idempotent replay, or an
#: empty PATCH, with the current one), so a write-only token could read anyway;
#: saying so is the honest model.  ``admin`` includes both.
IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes a set of granted scopes allows, implied ones included (unknown names grant nothing more)."""
    granted: set[str] = set()
    for scope in scopes:
        granted |= IMPLIED.get(scope, frozenset({scope}))
    return frozenset(granted)


class DeclarationError(ValueError):
    """A plugin declared a rule that does not exist, or a rule for a route that does not exist."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


_FIELD = re.compile(r"\{[^}]*\}")


def route_key(template: str) -> str:
    """What makes two spellings the same route: Falcon's ``/items/{id:int}`` and OpenAPI's ``/items/{item_id}``."""
    return _FIELD.sub("{}", template.rstrip("/") or "/")


@attrs.frozen
class Principal:
    """Who is calling: a token's name, its public prefix and its scopes."""

    name: str
    prefix: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in effective_scopes(self.scopes)


@attrs.frozen
class Decision:
    """The verdict for one request: allowed, or the status (401/403) and what was missing."""

    allowed: bool
    status: int = 200
    scope: str | None = None


ALLOW = Decision(True)


def resolve(rule: str, method: str, metrics_access: str) -> str:
    """A declared rule for one method as the requirement enforced: public, optional or a scope."""
    if rule not in RULES:
        raise DeclarationError("", f"unknown access rule {rule!r} (rules: {', '.join(RULES)})")
    if method in ALWAYS_PUBLIC_METHODS:
        return PUBLIC
    if rule == BY_METHOD:
        return "read" if method in READ_METHODS else "write"
    if rule == METRICS:
        return PUBLIC if metrics_access == "open" else "read"
    return rule


@attrs.define
class AccessTable:
    """Requirements by URI template and method, built from the plugins' declarations."""

    requirements: dict[str, dict[str, str]] = attrs.field(factory=dict)
    undeclared: list[tuple[str, str]] = attrs.field(factory=list)

    @classmethod
    def build(
        cls,
        routes: Iterable[tuple[str, Iterable[str]]],
        declarations: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        metrics_access: str,
        strict: bool = False,
    ) -> AccessTable:
        """``routes`` are ``(template, methods)`` of the app; ``declarations`` ``(plugin, {template: rule})``.

        A declaration's key may be spelled as Falcon does (``{id:int}``) or as
        OpenAPI does (``{id}``).  ``strict``: a key that matches no route is
        an error naming the plugin (it would never apply).
        """
        routes = [(template, list(methods)) for template, methods in routes]
        keys = {route_key(template) for template, _ in routes}
        declared: dict[str, Any] = {}
        for plugin, mapping in declarations:
            for template, rule in (mapping or {}).items():
                if isinstance(rule, Mapping):
                    rule = {method.upper(): value for method, value in rule.items()}
                    bad = [value for value in rule.values() if value not in RULES]
                else:
                    bad = [] if rule in RULES else [rule]
                if bad:
                    raise DeclarationError(
                        plugin,
                        f"plugin {plugin!r} declares unknown access rule(s) {bad} for {template} "
                        f"(rules: {', '.join(RULES)})",
                    )
                if strict and route_key(template) not in keys:
                    raise DeclarationError(
                        plugin, f"plugin {plugin!r} declares access for {template}, which no route has"
                    )
                declared[route_key(template)] = rule
        table = cls()
        for template, methods in routes:
            rule = declared.get(route_key(template))
            per_method = table.requirements.setdefault(template, {})
            for method in methods:
                chosen = rule.get(method) if isinstance(rule, Mapping) else rule
                if chosen is None and method == "HEAD" and isinstance(rule, Mapping):
                    chosen = rule.get("GET")  # HEAD is GET without the body: it needs what GET needs
                if chosen is None:
                    if method not in ALWAYS_PUBLIC_METHODS:
                        table.undeclared.append((template, method))
                    chosen = FAIL_CLOSED
                per_method[method] = resolve(chosen, method, metrics_access)
        return table

    def requirement(self, template: str | None, method: str) -> str:
        """What a request needs; unknown routes fail closed.

        A method the route does not have needs nothing: everyone gets the same
        405 with ``Allow``, which tells no more than the OpenAPI document does.
        """
        if method in ALWAYS_PUBLIC_METHODS:
            return PUBLIC
        if template is None or template not in self.requirements:
            return FAIL_CLOSED
        return self.requirements[template].get(method, PUBLIC)


def decide(requirement: str, principal: Principal | None, anonymous_scopes: frozenset[str] | None) -> Decision:
    """Allow, or refuse with 401 (no usable token) or 403 (a token without the scope).

    ``anonymous_scopes`` is None when requests without a token are refused.
    """
    if requirement in (PUBLIC, OPTIONAL):
        return ALLOW
    if principal is None:
        if anonymous_scopes is not None and requirement in effective_scopes(anonymous_scopes):
            return ALLOW
        return Decision(False, 401, requirement)
    if principal.allows(requirement):
        return ALLOW
    return Decision(False, 403, requirement)
