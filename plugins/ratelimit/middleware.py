"""The thin Falcon layer: count each routed request, set the RateLimit headers, refuse with 429.

Two pipeline steps.  :class:`RateLimitMiddleware` (stage ``admit``) works in
``process_resource``, which falcon calls only when a route matched (a path
no route serves answers its 404 uncounted); by then the caller is
identified, and the route's access rule is not yet enforced, so refused
authentications count too.  :class:`AuthFailureGuard` (stage ``identify``,
before auth) keeps a per-address budget of refused authentications: past
it, a request carrying credentials is refused before they are looked up.
"""

from __future__ import annotations

import math
from typing import Any

import falcon

from taskman import redact

from .core import (
    ANONYMOUS_READS,
    ANONYMOUS_WRITES,
    AUTH_FAILURES,
    GROUP_LABELS,
    Decision,
    FailureLog,
    RateLimiter,
    StorageUnavailableError,
    budget_of,
    group_of,
    identity_of,
    is_exempt,
)
from .settings import RateLimitSettings


class RateLimitMiddleware:
    taskman_stage = "admit"

    def __init__(self, settings: RateLimitSettings, limiter: RateLimiter, failure_log: FailureLog) -> None:
        self.settings = settings
        self.limiter = limiter
        self.failure_log = failure_log
        self.exempt_paths = settings.exempt_paths
        self.fail_closed = settings.storage_failure == "closed"
        self.storage = redact("storage_url", settings.storage_url)
        self.unavailable_retry_after = max(1, math.ceil(settings.storage_retry_interval))

    def _subject(self, req: Any) -> tuple[str, str] | None:
        """``(identity, budget)`` of a request that is counted, None for one that is not."""
        group = group_of(req.method)
        if group is None or is_exempt(req.path, self.exempt_paths):
            return None
        identity = identity_of(getattr(req.context, "auth", None), req.remote_addr)
        return identity, budget_of(identity, group)

    def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        subject = self._subject(req)
        if subject is None:
            return
        try:
            decision = self.limiter.decide(*subject)
        except StorageUnavailableError as exc:
            self._storage_failed(exc)
            return
        self._apply(resp, subject[1], decision)

    async def process_resource_async(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        subject = self._subject(req)
        if subject is None:
            return
        try:
            decision = await self.limiter.decide_async(*subject)
        except StorageUnavailableError as exc:
            self._storage_failed(exc)
            return
        self._apply(resp, subject[1], decision)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        """ASGI lifespan end: close this event loop's Redis client (WSGI never calls it)."""
        await self.limiter.aclose()

    def _apply(self, resp: Any, group: str, decision: Decision) -> None:
        headers = decision.headers()
        if decision.allowed:
            resp.set_headers(headers)
            return
        hint = " Send a token for a larger budget." if group in (ANONYMOUS_READS, ANONYMOUS_WRITES) else ""
        raise _too_many(
            f"Too many {GROUP_LABELS.get(group, group)} from this client: the limit is {self.limiter.rates[group]}."
            f"{hint} Retry in {decision.retry_after} s.",
            decision,
        )

    def _storage_failed(self, exc: StorageUnavailableError) -> None:
        self.failure_log(
            error=str(exc),
            storage=self.storage,
            storage_failure=self.settings.storage_failure,
        )
        if self.fail_closed:
            raise falcon.HTTPServiceUnavailable(
                title="Service Unavailable",
                description="Rate limiting is unavailable; retry later.",
                retry_after=self.unavailable_retry_after,
            )


def _too_many(description: str, decision: Decision) -> falcon.HTTPTooManyRequests:
    return falcon.HTTPTooManyRequests(
        title="Too Many Requests", description=description, headers=decision.headers(), retry_after=decision.retry_after
    )


class AuthFailureGuard:
    """Refused authentications per client address: past the budget, credentials are not even looked up."""

    taskman_stage = "identify"
    taskman_before = ("auth",)

    def __init__(self, limiter: RateLimiter, failure_log: FailureLog, storage: str) -> None:
        self.limiter = limiter
        self.failure_log = failure_log
        self.storage = storage

    @staticmethod
    def _address(req: Any) -> str:
        return identity_of(None, req.remote_addr)

    def _refuse(self, decision: Decision) -> None:
        if not decision.allowed:
            raise _too_many(
                f"Too many refused authentications from this address: the limit is "
                f"{self.limiter.rates[AUTH_FAILURES]}. Retry in {decision.retry_after} s.",
                decision,
            )

    def _storage_failed(self, exc: StorageUnavailableError) -> None:
        # Fail open: the main limiter decides what an outage means for the request itself.
        self.failure_log(error=str(exc), storage=self.storage, storage_failure="open")

    def process_request(self, req: Any, resp: Any) -> None:
        if req.get_header("Authorization") is None:
            return
        try:
            decision = self.limiter.peek(self._address(req), AUTH_FAILURES)
        except StorageUnavailableError as exc:
            self._storage_failed(exc)
            return
        self._refuse(decision)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        if req.get_header("Authorization") is None:
            return
        try:
            decision = await self.limiter.peek_async(self._address(req), AUTH_FAILURES)
        except StorageUnavailableError as exc:
            self._storage_failed(exc)
            return
        self._refuse(decision)

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        if getattr(req.context, "auth_error", None) is None:
            return
        try:
            self.limiter.decide(self._address(req), AUTH_FAILURES)
        except StorageUnavailableError as exc:
            self._storage_failed(exc)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        if getattr(req.context, "auth_error", None) is None:
            return
        try:
            await self.limiter.decide_async(self._address(req), AUTH_FAILURES)
        except StorageUnavailableError as exc:
            self._storage_failed(exc)
