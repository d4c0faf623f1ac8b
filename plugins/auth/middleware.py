"""The thin Falcon layer: identify the caller, then enforce the route's requirement.

Two pipeline steps.  :class:`Identify` (stage ``identify``) reads the bearer
token and sets ``req.context.auth`` (a :class:`~.access.Principal` or None)
and ``req.context.auth_error`` so that the rate limiter (stage ``admit``)
can key on the caller and count refused authentications; :class:`Authorize`
(stage ``authorize``) knows the matched URI template and refuses with 401
or 403.  Both have native async versions: under ASGI only a token the cache
cannot answer costs a trip to the thread pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import falcon

import taskman

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


def app_routes(runtime: taskman.Runtime) -> list[tuple[str, list[str]]]:
    """``(uri_template, methods with a responder)`` for every route of the app (HEAD where GET is)."""
    return [(path, sorted(methods)) for path, methods in taskman.routed_methods(runtime.app).items()]


def access_table(runtime: taskman.Runtime, settings: AuthSettings) -> AccessTable:
    """The requirements of every route of the app, from its plugins' ``taskman_access`` declarations."""
    declarations = runtime.plugins.call_each("taskman_access", config=runtime.config)
    return AccessTable.build(app_routes(runtime), declarations, metrics_access=settings.metrics_access, strict=True)


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


class Identify:
    """Who is calling: ``req.context.auth``, and ``req.context.auth_error`` for a refused credential."""

    taskman_stage = "identify"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

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
        """Identify the caller; a database outage is kept for :class:`Authorize` to judge.

        Probes and open routes must keep answering while the database is down,
        even for a caller that sends a token: only a route that needs one fails.
        """
        try:
            principal = self.authenticator.authenticate(token)
        except taskman.UNAVAILABLE_ERRORS as exc:
            req.context.auth_unavailable = exc
            return
        self._finish(req, principal)

    def process_request(self, req: Any, resp: Any) -> None:
        token = self._start(req)
        if token is not None and not resp.complete:
            self._authenticate(req, token)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        token = self._start(req)
        if token is None or resp.complete:
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
            taskman.release_connection(taskman.database)


class Authorize:
    """The route's rule, enforced once the route is known: 401 or 403 (or 503 when tokens cannot be checked).

    The table is filled in once the app's routes exist (``taskman_validate``);
    until then every route fails closed.
    """

    taskman_stage = "authorize"

    def __init__(self, settings: AuthSettings) -> None:
        self.table = AccessTable()
        self.anonymous_scopes = frozenset(settings.anonymous_scopes) if settings.allow_anonymous else None

    def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        if resource is None:
            return
        requirement = self.table.requirement(req.uri_template, req.method)
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
