"""The task list's query plans: ``GET /tasks?project_id=...&status=...`` walks an index, with no sort step.

The SQL explained is exactly what :func:`listing.list_page` runs: the test
records the statements it sends to the database, then asks the database
for their plan (SQLite ``EXPLAIN QUERY PLAN``; PostgreSQL ``EXPLAIN`` with
sequential scans priced out, on a table with statistics).  Page 1 must be
an index range in ``(created_at, id)`` order; a cursor page must keep the
keyset condition ``(created_at, id) > (?, ?)`` inside that range.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import peewee
import pytest
from taskman_plugins import tracker
from taskman_plugins.tracker.listing import Page, list_page
from taskman_plugins.tracker.models import Project, Task
from taskman_plugins.tracker.tasks import Tasks

from taskman import db as taskman_db
from taskman.migrations import Migrations
from tests.conftest import database_for

#: Plans are compared on tables that only these rows ever touched (no dead rows of earlier tests).
pytestmark = pytest.mark.empty_database

INDEX = "task_project_status_created"
STATUSES = ("new", "ready", "in_progress", "blocked", "review", "done", "dropped")
PROJECTS = 5
TASKS = 3000


@pytest.fixture
def db(database_url: str) -> Iterator[peewee.Database]:
    """The tracker's tables with a few thousand tasks over several projects and every status, analysed."""
    database = database_for(database_url)
    Migrations(database, [("tracker", Path(tracker.__file__).parent / "migrations")]).apply()
    previous = taskman_db.database.obj
    taskman_db.database.initialize(database)
    start = datetime.datetime(2026, 1, 5, 9, 0)
    with database.atomic():
        Project.insert_many(
            [
                {"id": f"P-{p}", "name": "p", "mission": "m", "owner": "ann", "status": "active", "tags": []}
                | {"created_at": start, "updated_at": start}
                for p in range(PROJECTS)
            ]
        ).execute()
        rows = [
            {
                "id": f"T-{n:05d}",
                "title": f"task {n}",
                "assignees": [],
                "labels": [],
                "depends_on": [],
                "priority": "p2",
                "status": STATUSES[n % len(STATUSES)],
                "project": f"P-{n % PROJECTS}",
                "created_at": start + datetime.timedelta(seconds=n // 4),  # ties: the id breaks them
                "updated_at": start,
                "version": 1,
            }
            for n in range(TASKS)
        ]
        for offset in range(0, TASKS, 500):
            Task.insert_many(rows[offset : offset + 500]).execute()
    database.execute_sql("ANALYZE")
    database.close()
    yield database
    taskman_db.database.initialize(previous)
    database.close_all()


def recorded(
    database: peewee.Database, monkeypatch: pytest.MonkeyPatch, params: Mapping[str, str]
) -> tuple[Page, str, Any]:
    """Run the task list for ``params``; return its page and the one statement it sent."""
    sent: list[tuple[str, Any]] = []
    execute_sql = database.execute_sql

    def recording(sql: str, sql_params: Any = None, *args: Any, **kwargs: Any) -> Any:
        sent.append((sql, sql_params))
        return execute_sql(sql, sql_params, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(database, "execute_sql", recording)
        page = list_page(Tasks.listing, params)
    assert len(sent) == 1, sent
    sql, sql_params = sent[0]
    return page, sql, sql_params


def is_postgres(database: peewee.Database) -> bool:
    return isinstance(database, peewee.PostgresqlDatabase)


def sqlite_plan(database: peewee.Database, sql: str, params: Any) -> list[str]:
    try:
        return [row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
    finally:
        database.close()


def postgres_plan(database: peewee.Database, sql: str, params: Any) -> tuple[dict[str, Any], str]:
    """The plan tree (JSON) and its text form, with sequential scans priced out as far as they go."""
    try:
        with database.atomic():
            database.execute_sql("SET LOCAL enable_seqscan = off")
            raw = database.execute_sql("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0]
            text = "\n".join(row[0] for row in database.execute_sql("EXPLAIN " + sql, params).fetchall())
    finally:
        database.close()
    tree = json.loads(raw) if isinstance(raw, str) else raw
    return tree[0]["Plan"], text


def nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def assert_index_walk(
    database: peewee.Database,
    sql: str,
    params: Any,
    *,
    index: str,
    sqlite_bound: str,
    postgres_cond: tuple[str, ...],
    backward: bool = False,
) -> None:
    """The statement reads ``index`` as a range bounded by ``sqlite_bound`` / ``postgres_cond`` and sorts nothing."""
    if not is_postgres(database):
        details = sqlite_plan(database, sql, params)
        assert any(
            d
            in (
                f"SEARCH t1 USING INDEX {index} ({sqlite_bound})",
                f"SEARCH t1 USING COVERING INDEX {index} ({sqlite_bound})",
            )
            for d in details
        ), details
        assert not any("TEMP B-TREE" in d for d in details), details
        assert not any(d.startswith("SCAN") for d in details), details
        return
    plan, text = postgres_plan(database, sql, params)
    scans = [n for n in nodes(plan) if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert [n.get("Index Name") for n in scans] == [index], text
    assert scans[0]["Scan Direction"] == ("Backward" if backward else "Forward"), text
    for fragment in postgres_cond:
        assert fragment in scans[0]["Index Cond"], text
    assert not any(n["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan") for n in nodes(plan)), text
    assert "ROW(" not in scans[0].get("Filter", ""), text  # the keyset condition bounds the range, not a filter


def test_the_project_and_status_list_walks_its_index_on_page_one_and_on_a_cursor_page(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"project_id": "P-1", "status": "ready", "limit": "20"}
    first, sql, sql_params = recorded(db, monkeypatch, params)
    assert 'ORDER BY "t1"."created_at" ASC, "t1"."id" ASC' in sql
    assert first.next_cursor is not None and len(first.rows) == 20
    assert_index_walk(
        db,
        sql,
        sql_params,
        index=INDEX,
        sqlite_bound="project_id=? AND status=?",
        postgres_cond=("(project_id)::text = 'P-1'::text", "(status)::text = 'ready'::text"),
    )

    second, sql, sql_params = recorded(db, monkeypatch, {**params, "cursor": first.next_cursor})
    assert '("t1"."created_at", "t1"."id") > (' in sql
    assert second.rows[0].id > first.rows[-1].id  # it really is the next page
    assert_index_walk(
        db,
        sql,
        sql_params,
        index=INDEX,
        sqlite_bound="project_id=? AND status=? AND (created_at,id)>(?,?)",
        postgres_cond=("(status)::text = 'ready'::text", "ROW(created_at, (id)::text) > ROW("),
    )


def test_the_descending_list_walks_the_same_index_backwards(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"project_id": "P-1", "status": "ready", "limit": "20", "sort": "-created_at"}
    first, sql, sql_params = recorded(db, monkeypatch, params)
    assert_index_walk(
        db,
        sql,
        sql_params,
        index=INDEX,
        sqlite_bound="project_id=? AND status=?",
        postgres_cond=("(status)::text = 'ready'::text",),
        backward=True,
    )
    _, sql, sql_params = recorded(db, monkeypatch, {**params, "cursor": first.next_cursor or ""})
    assert_index_walk(
        db,
        sql,
        sql_params,
        index=INDEX,
        sqlite_bound="project_id=? AND status=? AND (created_at,id)<(?,?)",
        postgres_cond=("(status)::text = 'ready'::text", "ROW(created_at, (id)::text) < ROW("),
        backward=True,
    )


def test_several_statuses_walk_the_project_index_in_order_and_filter_the_status(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status=new,ready`` is no single range of the status index in created_at order: the project index serves it."""
    params = {"project_id": "P-1", "status": "new,ready", "limit": "20"}
    first, sql, sql_params = recorded(db, monkeypatch, params)
    assert_index_walk(
        db,
        sql,
        sql_params,
        index="task_project_created",
        sqlite_bound="project_id=?",
        postgres_cond=("(project_id)::text = 'P-1'::text",),
    )
    _, sql, sql_params = recorded(db, monkeypatch, {**params, "cursor": first.next_cursor or ""})
    assert_index_walk(
        db,
        sql,
        sql_params,
        index="task_project_created",
        sqlite_bound="project_id=? AND (created_at,id)>(?,?)",
        postgres_cond=("(project_id)::text = 'P-1'::text", "ROW(created_at, (id)::text) > ROW("),
    )
