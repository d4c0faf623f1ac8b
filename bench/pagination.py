"""Does a filtered task list stay fast at a million tasks?  ``python -m bench.pagination``

Loads the tracker's tables with 1,000 and then 1,000,000 tasks and times
``GET /api/v1/tasks?project_id=P-1&status=ready`` (50 a page) through the
app in-process: page 1 and page 10,000 (its cursor taken from row 499,950)
at a million, against page 1 at a thousand.  The target is under 2x: the
index on (project_id, status, created_at, id) and keyset cursors make the
page's position and the table's size nearly free.  The EXPLAIN plans of
these queries are checked by tests/tracker/test_explain.py.

    python -m bench.pagination                      # SQLite, in a temporary folder
    python -m bench.pagination --postgres URL       # also PostgreSQL (a scratch database is created and dropped)
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import falcon.testing

import taskman
from bench.machine import describe
from taskman.config import DatabaseSettings, load_config
from taskman.db import make_database

LIMIT = 50
PAGE = 10_000
STATUSES = ("new", "ready", "in_progress", "blocked", "review", "done", "dropped")
QUERY = {"project_id": "P-1", "status": "ready", "limit": str(LIMIT)}
BATCH = 20_000


def task_rows(count: int, start: datetime.datetime) -> Iterator[tuple[Any, ...]]:
    """Six in ten tasks are P-1's and ready (so page 10,000 exists); the rest spread over 20 projects and 7 statuses."""
    for n in range(count):
        if n % 10 < 6:
            project, status = "P-1", "ready"
        else:
            project, status = f"P-{2 + n % 19}", STATUSES[n % 7]
        at = start + datetime.timedelta(microseconds=n * 37)
        yield (f"T-{n}", f"Task {n}", "[]", "[]", "p2", status, project, "[]", at, at, 1)


COLUMNS = "id, title, assignees, labels, priority, status, project_id, depends_on, created_at, updated_at, version"


def load(app: Any, count: int) -> None:
    db = app.taskman.database
    start = datetime.datetime(2026, 1, 1)
    with db.atomic():
        db.execute_sql("DELETE FROM task")
        db.execute_sql("DELETE FROM project")
        now = datetime.datetime(2026, 1, 1)
        for p in range(1, 21):
            db.execute_sql(
                "INSERT INTO project (id, name, mission, owner, status, tags, created_at, updated_at, version)"
                " VALUES (%s, 'p', 'm', 'o', 'active', '[]', %s, %s, 1)".replace("%s", db.param),
                (f"P-{p}", now, now),
            )
    rows = task_rows(count, start)
    placeholders = ", ".join([db.param] * 11)
    sql = f"INSERT INTO task ({COLUMNS}) VALUES ({placeholders})"
    while True:
        batch = [row for _, row in zip(range(BATCH), rows, strict=False)]
        if not batch:
            break
        with db.atomic():
            cursor = db.cursor()
            cursor.executemany(sql, batch)
    db.execute_sql("ANALYZE")
    taskman.db.release_connection(db)


def cursor_for_page(app: Any, page: int) -> str | None:
    """The cursor a client walking the list would hold before ``page`` (row ``(page - 1) * LIMIT - 1``)."""
    db = app.taskman.database
    row = db.execute_sql(
        f"SELECT created_at, id FROM task WHERE project_id = {db.param} AND status = {db.param}"
        f" ORDER BY created_at, id LIMIT 1 OFFSET {(page - 1) * LIMIT - 1}",
        ("P-1", "ready"),
    ).fetchone()
    taskman.db.release_connection(db)
    if row is None:
        return None
    created_at = row[0] if isinstance(row[0], datetime.datetime) else datetime.datetime.fromisoformat(row[0])
    # The plugin installs as taskman_plugins (mapped from plugins/), which type checkers do not follow.
    listing: Any = importlib.import_module("taskman_plugins.tracker.listing")
    sort = [("created_at", False)]
    filters = {"project_id": "P-1", "status": "ready"}
    fingerprint = listing._fingerprint(sort, filters)
    return str(listing.encode_cursor([created_at, row[1]], fingerprint))


def time_page(client: falcon.testing.TestClient, cursor: str | None, repeats: int) -> float:
    params = dict(QUERY, **({"cursor": cursor} if cursor else {}))
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = client.simulate_get("/api/v1/tasks", params=params)
        samples.append(time.perf_counter() - started)
        assert result.status_code == 200 and len(result.json["items"]) == LIMIT, result.text[:300]
    return statistics.median(samples)


def measure(url: str, repeats: int, sizes: tuple[int, int]) -> dict[str, Any]:
    config = load_config(
        environ={},
        overrides={
            "environment": "testing",
            "database": {"url": url},
            "logging": {"level": "warning"},
            "plugins": {"disable": ["logging", "metrics", "tracing", "business_metrics"]},
        },
    )
    app = taskman.create_app(config)
    taskman.start(app)
    client = falcon.testing.TestClient(app)
    small, large = sizes
    try:
        load(app, small)
        base = time_page(client, None, repeats)
        loaded = time.perf_counter()
        load(app, large)
        load_seconds = time.perf_counter() - loaded
        first = time_page(client, None, repeats)
        deep = time_page(client, cursor_for_page(app, PAGE), repeats)
    finally:
        taskman.stop(app)
    return {
        "tasks": {"small": small, "large": large, "load_seconds": round(load_seconds, 1)},
        "page_1_small_ms": round(base * 1000, 3),
        "page_1_large_ms": round(first * 1000, 3),
        f"page_{PAGE}_large_ms": round(deep * 1000, 3),
        "ratio_page_1": round(first / base, 2),
        f"ratio_page_{PAGE}": round(deep / base, 2),
        "target": "each ratio under 2",
    }


def database_for(url: str) -> Any:
    return make_database(DatabaseSettings(url=url))


def scratch_postgres(url: str) -> tuple[str, Any]:
    parts = urlsplit(url)
    name = f"taskman_bench_{int(time.time())}"
    admin = database_for(url)
    admin.execute_sql(f'CREATE DATABASE "{name}"')
    admin.close_all()

    def drop() -> None:
        again = database_for(url)
        again.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        again.close_all()

    return urlunsplit(parts._replace(path=f"/{name}")), drop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres", metavar="URL", help="also measure on PostgreSQL (a server you can create databases on)"
    )
    parser.add_argument("--large", type=int, default=1_000_000, help="tasks in the large table (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=30, help="requests per measurement (the median is kept)")
    args = parser.parse_args(argv)
    if args.large < PAGE * LIMIT / 0.6:
        parser.error(f"--large must leave page {PAGE} a full page: at least {int(PAGE * LIMIT / 0.6) + LIMIT}")
    results: dict[str, Any] = {"machine": describe(Path(__file__).resolve().parent.parent)}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(f"sqlite:///{Path(folder) / 'bench.db'}", args.repeats, (1_000, args.large))
        print("sqlite", json.dumps(results["sqlite"]), flush=True)
    if args.postgres:
        url, drop = scratch_postgres(args.postgres)
        try:
            results["postgresql"] = measure(url, args.repeats, (1_000, args.large))
            print("postgresql", json.dumps(results["postgresql"]), flush=True)
        finally:
            drop()
    out = Path(__file__).parent / "results" / f"pagination-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
