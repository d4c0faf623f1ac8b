"""The Falcon glue of ``/api/v1/webhooks``: subscriptions, a ping, the delivery log and the attempt log.

Bodies are checked against the same schemas the OpenAPI document shows
(:mod:`.openapi`); a key repeated in one object is refused, as the
tracker refuses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import falcon
from jsonschema import Draft202012Validator

import taskman

from . import openapi
from .service import STATUSES, Conflict, NotFound, Refused, Webhooks

PREFIX = "/api/v1/webhooks"
ID = re.compile(r"wh_[0-9a-f]{20}")
MAX_BODY = 65536
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class QueryProblem(falcon.HTTPBadRequest):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(description=f"{name}: {detail}")
        self.errors = [{"parameter": name, "detail": detail}]

    def extensions(self) -> dict[str, Any]:
        return {"errors": self.errors}


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key is repeated in one object")
    return found


def read_json(req: Any, validator: Draft202012Validator) -> dict[str, Any]:
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in ("application/json", "application/merge-patch+json"):
        raise falcon.HTTPUnsupportedMediaType(description="Send the body as application/json.")
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise falcon.HTTPContentTooLarge(description=f"A subscription is at most {MAX_BODY} bytes of JSON.")
    try:
        body = json.loads(raw, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as exc:
        raise falcon.HTTPBadRequest(description=f"The body is not JSON this API reads: {exc}") from None
    if not isinstance(body, dict):
        raise taskman.ValidationProblem([{"pointer": "", "detail": "must be a JSON object"}])
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        problems = [
            {"pointer": "".join(f"/{part}" for part in error.absolute_path), "detail": error.message[:300]}
            for error in errors[:20]
        ]
        raise taskman.ValidationProblem(problems)
    return body


def _integer(req: Any, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = req.params.get(name)
    if raw is None:
        return default
    if isinstance(raw, list) or not (0 < len(raw) <= 18 and raw.isascii() and raw.isdigit()):
        raise QueryProblem(name, f"must be an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise QueryProblem(name, f"must be an integer from {low} to {high}")
    return value


def _only(req: Any, *allowed: str) -> None:
    for name in sorted(req.params):
        if name not in allowed:
            raise QueryProblem(name, "is not a parameter of this route")


def _problem(error: Exception) -> falcon.HTTPError:
    if isinstance(error, Refused):
        return taskman.ValidationProblem([{"pointer": error.pointer, "detail": error.detail}])
    if isinstance(error, Conflict):
        return falcon.HTTPConflict(description=str(error))
    return falcon.HTTPNotFound(description="No such webhook subscription.")


class _Base:
    def __init__(self, webhooks: Callable[[], Webhooks]) -> None:
        self.webhooks = webhooks

    def _id(self, webhook_id: str) -> str:
        if not ID.fullmatch(webhook_id):
            raise falcon.HTTPNotFound(description="No such webhook subscription.")
        return webhook_id


class CollectionResource(_Base):
    create_schema = Draft202012Validator(openapi.CREATE)

    def on_get(self, req: Any, resp: Any) -> None:
        _only(req)
        resp.media = {"items": self.webhooks().all()}

    def on_post(self, req: Any, resp: Any) -> None:
        _only(req)
        body = read_json(req, self.create_schema)
        try:
            created, secret = self.webhooks().create(
                body["url"], body.get("event_types", ["*"]), body.get("description", ""), body.get("enabled", True)
            )
        except (Refused, Conflict) as exc:
            raise _problem(exc) from None
        resp.status = falcon.HTTP_201
        resp.set_header("Location", f"{PREFIX}/{created['id']}")
        resp.media = {**created, "secret": secret}


class ItemResource(_Base):
    patch_schema = Draft202012Validator(openapi.PATCH)

    def on_get(self, req: Any, resp: Any, webhook_id: str) -> None:
        _only(req)
        found = self.webhooks().get(self._id(webhook_id))
        if found is None:
            raise falcon.HTTPNotFound(description="No such webhook subscription.")
        resp.media = found

    def on_patch(self, req: Any, resp: Any, webhook_id: str) -> None:
        _only(req)
        sub_id = self._id(webhook_id)
        body = read_json(req, self.patch_schema)
        try:
            resp.media = self.webhooks().update(sub_id, body)
        except (Refused, Conflict, NotFound) as exc:
            raise _problem(exc) from None

    def on_delete(self, req: Any, resp: Any, webhook_id: str) -> None:
        _only(req)
        if not self.webhooks().delete(self._id(webhook_id)):
            raise falcon.HTTPNotFound(description="No such webhook subscription.")
        resp.status = falcon.HTTP_204


class PingResource(_Base):
    def on_post(self, req: Any, resp: Any, webhook_id: str) -> None:
        _only(req)
        try:
            delivery = self.webhooks().ping(self._id(webhook_id))
        except (Conflict, NotFound) as exc:
            raise _problem(exc) from None
        resp.status = falcon.HTTP_202
        resp.media = delivery


class DeliveriesResource(_Base):
    def on_get(self, req: Any, resp: Any, webhook_id: str) -> None:
        _only(req, "status", "before", "limit")
        sub_id = self._id(webhook_id)
        status = req.params.get("status")
        if status is not None and (isinstance(status, list) or status not in STATUSES):
            raise QueryProblem("status", f"must be one of {', '.join(STATUSES)}")
        before = _integer(req, "before", 1, 10**18 - 1, None)
        limit = _integer(req, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT) or DEFAULT_LIMIT
        webhooks = self.webhooks()
        if webhooks.get(sub_id) is None:
            raise falcon.HTTPNotFound(description="No such webhook subscription.")
        resp.media = webhooks.deliveries(sub_id, status, before, limit)


class AttemptsResource(_Base):
    def on_get(self, req: Any, resp: Any, webhook_id: str) -> None:
        _only(req, "before", "limit")
        sub_id = self._id(webhook_id)
        before = _integer(req, "before", 1, 10**18 - 1, None)
        limit = _integer(req, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT) or DEFAULT_LIMIT
        webhooks = self.webhooks()
        if webhooks.get(sub_id) is None:
            raise falcon.HTTPNotFound(description="No such webhook subscription.")
        resp.media = webhooks.attempts(sub_id, before, limit)


def routes(webhooks: Callable[[], Webhooks]) -> list[tuple[str, object]]:
    item = f"{PREFIX}/{{webhook_id}}"
    return [
        (PREFIX, CollectionResource(webhooks)),
        (item, ItemResource(webhooks)),
        (f"{item}/ping", PingResource(webhooks)),
        (f"{item}/deliveries", DeliveriesResource(webhooks)),
        (f"{item}/attempts", AttemptsResource(webhooks)),
    ]
