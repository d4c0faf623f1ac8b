"""Case 6, the floor for database endpoints: bare Falcon, one primary-key select with the raw driver.

``GET /api/v1/tasks/{task_id}`` runs ``SELECT * FROM task WHERE id = ?`` with
:mod:`sqlite3` or :mod:`psycopg` (the database is ``APP_DATABASE__URL``, as
for taskman) on one connection per thread, opened on first use and kept,
and answers the row as a JSON object (column -> value, date-times in ISO
8601), 404 when there is none.  No ORM, no validation, no plugins: what a
Falcon user would write by hand.

Under WSGI the responder is sync (taskman's threaded gunicorn worker, as ``taskman serve``).  Under ASGI the
responder is a coroutine that runs the same sync function on the loop's
default thread pool (``loop.run_in_executor(None, ...)``, the hop taskman
itself makes for sync responders, minus its contextvars copy): a blocking
driver call on the event loop is not what a real app does.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import falcon
import falcon.asgi

DATABASE_ENV = "APP_DATABASE__URL"
PATH = "/api/v1/tasks/{task_id}"
SQL = "SELECT * FROM task WHERE id = {param}"

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


class PerThread:
    """One driver connection per thread, opened on first use and reused; ``fetch`` is the select."""

    def __init__(self, connect: Callable[[], Any], param: str) -> None:
        self._connect = connect
        self._local = threading.local()
        self.sql = SQL.format(param=param)

    def fetch(self, task_id: str) -> Row:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        cursor = conn.execute(self.sql, (task_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))


def selector(url: str) -> PerThread:
    if url.startswith("sqlite:"):
        import sqlite3

        path = sqlite_file(url)
        return PerThread(lambda: sqlite3.connect(path, check_same_thread=False, isolation_level=None), "?")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        return PerThread(lambda: psycopg.connect(url, autocommit=True), "%s")
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


def app(asgi: bool) -> Any:
    """The factory (``BENCH_APP=bench.rawdb:app``); the database is ``APP_DATABASE__URL``."""
    db = selector(os.environ[DATABASE_ENV])
    application: Any = falcon.asgi.App() if asgi else falcon.App()
    application.add_route(PATH, TaskByIdAsync(db) if asgi else TaskByIdSync(db))
    return application
