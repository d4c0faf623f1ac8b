"""The thin Falcon layer: read the bearer token, then enforce the route's requirement.

``process_request`` identifies the caller (``req.context.auth``: a
:class:`~.access.Principal` or None) so that later middleware (rate limits)
can key on it; ``process_resource`` knows the matched URI template and
refuses with 401 or 403.  Both have native async versions: under ASGI only
a token the cache cannot answer costs a trip to the thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import falcon
import falcon.inspect

from taskman import db as taskman_db

from .access import OPTIONAL, PUBLIC, AccessTable, Principal, decide
from .settings import AuthSettings
from .tokens import Authenticator

log = logging.getLogger("taskman.auth")

REALM = "taskman"
_MESSAGES = {
    "invalid_request": "The Authorization header must be `Bearer <token>`.",
    "invalid_token": "The bearer token is unknown, revoked or expired.",
}


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other form."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def app_routes(app: Any) -> list[tuple[str, list[str]]]:
    """``(uri_template, methods with a responder)`` for every route of ``app``."""
    routes = falcon.inspect.inspect_routes(app)
    return [(route.path, [m.method for m in route.methods if not m.internal]) for route in routes]


def access_table(app: Any, settings: AuthSettings) -> AccessTable:
    """The requirements of every route of ``app``, from its plugins' ``taskman_access`` declarations."""
    declarations = app.taskman.plugins.call_each("taskman_access", config=app.taskman.config)
    return AccessTable.build(app_routes(app), declarations, metrics_access=settings.metrics_access)


def unauthorized(error: str | None, scope: str | None) -> falcon.HTTPUnauthorized:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    description = _MESSAGES.get(error or "", f"This request needs a bearer token with the `{scope}` scope.")
    return falcon.HTTPUnauthorized(title="Authentication required", description=description, challenges=[challenge])


def forbidden(scope: str) -> falcon.HTTPForbidden:
    return falcon.HTTPForbidden(
        title="Insufficient scope",
        description=f"This request needs a token with the `{scope}` scope.",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'},
    )


class AuthMiddleware:
    def __init__(self, settings: AuthSettings, authenticator: Authenticator) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.anonymous_scopes = frozenset(settings.anonymous_scopes) if settings.allow_anonymous else None
        self._table: AccessTable | None = None
        self._lock = threading.Lock()

    def table(self, req: Any) -> AccessTable:
        """Built on first use from the app serving ``req`` (the routes exist only once the app does)."""
        table = self._table
        if table is None:
            with self._lock:
                if self._table is None:
                    self._table = access_table(req.taskman.app, self.settings)
                    if self._table.undeclared:
                        log.warning(
                            "auth_undeclared_routes",
                            extra={"routes": [f"{m} {t}" for t, m in self._table.undeclared], "need": "admin"},
                        )
                table = self._table
        return table

    # -- identify -------------------------------------------------------------

    def _start(self, req: Any) -> str | None:
        """Reset the request's identity; return the presented token, if it has the right form."""
        req.context.auth = None
        req.context.auth_error = None
        req.context.auth_unavailable = None
        header = req.get_header("Authorization")
        if header is None:
            return None
        token = bearer_token(header)
        if token is None:
            req.context.auth_error = "invalid_request"
        return token

    def _finish(self, req: Any, principal: Principal | None) -> None:
        req.context.auth = principal
        if principal is None:
            req.context.auth_error = "invalid_token"

    def _authenticate(self, req: Any, token: str) -> None:
        """Identify the caller; a database outage is kept for ``process_resource`` to judge.

        Probes and open routes must keep answering while the database is down,
        even for a caller that sends a token: only a route that needs one fails.
        """
        try:
            principal = self.authenticator.authenticate(token)
        except taskman_db.UNAVAILABLE_ERRORS as exc:
            req.context.auth_unavailable = exc
            return
        self._finish(req, principal)

    def process_request(self, req: Any, resp: Any) -> None:
        token = self._start(req)
        if token is not None:
            self._authenticate(req, token)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        token = self._start(req)
        if token is None:
            return
        known, principal = self.authenticator.cached(token)
        if not known or (principal is not None and self.authenticator.use_is_due(principal)):
            await asyncio.to_thread(self._authenticate_in_thread, req, token)
        else:
            self._finish(req, principal)

    def _authenticate_in_thread(self, req: Any, token: str) -> None:
        try:
            self._authenticate(req, token)
        finally:
            taskman_db.release_connection(taskman_db.database)

    # -- enforce ----------------------------------------------------------------

    def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        if resource is None:
            return
        requirement = self.table(req).requirement(req.uri_template, req.method)
        unavailable = getattr(req.context, "auth_unavailable", None)
        if unavailable is not None and requirement not in (PUBLIC, OPTIONAL):
            raise unavailable  # the core answers 503 with Retry-After
        error = getattr(req.context, "auth_error", None)
        if error is not None and requirement not in (PUBLIC, OPTIONAL):
            raise unauthorized(error, requirement)
        decision = decide(requirement, getattr(req.context, "auth", None), self.anonymous_scopes)
        if decision.allowed:
            return
        assert decision.scope is not None
        if decision.status == 401:
            raise unauthorized(None, decision.scope)
        raise forbidden(decision.scope)

    async def process_resource_async(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        self.process_resource(req, resp, resource, params)
