"""API tokens: minting, hashing, expiry and the store; plain Python over peewee, no Falcon.

A token is ``tm_`` and 32 random bytes in URL-safe base64.  Only its SHA-256
is stored, with its first characters as a public prefix that names it in
listings and finds its row; the hash is compared in constant time.  With 256
random bits a fast hash is enough: there is nothing to guess from a leaked
hash, so a password-style slow KDF would only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import attrs
import peewee

from .access import Principal
from .models import ApiToken
from .settings import SCOPES

TOKEN_PREFIX = "tm_"
TOKEN_BYTES = 32
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
#: What a presented token must look like before any lookup (no database work for garbage).
TOKEN_SHAPE = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}")
NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DURATION = re.compile(r"([0-9]+)([mhdw])")  # ASCII digits: \d also matches other scripts'
_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
#: The longest lifetime a token may be given: 100 years (far enough; a date past 9999 overflows).
MAX_LIFETIME = timedelta(days=36500)

log = logging.getLogger("taskman.auth")


class TokenError(ValueError):
    """A token cannot be created or revoked as asked; the message says why."""


def utcnow() -> datetime:
    """Now in UTC, naive (the form both databases store)."""
    return datetime.now(UTC).replace(tzinfo=None)


def mint() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w`` as a timedelta."""
    shown = repr(text if len(text) <= 20 else text[:17] + "...")
    match = _DURATION.fullmatch(text.strip())
    if not match or not match.group(1).strip("0"):
        raise TokenError(f"expiry {shown} is not a positive duration such as 90m, 12h, 30d or 2w")
    digits = match.group(1).lstrip("0")
    # Bounded before any arithmetic: timedelta and datetime overflow, int() refuses over 4300 digits.
    minutes = int(digits) * _MINUTES[match.group(2)] if len(digits) <= 12 else None
    if minutes is None or minutes > MAX_LIFETIME // timedelta(minutes=1):
        raise TokenError(f"expiry {shown} is too long: at most {MAX_LIFETIME.days}d (100 years)")
    return timedelta(minutes=minutes)


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = sorted(set(items) - set(SCOPES))
    if not items or unknown:
        raise TokenError(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}, got {','.join(items)!r}")
    return tuple(s for s in SCOPES if s in items)


@attrs.frozen
class TokenInfo:
    """A token as listed: never the token itself."""

    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        return cls(row.name, row.prefix, tuple(row.scopes.split(",")), row.created_at, row.expires_at, row.last_used_at)


class TokenStore:
    """Create, list, revoke and verify tokens in the ``auth_token`` table."""

    def create(
        self, name: str, scopes: str | Iterable[str], expires_in: timedelta | None = None
    ) -> tuple[str, TokenInfo]:
        """Store a new token and return it with its info: the only time the token is seen."""
        if not NAME_SHAPE.fullmatch(name):
            raise TokenError(f"name {name!r} must be 1-100 letters, digits, '.', '_' or '-'")
        chosen = parse_scopes(scopes)
        now = utcnow()
        token = mint()
        try:
            with ApiToken._meta.database.atomic():
                row = ApiToken.create(
                    name=name,
                    prefix=token[:PREFIX_LENGTH],
                    token_hash=digest(token),
                    scopes=",".join(chosen),
                    created_at=now,
                    expires_at=now + expires_in if expires_in else None,
                )
        except peewee.IntegrityError:
            raise TokenError(f"a token named {name!r} already exists; revoke it first or pick another name") from None
        return token, TokenInfo.of(row)

    def list(self) -> list[TokenInfo]:
        return [TokenInfo.of(row) for row in ApiToken.select().order_by(ApiToken.name)]

    def count(self) -> int:
        return int(ApiToken.select().count())

    def revoke(self, name: str) -> bool:
        return bool(ApiToken.delete().where(ApiToken.name == name).execute())

    def verify(self, token: str, now: datetime | None = None) -> Principal | None:
        """The principal of a valid, unexpired token; None for anything else."""
        if not TOKEN_SHAPE.fullmatch(token):
            return None
        row = ApiToken.get_or_none(ApiToken.prefix == token[:PREFIX_LENGTH])
        if row is None or not hmac.compare_digest(row.token_hash, digest(token)):
            return None
        if row.expires_at is not None and row.expires_at <= (now or utcnow()):
            return None
        return Principal(row.name, row.prefix, frozenset(row.scopes.split(",")))

    def touch(self, prefix: str, when: datetime | None = None) -> None:
        ApiToken.update(last_used_at=when or utcnow()).where(ApiToken.prefix == prefix).execute()


class Authenticator:
    """Verify presented tokens through a small per-process cache, and note when each was last used.

    Every request with a token asks this; the cache (a bounded LRU of
    digests, holding misses too so garbage cannot hammer the database)
    keeps that to one dictionary lookup.  A revoked or expired token stops
    working within ``cache_seconds``.
    """

    MAX_ENTRIES = 4096

    def __init__(self, store: TokenStore, *, cache_seconds: float, last_used_interval: float) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.last_used_interval = last_used_interval
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """``(True, principal or None)`` when the cache can answer, ``(False, None)`` when it cannot."""
        key = digest(token)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry[0] <= time.monotonic():
                return False, None
            return True, entry[1]

    def authenticate(self, token: str) -> Principal | None:
        """Verify (through the cache) and record the use; may query and write the database."""
        known, principal = self.cached(token)
        if not known:
            principal = self.store.verify(token)
            with self._lock:
                self._cache[digest(token)] = (time.monotonic() + self.cache_seconds, principal)
                while len(self._cache) > self.MAX_ENTRIES:
                    self._cache.popitem(last=False)
        if principal is not None:
            self.note_use(principal)
        return principal

    def use_is_due(self, principal: Principal) -> bool:
        return time.monotonic() >= self._touched.get(principal.prefix, 0.0)

    def note_use(self, principal: Principal) -> None:
        """Write the last-used time at most once per ``last_used_interval`` per token and process."""
        if not self.use_is_due(principal):
            return
        self._touched[principal.prefix] = time.monotonic() + self.last_used_interval
        try:
            self.store.touch(principal.prefix)
        except peewee.DatabaseError as exc:  # bookkeeping: never fail the request for it
            log.warning("auth_last_used_not_saved", extra={"token": principal.name, "error": type(exc).__name__})
