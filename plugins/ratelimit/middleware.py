"""The thin Falcon layer: count each routed request, set the RateLimit headers, refuse with 429.

It works in ``process_resource``, which falcon calls only when a route
matched: a path no route serves answers its 404 uncounted.  By then every
``process_request`` has run, the auth plugin's included.
"""

from __future__ import annotations

import math
from typing import Any

import falcon

from taskman.config import redact

from .core import Decision, FailureLog, RateLimiter, StorageUnavailableError, group_of, identity_of, is_exempt
from .settings import RateLimitSettings


class RateLimitMiddleware:
    def __init__(self, settings: RateLimitSettings, limiter: RateLimiter, failure_log: FailureLog) -> None:
        self.settings = settings
        self.limiter = limiter
        self.failure_log = failure_log
        self.exempt_paths = settings.exempt_paths
        self.fail_closed = settings.storage_failure == "closed"
        self.storage = redact("storage_url", settings.storage_url)
        self.unavailable_retry_after = max(1, math.ceil(settings.storage_retry_interval))

    def _subject(self, req: Any) -> tuple[str, str] | None:
        """``(identity, group)`` of a request that is counted, None for one that is not."""
        group = group_of(req.method)
        if group is None or is_exempt(req.path, self.exempt_paths):
            return None
        return identity_of(getattr(req.context, "auth", None), req.remote_addr), group

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
        raise falcon.HTTPTooManyRequests(
            title="Too Many Requests",
            description=(
                f"Too many {group} from this client: the limit is {self.limiter.rates[group]}. "
                f"Retry in {decision.retry_after} s."
            ),
            headers=headers,
            retry_after=decision.retry_after,
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
