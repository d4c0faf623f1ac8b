"""The rate limiter's plain-Python part: who is asking, which group, and the decision; no Falcon here.

:class:`RateLimiter` turns ``(identity, group)`` into a :class:`Decision`
through a :mod:`.backends` storage.  After a storage failure it leaves the
storage alone for ``retry_interval`` seconds, so an unreachable Redis costs
one timeout per interval instead of one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from limits import RateLimitItem
from limits.errors import StorageError

from .backends import Backend, Hit

READS = "reads"
WRITES = "writes"
#: The groups of requests without a token, counted per client address on budgets of their own.
ANONYMOUS_READS = "anonymous_reads"
ANONYMOUS_WRITES = "anonymous_writes"
_ANONYMOUS = {READS: ANONYMOUS_READS, WRITES: ANONYMOUS_WRITES}
#: How a refusal names each group.
GROUP_LABELS = {
    READS: "reads",
    WRITES: "writes",
    ANONYMOUS_READS: "reads without a token",
    ANONYMOUS_WRITES: "writes without a token",
}
#: Refused authentications per client address: a budget of its own, so guessing tokens is slow and cheap.
AUTH_FAILURES = "auth_failures"

#: The route group of each limited method; any other method (OPTIONS above all) is never limited.
GROUP_OF_METHOD: Mapping[str, str] = {
    "GET": READS,
    "HEAD": READS,
    "POST": WRITES,
    "PUT": WRITES,
    "PATCH": WRITES,
    "DELETE": WRITES,
}

#: What a storage failure looks like: limits wraps the client's errors; a socket error may slip through.
STORAGE_ERRORS = (StorageError, OSError)


def group_of(method: str) -> str | None:
    """``reads`` for GET and HEAD, ``writes`` for POST, PUT, PATCH and DELETE, else None."""
    return GROUP_OF_METHOD.get(method)


def budget_of(identity: str, group: str) -> str:
    """The budget a request spends: its group for a token, the group's anonymous twin for a client address."""
    return group if identity.startswith("token:") else _ANONYMOUS.get(group, group)


def is_exempt(path: str, prefixes: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``prefixes`` or below one (``/health`` covers ``/health/live``, not ``/healthz``)."""
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if path in (prefix, base) or path.startswith(base + "/"):
            return True
    return False


def identity_of(principal: Any, remote_addr: str | None) -> str:
    """``token:<prefix>`` for an authenticated principal, else ``ip:<client address>``.

    The principal's public token prefix is unique per token, so each token
    has its own budget whichever address it comes from.  The client address
    is the one the server resolved (``req.remote_addr``): the peer, or the
    client a proxy it trusts names (``server.forwarded_allow_ips``); this
    plugin never reads forwarding headers itself.
    """
    prefix = getattr(principal, "prefix", None) if principal is not None else None
    if prefix:
        return f"token:{prefix}"
    return f"ip:{remote_addr or 'unknown'}"


@attrs.frozen
class Decision:
    """Whether a request may go on, and the window as the storage reported it after counting it."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window lets one more request through

    @property
    def reset_seconds(self) -> int:
        """``reset_after`` in whole seconds, rounded up: a client told this never comes back too early."""
        return max(0, math.ceil(self.reset_after))

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait after a refusal, at least 1."""
        return max(1, self.reset_seconds)

    def headers(self) -> dict[str, str]:
        """``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


class StorageUnavailableError(Exception):
    """The counts could not be read or written; ``contacted`` is False while the storage is left alone."""

    def __init__(self, cause: BaseException | None, contacted: bool) -> None:
        self.cause = cause
        self.contacted = contacted
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else "unknown error"
        super().__init__(reason if contacted else f"not retried yet after {reason}")


class RateLimiter:
    """Count a hit of ``identity`` in ``group`` and decide; raises :class:`StorageUnavailableError`."""

    def __init__(
        self,
        rates: Mapping[str, RateLimitItem],
        backend: Backend,
        *,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = dict(rates)
        self.backend = backend
        self.retry_interval = retry_interval
        self._clock = clock
        self._monotonic = monotonic
        self._retry_at = 0.0
        self._last_failure: BaseException | None = None

    def decide(self, identity: str, group: str) -> Decision:
        rate = self.rates[group]
        self._check_retry()
        try:
            hit = self.backend.hit(rate, group, identity)
        except STORAGE_ERRORS as exc:
            raise self._failed(exc) from exc
        return self._decision(rate, hit)

    async def decide_async(self, identity: str, group: str) -> Decision:
        rate = self.rates[group]
        self._check_retry()
        try:
            hit = await self.backend.hit_async(rate, group, identity)
        except STORAGE_ERRORS as exc:
            raise self._failed(exc) from exc
        return self._decision(rate, hit)

    def peek(self, identity: str, group: str) -> Decision:
        """Whether ``identity`` has budget left in ``group``, without spending any."""
        rate = self.rates[group]
        self._check_retry()
        try:
            hit = self.backend.peek(rate, group, identity)
        except STORAGE_ERRORS as exc:
            raise self._failed(exc) from exc
        return self._decision(rate, hit)

    async def peek_async(self, identity: str, group: str) -> Decision:
        rate = self.rates[group]
        self._check_retry()
        try:
            hit = await self.backend.peek_async(rate, group, identity)
        except STORAGE_ERRORS as exc:
            raise self._failed(exc) from exc
        return self._decision(rate, hit)

    def close(self) -> None:
        self.backend.close()

    async def aclose(self) -> None:
        await self.backend.aclose()

    def _check_retry(self) -> None:
        if self._retry_at and self._monotonic() < self._retry_at:
            raise StorageUnavailableError(self._last_failure, contacted=False)

    def _failed(self, exc: BaseException) -> StorageUnavailableError:
        cause = exc.storage_error if isinstance(exc, StorageError) else exc
        self._last_failure = cause
        self._retry_at = self._monotonic() + self.retry_interval
        return StorageUnavailableError(cause, contacted=True)

    def _decision(self, rate: RateLimitItem, hit: Hit) -> Decision:
        self._retry_at = 0.0
        return Decision(hit.allowed, rate.amount, hit.remaining, hit.reset_at - self._clock())


class FailureLog:
    """Log ``event`` as a warning at most once per ``interval`` seconds, counting the ones left out."""

    def __init__(
        self,
        logger: logging.Logger,
        event: str,
        interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.event = event
        self.interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next_at: float | None = None
        self._suppressed = 0

    def __call__(self, **fields: Any) -> bool:
        """Log now unless a warning went out less than ``interval`` ago; True when logged."""
        now = self._monotonic()
        with self._lock:
            if self._next_at is not None and now < self._next_at:
                self._suppressed += 1
                return False
            suppressed, self._suppressed = self._suppressed, 0
            self._next_at = now + self.interval
        self.logger.warning(self.event, extra={**fields, "suppressed": suppressed})
        return True
