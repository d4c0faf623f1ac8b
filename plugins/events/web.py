"""The Falcon glue: the change feed (``GET /api/v1/events``) and each record's activity.

Both are keyset pages in id order.  Every query parameter is parsed
strictly: an unknown or repeated one, or a number that is not 1 to 18 ASCII
digits, is a 400 problem naming it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import falcon

from .outbox import COLUMNS, Outbox, reading, row_to_event

FEED_PATH = "/api/v1/events"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
ACTIVITY_DEFAULT_LIMIT = 50
ACTIVITY_MAX_LIMIT = 200
MAX_DIGITS = 18
MAX_AFTER = 10**MAX_DIGITS - 1
#: ``task.``, ``task.created``: what a type filter may hold (at most this many, comma-separated).
TYPE_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,49}(\.[a-z0-9_]{0,49}){0,3}")
MAX_TYPES = 10
PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,50}")


class QueryProblem(falcon.HTTPBadRequest):
    """400 with ``errors: [{parameter, detail}]``, as the tracker's lists answer."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(description="; ".join(f"{name}: {detail}" for name, detail in problems))
        self.errors = [{"parameter": name, "detail": detail} for name, detail in problems]

    def extensions(self) -> dict[str, Any]:
        return {"errors": self.errors}


def ascii_integer(text: str) -> int | None:
    """1 to 18 ASCII digits as an integer, else None (``int()`` takes other scripts' digits, signs, ``_``)."""
    if not (0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        return None
    return int(text)


def single_values(req: Any, allowed: tuple[str, ...]) -> dict[str, str]:
    problems = [(name, "is not a parameter of this route") for name in sorted(set(req.params) - set(allowed))]
    problems += [(name, "must be given at most once") for name, v in sorted(req.params.items()) if isinstance(v, list)]
    if problems:
        raise QueryProblem(problems)
    return {name: str(value) for name, value in req.params.items()}


def bounded(values: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    number = ascii_integer(raw)
    if number is None or not low <= number <= high:
        raise QueryProblem([(name, f"must be an integer from {low} to {high}")])
    return number


def page_body(items: list[dict[str, Any]], next_after: int, has_more: bool) -> dict[str, Any]:
    return {"items": items, "next_after": next_after, "has_more": has_more}


class FeedResource:
    """``GET /api/v1/events?after=&limit=&type=&project_id=&wait=``: every committed event after ``after``."""

    PARAMETERS = ("after", "limit", "type", "project_id", "wait")

    def __init__(self, outbox: Callable[[], Outbox]) -> None:
        self.outbox = outbox

    def on_get(self, req: Any, resp: Any) -> None:
        outbox = self.outbox()
        values = single_values(req, self.PARAMETERS)
        after = bounded(values, "after", 0, 0, MAX_AFTER)
        limit = bounded(values, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        wait = bounded(values, "wait", 0, 0, outbox.settings.max_wait)
        prefixes = self._prefixes(values.get("type"))
        project = values.get("project_id")
        if project is not None and not PROJECT_ID.fullmatch(project):
            raise QueryProblem([("project_id", "must be a record id (1 to 50 of A-Z, a-z, 0-9, _ and -)")])
        body = self.page(outbox, after, limit, prefixes, project)
        if not body["items"] and wait and outbox.settings.max_waiting and outbox.waiting.acquire(blocking=False):
            # A bounded long poll: woken when this process commits events, re-read each round for other workers'.
            try:
                deadline = time.monotonic() + wait
                while not body["items"] and (left := deadline - time.monotonic()) > 0:
                    outbox.wait_for_news(min(left, outbox.settings.poll_interval))
                    body = self.page(outbox, after, limit, prefixes, project)
            finally:
                outbox.waiting.release()
        resp.media = body

    @staticmethod
    def _prefixes(raw: str | None) -> list[str]:
        if raw is None:
            return []
        prefixes = raw.split(",")
        if len(prefixes) > MAX_TYPES or not all(TYPE_PREFIX.fullmatch(p) for p in prefixes):
            raise QueryProblem(
                [("type", f"must be up to {MAX_TYPES} comma-separated type prefixes such as task. or task.created")]
            )
        return prefixes

    @staticmethod
    def page(outbox: Outbox, after: int, limit: int, prefixes: list[str], project: str | None) -> dict[str, Any]:
        db = outbox.db
        p = db.param
        with reading(db):
            # The newest id first, then the page up to it: every id up to it is final (ids commit in order),
            # so a page that is not full lets the reader skip to it even when the filters matched nothing.
            (head,) = db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM event_outbox").fetchone()
            head = int(head)
            where = [f"id > {p}", f"id <= {p}"]
            params: list[Any] = [after, head]
            if prefixes:
                where.append("(" + " OR ".join(f"substr(type, 1, {len(x)}) = {p}" for x in prefixes) + ")")
                params += prefixes
            if project is not None:
                where.append(f"project_id = {p}")
                params.append(project)
            rows = db.execute_sql(
                f"SELECT {COLUMNS} FROM event_outbox WHERE {' AND '.join(where)} ORDER BY id LIMIT {limit + 1}",
                params,
            ).fetchall()
        items = [row_to_event(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        next_after = items[-1]["id"] if has_more else max(head, after)
        return page_body(items, next_after, has_more)


def changes_of(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``data.changes`` (``{field: {old, new}}``) as a list, field by field."""
    changes = data.get("changes")
    if not isinstance(changes, Mapping):
        return []
    listed = []
    for field, change in sorted(changes.items()):
        if isinstance(change, Mapping):
            listed.append({"field": field, "old": change.get("old"), "new": change.get("new")})
    return listed


class ActivityResource:
    """``GET <record>/activity?after=&limit=``: who changed what and when, oldest first."""

    PARAMETERS = ("after", "limit")

    def __init__(
        self, outbox: Callable[[], Outbox], kind: str, param: str, exists: Callable[[str], bool] | None
    ) -> None:
        self.outbox = outbox
        self.kind = kind
        self.param = param
        self.exists = exists

    def on_get(self, req: Any, resp: Any, **params: str) -> None:
        record_id = params[self.param]
        values = single_values(req, self.PARAMETERS)
        after = bounded(values, "after", 0, 0, MAX_AFTER)
        limit = bounded(values, "limit", ACTIVITY_DEFAULT_LIMIT, 1, ACTIVITY_MAX_LIMIT)
        outbox = self.outbox()
        db = outbox.db
        p = db.param
        with reading(db):
            rows = db.execute_sql(
                f"SELECT {COLUMNS} FROM event_outbox WHERE subject_kind = {p} AND subject_id = {p} AND id > {p} "
                f"ORDER BY id LIMIT {limit + 1}",
                (self.kind, record_id, after),
            ).fetchall()
            if not rows and after == 0 and self.exists is not None and not self.exists(record_id):
                raise falcon.HTTPNotFound(description=f"No {self.kind.replace('_', ' ')} {record_id} has any history.")
        items = []
        for row in rows[:limit]:
            event = row_to_event(row)
            items.append({**event, "changes": changes_of(event["data"])})
        has_more = len(rows) > limit
        next_after = items[-1]["id"] if items else after
        resp.media = page_body(items, next_after, has_more)
