"""The floors of the database cases: bare Falcon doing each tracker request's work with the raw driver.

The database is ``APP_DATABASE__URL``, as for taskman; :mod:`sqlite3` or
:mod:`psycopg` on one connection per thread, opened on first use and kept
(SQLite with taskman's pragmas: WAL, ``synchronous=NORMAL``, foreign keys,
the same busy timeout, so both sides write as durably).  No ORM, no
validation, no plugins: what a Falcon user would write by hand.

* ``GET /api/v1/tasks/{task_id}`` (``rawdb-pk-*``): ``SELECT * FROM task
  WHERE id = ?``, the row as a JSON object (column -> value, date-times in
  ISO 8601), 404 when there is none.
* ``POST /api/v1/tasks`` (``rawdb-post-*``): the body parsed, the task row
  and its label and assignee rows inserted in one transaction (the
  tracker's defaults for what the body leaves out), 201 with the task as
  the API shows it and a ``Location``.
* ``GET /api/v1/tasks?project_id=&status=&limit=`` (``rawdb-list-*``): the
  tracker's own SQL for that list (filters, ``ORDER BY created_at, id``,
  one row more than the page), rendered as the tracker renders it: items
  with date-times in RFC 3339 and lists as arrays, the next cursor and
  ``has_more``, the ``Link`` to the next page.

Under WSGI the responder is sync (taskman's threaded gunicorn worker, as ``taskman serve``).  Under ASGI the
responder is a coroutine that runs the same sync function on the loop's
default thread pool (``loop.run_in_executor(None, ...)``, the hop taskman
itself makes for sync responders, minus its contextvars copy): a blocking
driver call on the event loop is not what a real app does.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import hashlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlencode

import falcon
import falcon.asgi

DATABASE_ENV = "APP_DATABASE__URL"
PATH = "/api/v1/tasks/{task_id}"
TASKS_PATH = "/api/v1/tasks"
SQL = "SELECT * FROM task WHERE id = {param}"
#: The task columns in the order the API shows them.
TASK_FIELDS = (
    "id",
    "title",
    "summary",
    "description",
    "owner",
    "assignees",
    "labels",
    "priority",
    "severity",
    "status",
    "estimate_points",
    "due_at",
    "project_id",
    "sprint_id",
    "depends_on",
    "completed_at",
    "created_at",
    "updated_at",
    "version",
)
LIST_FIELDS = ("assignees", "labels", "depends_on")
TIME_FIELDS = ("due_at", "completed_at", "created_at", "updated_at")
INSERT_TASK = "INSERT INTO task ({columns}) VALUES ({params})"
INSERT_LINK = "INSERT INTO {table} (task_id, {column}) VALUES ({param}, {param})"
#: The tracker's SQL for ``?project_id=&status=<one>&limit=`` (peewee's, as it renders it).
LIST_SQL = (
    'SELECT "t1"."id", "t1"."created_at", "t1"."updated_at", "t1"."version", "t1"."title", "t1"."summary", '
    '"t1"."description", "t1"."owner", "t1"."assignees", "t1"."labels", "t1"."priority", "t1"."severity", '
    '"t1"."status", "t1"."estimate_points", "t1"."due_at", "t1"."project_id", "t1"."sprint_id", '
    '"t1"."depends_on", "t1"."completed_at" FROM "task" AS "t1" WHERE (("t1"."project_id" = {param}) AND '
    '("t1"."status" IN ({param}))) ORDER BY "t1"."created_at" ASC, "t1"."id" ASC LIMIT {param}'
)

Row = dict[str, Any] | None


def json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def row_json(row: Row) -> str:
    return json.dumps(row, default=json_default)


def sqlite_file(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``, ``sqlite:////abs.db`` -> ``/abs.db`` (as taskman reads it)."""
    path = url[len("sqlite://") :]
    path = path[1:] if path.startswith("/") else path
    return unquote(path.split("?", 1)[0]) or ":memory:"


def rfc3339(value: Any) -> str | None:
    """A stored date-time as the tracker shows it (SQLite hands back text, psycopg a datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return str(value.isoformat(timespec="microseconds")) + "Z"


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A task row as the API shows it: its fields in order, lists decoded, date-times in RFC 3339."""
    out = {name: row[name] for name in TASK_FIELDS}
    for name in LIST_FIELDS:
        if isinstance(out[name], str):
            out[name] = json.loads(out[name])
    for name in TIME_FIELDS:
        out[name] = rfc3339(out[name])
    return out


class PerThread:
    """One driver connection per thread, opened on first use and reused: the queries of the three floors."""

    def __init__(self, connect: Callable[[], Any], param: str, begin: str | None) -> None:
        self._connect = connect
        self._local = threading.local()
        self.param = param
        #: What opens a write transaction: SQLite's ``BEGIN IMMEDIATE`` (as taskman); psycopg's ``transaction()``.
        self.begin = begin
        self.sql = SQL.format(param=param)
        self.insert_task = INSERT_TASK.format(
            columns=", ".join(TASK_FIELDS), params=", ".join([param] * len(TASK_FIELDS))
        )
        self.insert_label = INSERT_LINK.format(table="task_label", column="label", param=param)
        self.insert_assignee = INSERT_LINK.format(table="task_assignee", column="assignee", param=param)
        self.list_sql = LIST_SQL.format(param=param)

    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def fetch(self, task_id: str) -> Row:
        cursor = self.connection().execute(self.sql, (task_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Insert the task of ``body`` and its label and assignee rows in one transaction; the task as shown."""
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        row = {
            "id": body["id"],
            "title": body["title"],
            "summary": body.get("summary"),
            "description": body.get("description"),
            "owner": body.get("owner"),
            "assignees": body.get("assignees", []),
            "labels": body.get("labels", []),
            "priority": body.get("priority", "p2"),
            "severity": body.get("severity"),
            "status": "new",
            "estimate_points": None if body.get("estimate_points") is None else float(body["estimate_points"]),
            "due_at": None,
            "project_id": body["project_id"],
            "sprint_id": body.get("sprint_id"),
            "depends_on": [],
            "completed_at": None,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        values = tuple(
            json.dumps(row[name], separators=(",", ":")) if name in LIST_FIELDS else row[name] for name in TASK_FIELDS
        )
        conn = self.connection()
        if self.begin is None:  # psycopg
            with conn.transaction():
                self._insert(conn, row, values)
        else:
            conn.execute(self.begin)
            try:
                self._insert(conn, row, values)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return shown(row)

    def _insert(self, conn: Any, row: dict[str, Any], values: tuple[Any, ...]) -> None:
        conn.execute(self.insert_task, values)
        for label in row["labels"]:
            conn.execute(self.insert_label, (row["id"], label))
        for assignee in row["assignees"]:
            conn.execute(self.insert_assignee, (row["id"], assignee))

    def page(self, project_id: str, status: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the list and the cursor of the next one (None on the last page), as the tracker makes it."""
        cursor = self.connection().execute(self.list_sql, (project_id, status, limit + 1))
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            created = last["created_at"]
            created = created if isinstance(created, str) else created.isoformat()
            fingerprint = hashlib.sha256(
                json.dumps(
                    [[["created_at", False]], sorted({"project_id": project_id, "status": status}.items())],
                    separators=(",", ":"),
                ).encode()
            ).hexdigest()[:16]
            raw = json.dumps(
                [fingerprint, [datetime.datetime.fromisoformat(created).isoformat(), last["id"]]], separators=(",", ":")
            )
            next_cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return [shown(row) for row in rows], next_cursor


#: taskman's SQLite connection settings (``taskman.db.make_database``; the busy timeout is its default).
SQLITE_PRAGMAS = ("journal_mode = wal", "foreign_keys = 1", "busy_timeout = 5000", "synchronous = normal")


def sqlite_connection(path: str) -> Any:
    import sqlite3

    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


def selector(url: str) -> PerThread:
    if url.startswith("sqlite:"):
        path = sqlite_file(url)
        return PerThread(lambda: sqlite_connection(path), "?", "BEGIN IMMEDIATE")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        return PerThread(lambda: psycopg.connect(url, autocommit=True), "%s", None)
    raise ValueError(f"{DATABASE_ENV}={url!r}: neither sqlite: nor postgresql:")


class TaskByIdSync:
    def __init__(self, db: PerThread) -> None:
        self.db = db

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        row = self.db.fetch(task_id)
        if row is None:
            raise falcon.HTTPNotFound()
        resp.content_type = falcon.MEDIA_JSON
        resp.text = row_json(row)


class TaskByIdAsync:
    def __init__(self, db: PerThread) -> None:
        self.db = db

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, task_id: str) -> None:
        row = await asyncio.get_running_loop().run_in_executor(None, self.db.fetch, task_id)
        if row is None:
            raise falcon.HTTPNotFound()
        resp.content_type = falcon.MEDIA_JSON
        resp.text = row_json(row)


def _list_params(req: Any) -> tuple[str, str, int]:
    try:
        return req.params["project_id"], req.params["status"], int(req.params.get("limit", 50))
    except (KeyError, ValueError):
        raise falcon.HTTPBadRequest() from None


def _send_page(req: Any, resp: Any, items: list[dict[str, Any]], next_cursor: str | None) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"items": items, "next_cursor": next_cursor, "has_more": next_cursor is not None})
    if next_cursor:
        params = {k: v for k, v in req.params.items() if k != "cursor"}
        params["cursor"] = next_cursor
        resp.append_header("Link", f'<{req.path}?{urlencode(params)}>; rel="next"')


def _send_created(resp: Any, task: dict[str, Any]) -> None:
    resp.status = falcon.HTTP_201
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(task)
    resp.set_header("Location", f"{TASKS_PATH}/{task['id']}")


class TasksSync:
    def __init__(self, db: PerThread) -> None:
        self.db = db

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send_page(req, resp, *self.db.page(*_list_params(req)))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send_created(resp, self.db.create(json.loads(req.bounded_stream.read())))


class TasksAsync:
    def __init__(self, db: PerThread) -> None:
        self.db = db

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = _list_params(req)
        page = await asyncio.get_running_loop().run_in_executor(None, self.db.page, *params)
        _send_page(req, resp, *page)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = json.loads(await req.stream.read())
        task = await asyncio.get_running_loop().run_in_executor(None, self.db.create, body)
        _send_created(resp, task)


def app(asgi: bool) -> Any:
    """The factory (``BENCH_APP=bench.rawdb:app``); the database is ``APP_DATABASE__URL``."""
    db = selector(os.environ[DATABASE_ENV])
    application: Any = falcon.asgi.App() if asgi else falcon.App()
    application.add_route(PATH, TaskByIdAsync(db) if asgi else TaskByIdSync(db))
    application.add_route(TASKS_PATH, TasksAsync(db) if asgi else TasksSync(db))
    return application
