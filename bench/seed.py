"""Seed data for the database cases: ``tasks(database_url)`` (a case's ``setup``).

Migrates the database (the tracker's tables and those of every other enabled
migration-owning plugin) and inserts two projects and :data:`TASKS` tasks
in one transaction, with ``executemany`` as :mod:`bench.pagination` does.
It is idempotent per database: when the last task of the seed is there it
does nothing, so several cases (and several runs) may name it.

The data, chosen so every request of the cases has something to find:

- ``P-1`` holds the seeded tasks ``T-1`` ... ``T-10000``, spread over the
  seven statuses (so ``?project_id=P-1&status=ready&limit=50`` is a full
  page out of about 1,430 ready tasks), one in three labelled (``backend``
  or ``frontend``, also in ``task_label``), one in four assigned (``alice``
  or ``bob``, also in ``task_assignee``), one in five with an estimate;
- ``P-2`` is empty: the POST case creates its tasks there, so the list of
  ``P-1`` and the row read by the GET case stay what they were.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

TASKS = 10_000
PROJECT = "P-1"
POST_PROJECT = "P-2"
#: The task the GET case reads: in the middle of the table, not the first row written.
GET_TASK = f"T-{TASKS // 2}"
STATUSES = ("new", "ready", "in_progress", "blocked", "review", "done", "dropped")
PRIORITIES = ("p0", "p1", "p2", "p3")
LABELS = ("backend", "frontend")
ASSIGNEES = ("alice", "bob")
START = datetime.datetime(2026, 1, 1)
BATCH = 5_000

TASK_COLUMNS = (
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
PROJECT_COLUMNS = ("id", "name", "mission", "owner", "status", "tags", "created_at", "updated_at", "version")


def task_labels(n: int) -> list[str]:
    return [LABELS[(n // 3) % 2]] if n % 3 == 0 else []


def task_assignees(n: int) -> list[str]:
    return [ASSIGNEES[(n // 4) % 2]] if n % 4 == 0 else []


def task_row(n: int) -> tuple[Any, ...]:
    """Task ``T-n`` of the seed, in :data:`TASK_COLUMNS` order (JSON lists as text, as the tracker stores them)."""
    status = STATUSES[n % len(STATUSES)]
    at = START + datetime.timedelta(seconds=n)
    labels, assignees = task_labels(n), task_assignees(n)
    return (
        f"T-{n}",
        f"Task {n}",
        f"Summary of task {n}",
        None,
        "alice" if n % 2 else None,
        "[" + ",".join(f'"{a}"' for a in assignees) + "]",
        "[" + ",".join(f'"{label}"' for label in labels) + "]",
        PRIORITIES[n % len(PRIORITIES)],
        None,
        status,
        float(n % 8) if n % 5 == 0 else None,
        None,
        PROJECT,
        None,
        "[]",
        at if status == "done" else None,
        at,
        at,
        1,
    )


def task_rows(count: int = TASKS) -> Iterator[tuple[Any, ...]]:
    return (task_row(n) for n in range(1, count + 1))


def label_rows(count: int = TASKS) -> Iterator[tuple[str, str]]:
    return ((f"T-{n}", label) for n in range(1, count + 1) for label in task_labels(n))


def assignee_rows(count: int = TASKS) -> Iterator[tuple[str, str]]:
    return ((f"T-{n}", who) for n in range(1, count + 1) for who in task_assignees(n))


def insert_sql(table: str, columns: tuple[str, ...], param: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([param] * len(columns))})"


def _batches(rows: Iterator[tuple[Any, ...]], size: int = BATCH) -> Iterator[list[tuple[Any, ...]]]:
    while batch := [row for _, row in zip(range(size), rows, strict=False)]:
        yield batch


def _app(url: str) -> Any:
    """A taskman app on ``url`` without the plugins that would set up logging, metrics or tracing here."""
    import taskman
    from taskman.config import load_config

    config = load_config(
        environ={},
        overrides={
            "environment": "production",
            "database": {"url": url},
            "logging": {"level": "warning"},
            "plugins": {"disable": ["logging", "metrics", "tracing", "business_metrics"]},
        },
    )
    return taskman.create_app(config)


def seeded(db: Any) -> bool:
    row = db.execute_sql(f"SELECT COUNT(*) FROM task WHERE id = {db.param}", (f"T-{TASKS}",)).fetchone()
    return bool(row and row[0])


def tasks(database_url: str) -> bool:
    """Migrate ``database_url`` and seed it unless it already is; True when rows were written."""
    import taskman.db

    app = _app(database_url)
    runtime = app.taskman
    db = runtime.database
    try:
        runtime.migrations().apply()
        if seeded(db):
            return False
        now = START
        with db.atomic():
            cursor = db.cursor()
            cursor.executemany(
                insert_sql("project", PROJECT_COLUMNS, db.param),
                [
                    (project, f"Project {project}", "bench", "alice", "active", "[]", now, now, 1)
                    for project in (PROJECT, POST_PROJECT)
                ],
            )
            for batch in _batches(task_rows()):
                cursor.executemany(insert_sql("task", TASK_COLUMNS, db.param), batch)
            cursor.executemany(insert_sql("task_label", ("task_id", "label"), db.param), list(label_rows()))
            cursor.executemany(insert_sql("task_assignee", ("task_id", "assignee"), db.param), list(assignee_rows()))
        db.execute_sql("ANALYZE")
        return True
    finally:
        taskman.db.release_connection(db)
        db.close_all()
