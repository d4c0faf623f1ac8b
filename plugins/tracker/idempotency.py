"""``Idempotency-Key``: a retried POST replays its first response and creates nothing.

The key row is inserted *before* the work, in the same transaction: a
concurrent duplicate then waits on the key's unique index (PostgreSQL) or
on the write lock (SQLite), sees the committed key, and replays it.  A
request that fails leaves no key behind, so its retry runs afresh.  Keys
live in the database, so this holds across workers, and expire after the
configured time.  A key belongs to the caller that sent it (:func:`scope_of`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable
from typing import Any

import attrs
import peewee

from .errors import IdempotencyMismatch
from .models import IdempotencyKey
from .store import Store

MAX_KEY_LENGTH = 255


@attrs.frozen
class StoredResponse:
    status_code: int
    body: dict[str, Any]
    location: str | None = None
    replayed: bool = False


def scope_of(caller: str | None, method: str, path: str) -> str:
    """The namespace of a key: who sent it (None: anonymous callers) and to which method and path.

    A key is the caller's own: another caller's same key is another key, so
    nobody replays, probes or blocks someone else's requests.  Stored as a
    digest: fixed length, whatever the path or the caller's name.
    """
    canonical = json.dumps([caller, method, path], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def run_once(
    store: Store,
    *,
    key: str,
    scope: str,
    request_fingerprint: str,
    ttl: datetime.timedelta,
    work: Callable[[], StoredResponse],
) -> StoredResponse:
    """Run ``work`` once per ``(scope, key)`` within ``ttl``; later calls get its stored response."""
    for _ in range(3):
        try:
            with store.write():
                now = store.clock()
                IdempotencyKey.delete().where(IdempotencyKey.created_at < now - ttl).execute()
                existing = IdempotencyKey.get_or_none((IdempotencyKey.scope == scope) & (IdempotencyKey.key == key))
                if existing is not None:
                    return _replay(existing, request_fingerprint)
                row = IdempotencyKey.create(
                    scope=scope, key=key, fingerprint=request_fingerprint, status_code=0, body="", created_at=now
                )
                response = work()
                row.status_code = response.status_code
                row.body = json.dumps(response.body, ensure_ascii=False)
                row.location = response.location
                row.save()
                return response
        except peewee.IntegrityError:
            # A concurrent request with this key committed first: go round and replay it.
            continue
    raise RuntimeError("idempotency key kept conflicting")  # pragma: no cover - needs three lost races in a row


def _replay(row: IdempotencyKey, request_fingerprint: str) -> StoredResponse:
    if row.fingerprint != request_fingerprint:
        raise IdempotencyMismatch(
            "This Idempotency-Key was used with a different request; use a new key for a new request."
        )
    return StoredResponse(row.status_code, json.loads(row.body), row.location, replayed=True)
