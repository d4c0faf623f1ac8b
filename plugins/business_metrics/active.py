"""``active_tasks``: counted in the database at scrape time, so it is right after restarts and across workers.

Workers cannot keep a shared in-memory count that survives restarts; the
tasks table already is the truth.  The collector runs one ``COUNT`` in the
process serving the scrape.  No table yet (the tracker plugin is not
installed, or its migration has not run) reports 0; a database error
leaves the metric out of that scrape, and the rest of the scrape is served.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import peewee
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from taskman import release_connection

ACTIVE_TASKS = "active_tasks"
DOCUMENTATION = "Tasks whose status is not terminal, counted in the database at scrape time."

log = logging.getLogger("taskman.business_metrics")


class ActiveTasksCollector:
    """``SELECT COUNT(*) FROM <table> WHERE <column> IS NULL OR <column> NOT IN (<terminal>)``."""

    def __init__(self, database: Any, table: str, column: str, terminal: Sequence[str]) -> None:
        self.database = database
        schema, _, name = table.rpartition(".")
        self.table_name = name
        self.schema = schema or None
        self.column = column
        self.terminal = tuple(terminal)

    def _query(self) -> Any:
        table = peewee.Table(self.table_name, schema=self.schema)
        query = table.select(peewee.fn.COUNT(peewee.SQL("*")))
        if self.terminal:
            column = peewee.Column(table, self.column)
            query = query.where(column.is_null() | column.not_in(self.terminal))
        return query

    def count(self) -> int | None:
        """Active tasks now: 0 without a table, ``None`` if the database fails."""
        db = self.database
        if getattr(db, "obj", db) is None:  # an uninitialised proxy
            return None
        was_closed = db.is_closed()
        try:
            try:
                return int(self._query().bind(db).scalar() or 0)
            except peewee.DatabaseError as exc:
                try:
                    if not db.table_exists(self.table_name, schema=self.schema):
                        return 0
                except peewee.DatabaseError:
                    pass
                log.warning("active_tasks_query_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                return None
        finally:
            if was_closed:  # leave a connection the caller had open alone
                release_connection(db)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(ACTIVE_TASKS, DOCUMENTATION)]

    def collect(self) -> Iterable[Metric]:
        count = self.count()
        if count is None:
            return []
        return [GaugeMetricFamily(ACTIVE_TASKS, DOCUMENTATION, value=count)]
