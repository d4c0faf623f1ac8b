"""The Falcon glue: JSON in and out, conditional requests, idempotent POSTs, errors as problem+json.

Responders are plain sync methods (the core runs them on the thread pool
under ASGI).  All rules live in the collection classes; this module only
reads requests, calls them and writes responses.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import falcon

from taskman import ValidationProblem

from . import idempotency, transfer
from .action_lists import ITEM_ID, ActionLists
from .comments import Caller, Comments
from .errors import (
    BadQuery,
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    Invalid,
    Malformed,
    NotFound,
    PreconditionFailed,
    Problem,
    TrackerError,
)
from .listing import Page
from .records import Collection
from .schemas import ITEM_PATCH, TASK_BATCH, id_pattern
from .store import Store, require_possible_id
from .tasks import Tasks
from .validation import Schema, ascii_integer, parse_json

JSON_TYPES = ("application/json",)
PROJECT_ID = re.compile(id_pattern("P"))
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/json")
#: A tag of this API: the record's version in quotes.  ``If-Match`` compares strongly (RFC 9110 section
#: 13.1.1), so a weak tag (``W/"3"``) never matches there; ``If-None-Match`` compares weakly.
_ETAG_VERSION = re.compile(r'"([0-9]{1,18})"')
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


# -- errors ------------------------------------------------------------------------


class _QueryProblem(falcon.HTTPBadRequest):
    def __init__(self, error: BadQuery) -> None:
        super().__init__(description=str(error))
        self.errors = [{"parameter": p.pointer, "detail": p.detail} for p in error.problems]

    def extensions(self) -> dict[str, Any]:
        return {"errors": self.errors}


class _Stale(falcon.HTTPPreconditionFailed):
    def __init__(self, error: PreconditionFailed) -> None:
        super().__init__(description=str(error), headers={"ETag": etag(error.current_version)})
        self.current_version = error.current_version

    def extensions(self) -> dict[str, Any]:
        return {"current_version": self.current_version}


def http_error(error: TrackerError) -> falcon.HTTPError:
    if isinstance(error, Invalid):
        return ValidationProblem([{"pointer": p.pointer, "detail": p.detail} for p in error.problems], str(error))
    if isinstance(error, BadQuery):
        return _QueryProblem(error)
    if isinstance(error, Malformed):
        return falcon.HTTPBadRequest(description=str(error))
    if isinstance(error, NotFound):
        return falcon.HTTPNotFound(description=str(error))
    if isinstance(error, Conflict):
        return falcon.HTTPConflict(description=str(error))
    if isinstance(error, Forbidden):
        return falcon.HTTPForbidden(description=str(error))
    if isinstance(error, PreconditionFailed):
        return _Stale(error)
    if isinstance(error, IdempotencyMismatch):
        # The body is what differs from the first request with this key: point at the whole of it.
        return ValidationProblem([{"pointer": "", "detail": str(error)}], str(error))
    raise error


def translating(responder: Callable[..., None]) -> Callable[..., None]:
    """Turn the tracker's errors into problem+json."""

    @functools.wraps(responder)
    def respond(self: Any, req: Any, resp: Any, **params: Any) -> None:
        try:
            responder(self, req, resp, **params)
        except TrackerError as error:
            raise http_error(error) from None

    return respond


# -- reading requests ------------------------------------------------------------------


def _body(req: Any) -> bytes:
    """The whole body; under WSGI a chunked one too (no Content-Length: falcon's bounded_stream reads nothing)."""
    env = getattr(req, "env", None)
    if env is not None and req.content_length is None and env.get("wsgi.input_terminated"):
        return bytes(req.stream.read())
    return bytes(req.bounded_stream.read())


def read_body(req: Any, schema: Schema, *, types: tuple[str, ...] = JSON_TYPES, optional: bool = False) -> Any:
    """The request's JSON body, checked against ``schema``: 415, 400 and 422 as the case may be."""
    raw = _body(req)
    if not raw and optional:
        return schema.check({})
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in types:
        raise falcon.HTTPUnsupportedMediaType(description=f"Send the body as {' or '.join(types)}.")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise Invalid([Problem("", "must be a JSON object")])
    return schema.check(body)


def caller(req: Any) -> str | None:
    """Who sends the request, by name, as an identity plugin put it on ``req.context.auth``; None: anonymous.

    The auth plugin puts a ``Principal`` (or None) there; any object with a
    ``name`` works, so the tracker needs no plugin of its own kind.
    """
    principal = getattr(req.context, "auth", None)
    if principal is None:
        return None
    name = getattr(principal, "name", None)
    return name if isinstance(name, str) else str(principal)


def caller_of(req: Any) -> Caller:
    """The caller as the comment rules see them: a name, and whether an admin.

    An admin is a principal that ``allows("admin")`` (the auth plugin's) or
    lists ``admin`` among its ``scopes``; a request without a principal is
    anonymous and never an admin, whatever scopes anonymous access grants.
    """
    principal = getattr(req.context, "auth", None)
    if principal is None:
        return Caller(None)
    allows = getattr(principal, "allows", None)
    admin = bool(allows("admin")) if callable(allows) else "admin" in (getattr(principal, "scopes", None) or ())
    return Caller(caller(req), admin)


def checked_id(collection: Collection, record_id: str) -> str:
    """A path's record id, refused with 404 before anything else uses it when no record can have it."""
    require_possible_id(record_id, collection.label.replace("_", " ").capitalize())
    return record_id


def versions(header: str | None, *, weak: bool = False) -> frozenset[int] | None:
    """The versions an ``If-Match`` header names; None when absent or ``*`` (any current version).

    ``If-Match`` uses the strong comparison (RFC 9110 section 13.1.1): a weak
    tag names no version, so ``If-Match: W/"3"`` fails like a stale tag
    does.  ``weak=True`` is the weak comparison ``If-None-Match`` uses, where
    ``W/"3"`` and ``"3"`` both name version 3.
    """
    if header is None or header.strip() == "*":
        return None
    found = set()
    for tag in header.split(","):
        tag = tag.strip()
        if weak:
            tag = tag.removeprefix("W/")
        match = _ETAG_VERSION.fullmatch(tag)
        if match:
            found.add(int(match.group(1)))
    return frozenset(found)


def etag(version: int) -> str:
    return f'"{version}"'


def no_params(req: Any, *allowed: str) -> None:
    unknown = sorted(set(req.params) - set(allowed))
    if unknown:
        raise BadQuery([Problem(name, "is not a parameter of this route") for name in unknown])


def flag(req: Any, name: str) -> bool:
    value = req.params.get(name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise BadQuery([Problem(name, "must be true or false")])
    return bool(value == "true")


# -- writing responses -----------------------------------------------------------------


def send(resp: Any, body: Mapping[str, Any], status: int = 200, *, location: str | None = None) -> None:
    resp.status = status
    resp.media = body
    if "version" in body:
        resp.set_header("ETag", etag(body["version"]))
    if location:
        resp.set_header("Location", location)


def send_page(req: Any, resp: Any, collection: Collection, page: Page) -> None:
    body: dict[str, Any] = {
        "items": collection.render_many(page.rows),
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
    }
    if page.total is not None:
        body["total"] = page.total
    send(resp, body)
    if page.next_cursor:
        params = {k: v for k, v in req.params.items() if k != "cursor"}
        params["cursor"] = page.next_cursor
        resp.append_header("Link", f'<{req.path}?{urlencode(params)}>; rel="next"')


def send_conditional(req: Any, resp: Any, record: Mapping[str, Any]) -> None:
    """A read of one record: 304 when ``If-None-Match`` names its version."""
    if_none_match = req.get_header("If-None-Match")
    if if_none_match is not None:
        named = versions(if_none_match, weak=True)
        if named is None or record["version"] in named:
            resp.status = 304
            resp.set_header("ETag", etag(record["version"]))
            return
    send(resp, record)


def send_stored(resp: Any, stored: idempotency.StoredResponse) -> None:
    send(resp, stored.body, stored.status_code, location=stored.location)
    if stored.replayed:
        resp.set_header("Idempotent-Replayed", "true")


class Idempotency:
    """Runs a POST's work once per ``Idempotency-Key`` (when the client sends one)."""

    def __init__(self, ttl: datetime.timedelta) -> None:
        self.ttl = ttl

    def run(
        self, req: Any, collection: Collection, body: Any, work: Callable[[], idempotency.StoredResponse]
    ) -> idempotency.StoredResponse:
        key = req.get_header("Idempotency-Key")
        if key is None:
            return work()
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            raise falcon.HTTPBadRequest(description="Idempotency-Key must be 1 to 255 visible ASCII characters.")
        return idempotency.run_once(
            collection.store,
            key=key,
            scope=idempotency.scope_of(caller(req), "POST", req.path),
            request_fingerprint=idempotency.fingerprint("POST", req.path, body),
            ttl=self.ttl,
            work=work,
        )


# -- resources ---------------------------------------------------------------------------


class CollectionResource:
    """``GET`` (a page) and ``POST`` (create) on ``/api/v1/<things>``."""

    def __init__(self, collection: Collection, prefix: str, idempotent: Idempotency) -> None:
        self.collection = collection
        self.prefix = prefix
        self.idempotent = idempotent
        self.create_schema = Schema(collection.resource.create_schema())

    @translating
    def on_get(self, req: Any, resp: Any) -> None:
        with self.collection.store.read():
            page = self.collection.page(req.params)
            send_page(req, resp, self.collection, page)

    @translating
    def on_post(self, req: Any, resp: Any) -> None:
        no_params(req)
        body = read_body(req, self.create_schema)

        def create() -> idempotency.StoredResponse:
            record = self.collection.create(body)
            return idempotency.StoredResponse(201, self.collection.render(record), f"{self.prefix}/{record.id}")

        send_stored(resp, self.idempotent.run(req, self.collection, body, create))


class BatchResource:
    """``POST /api/v1/tasks/batch``: up to 500 tasks in one transaction, all or none; one write for the limiter."""

    def __init__(self, tasks: Tasks, prefix: str, idempotent: Idempotency) -> None:
        self.tasks = tasks
        self.prefix = prefix
        self.idempotent = idempotent
        self.schema = Schema(TASK_BATCH)

    @translating
    def on_post(self, req: Any, resp: Any) -> None:
        no_params(req)
        body = read_body(req, self.schema)

        def create() -> idempotency.StoredResponse:
            created = self.tasks.create_many(body["items"])
            return idempotency.StoredResponse(201, {"items": self.tasks.render_many(created)})

        send_stored(resp, self.idempotent.run(req, self.tasks, body, create))


class ItemResource:
    """``GET``, ``PUT`` (replace), ``PATCH`` (JSON Merge Patch) and ``DELETE`` on ``/api/v1/<things>/{id}``."""

    def __init__(self, collection: Collection, id_param: str, *, cascade: bool = False) -> None:
        self.collection = collection
        self.id_param = id_param
        self.cascade = cascade
        self.patch_schema = Schema(collection.resource.patch_schema())
        # A replacement is checked exactly as a creation is: read-only fields are refused alike.
        self.put_schema = Schema(collection.resource.create_schema())

    @translating
    def on_get(self, req: Any, resp: Any, **params: str) -> None:
        record_id = checked_id(self.collection, params[self.id_param])
        no_params(req)
        send_conditional(req, resp, self.collection.read(record_id))

    @translating
    def on_patch(self, req: Any, resp: Any, **params: str) -> None:
        record_id = checked_id(self.collection, params[self.id_param])
        no_params(req)
        body = read_body(req, self.patch_schema, types=MERGE_PATCH_TYPES)
        record = self.collection.patch(record_id, body, versions(req.get_header("If-Match")))
        send(resp, self.collection.render(record))

    @translating
    def on_put(self, req: Any, resp: Any, **params: str) -> None:
        record_id = checked_id(self.collection, params[self.id_param])
        no_params(req)
        body = read_body(req, self.put_schema)
        record = self.collection.replace(record_id, body, versions(req.get_header("If-Match")))
        send(resp, self.collection.render(record))

    @translating
    def on_delete(self, req: Any, resp: Any, **params: str) -> None:
        record_id = checked_id(self.collection, params[self.id_param])
        no_params(req, *(("cascade",) if self.cascade else ()))
        self.collection.delete(record_id, versions(req.get_header("If-Match")), cascade=flag(req, "cascade"))
        resp.status = 204


class ActionResource:
    """A state-changing ``POST`` on one record: ``action(record_id, body, if_match)`` returns the record."""

    def __init__(
        self,
        collection: Collection,
        id_param: str,
        action: Callable[[str, Any, frozenset[int] | None], Any],
        schema: Mapping[str, Any] | None,
        idempotent: Idempotency,
        status: int = 200,
    ) -> None:
        self.collection = collection
        self.id_param = id_param
        self.action = action
        self.schema = Schema(schema or {"type": "object", "additionalProperties": False})
        self.body_required = schema is not None and bool(schema.get("required"))
        self.idempotent = idempotent
        self.status = status

    @translating
    def on_post(self, req: Any, resp: Any, **params: str) -> None:
        record_id = checked_id(self.collection, params[self.id_param])
        no_params(req)
        body = read_body(req, self.schema, optional=not self.body_required)
        if_match = versions(req.get_header("If-Match"))

        def act() -> idempotency.StoredResponse:
            record = self.action(record_id, body, if_match)
            return idempotency.StoredResponse(self.status, self.collection.render(record))

        send_stored(resp, self.idempotent.run(req, self.collection, body, act))


class ReportResource:
    """A read-only ``GET`` computed for one record (metrics, velocity, burndown)."""

    def __init__(self, id_param: str, report: Callable[[str], Mapping[str, Any]]) -> None:
        self.id_param = id_param
        self.report = report

    @translating
    def on_get(self, req: Any, resp: Any, **params: str) -> None:
        record_id = params[self.id_param]
        no_params(req)
        send(resp, self.report(record_id))


class ItemOfListResource:
    """``PATCH`` and ``DELETE`` on ``/action-lists/{id}/items/{item}``: an item by its id, or by its position."""

    def __init__(self, lists: ActionLists) -> None:
        self.lists = lists
        self.schema = Schema(ITEM_PATCH)

    def _ref(self, list_id: str, item: str) -> int | str:
        checked_id(self.lists, list_id)
        if ITEM_ID.fullmatch(item):
            return item
        # A position is ASCII digits, as every number in this API (int() would take other scripts' digits, "+5").
        index = ascii_integer(item, 4)
        if index is None:
            raise NotFound("No resource matches this path.")
        return index

    @translating
    def on_patch(self, req: Any, resp: Any, list_id: str, item: str) -> None:
        ref = self._ref(list_id, item)
        no_params(req)
        body = read_body(req, self.schema, types=MERGE_PATCH_TYPES)
        record = self.lists.update_item(list_id, ref, body, versions(req.get_header("If-Match")))
        send(resp, self.lists.render(record))

    @translating
    def on_delete(self, req: Any, resp: Any, list_id: str, item: str) -> None:
        ref = self._ref(list_id, item)
        no_params(req)
        record = self.lists.delete_item(list_id, ref, versions(req.get_header("If-Match")))
        send(resp, self.lists.render(record))


class CommentsResource:
    """``GET`` (a page) and ``POST`` (write one) on ``/api/v1/tasks/{task_id}/comments``."""

    def __init__(self, comments: Comments, prefix: str, idempotent: Idempotency) -> None:
        self.comments = comments
        self.prefix = prefix
        self.idempotent = idempotent
        self.create_schema = Schema(comments.resource.create_schema())

    @translating
    def on_get(self, req: Any, resp: Any, task_id: str) -> None:
        require_possible_id(task_id, "Task")
        with self.comments.store.read():
            send_page(req, resp, self.comments, self.comments.page_of(task_id, req.params))

    @translating
    def on_post(self, req: Any, resp: Any, task_id: str) -> None:
        require_possible_id(task_id, "Task")
        no_params(req)
        body = read_body(req, self.create_schema)
        author = caller_of(req)

        def create() -> idempotency.StoredResponse:
            comment = self.comments.add(task_id, body, author)
            location = f"{self.prefix}/{task_id}/comments/{comment.id}"
            return idempotency.StoredResponse(201, self.comments.render(comment), location)

        send_stored(resp, self.idempotent.run(req, self.comments, body, create))


class CommentResource:
    """``GET``, ``PATCH`` (the author or an admin) and ``DELETE`` on ``/api/v1/tasks/{task_id}/comments/{id}``."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self.patch_schema = Schema(comments.resource.patch_schema())

    @staticmethod
    def _ids(task_id: str, comment_id: str) -> None:
        require_possible_id(task_id, "Task")
        require_possible_id(comment_id, "Comment")

    @translating
    def on_get(self, req: Any, resp: Any, task_id: str, comment_id: str) -> None:
        self._ids(task_id, comment_id)
        no_params(req)
        send_conditional(req, resp, self.comments.read_of(task_id, comment_id))

    @translating
    def on_patch(self, req: Any, resp: Any, task_id: str, comment_id: str) -> None:
        self._ids(task_id, comment_id)
        no_params(req)
        body = read_body(req, self.patch_schema, types=MERGE_PATCH_TYPES)
        if_match = versions(req.get_header("If-Match"))
        comment = self.comments.edit(task_id, comment_id, body, caller_of(req), if_match)
        send(resp, self.comments.render(comment))

    @translating
    def on_delete(self, req: Any, resp: Any, task_id: str, comment_id: str) -> None:
        self._ids(task_id, comment_id)
        no_params(req)
        self.comments.remove(task_id, comment_id, caller_of(req), versions(req.get_header("If-Match")))
        resp.status = 204


class ExportResource:
    """``GET /api/v1/export``: every record, or one project's (``?project_id=``), as one document."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @translating
    def on_get(self, req: Any, resp: Any) -> None:
        no_params(req, "project_id")
        project_id = req.params.get("project_id")
        if project_id is not None and (not isinstance(project_id, str) or not PROJECT_ID.fullmatch(project_id)):
            raise BadQuery([Problem("project_id", f"must be a project id ({PROJECT_ID.pattern}), given once")])
        # Not send(): the document's "version" is its format's, no ETag.
        resp.media = transfer.export(self.store, project_id)


class ImportResource:
    """``POST /api/v1/import`` (admin): load an export in one transaction; records already there, equal, are kept."""

    def __init__(self, store: Store, idempotent: Idempotency, collection: Collection) -> None:
        self.store = store
        self.idempotent = idempotent
        self.collection = collection  # whose store the idempotency keys are kept in
        self.schema = Schema(transfer.IMPORT_SCHEMA)

    @translating
    def on_post(self, req: Any, resp: Any) -> None:
        no_params(req)
        body = read_body(req, self.schema)

        def load() -> idempotency.StoredResponse:
            return idempotency.StoredResponse(200, transfer.load(self.store, body))

        send_stored(resp, self.idempotent.run(req, self.collection, body, load))
