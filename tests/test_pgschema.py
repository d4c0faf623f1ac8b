"""The PostgreSQL run's schema reuse (tests/pgschema.py): rows go, sequences restart, a changed shape is dropped."""

from __future__ import annotations

import pytest

from tests.conftest import POSTGRES_URL, migrate_default_plugins
from tests.pgschema import ReusableSchema

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="the schema reuse of the PostgreSQL run")


def tables(schema: ReusableSchema) -> set[str]:
    return {str(row[0]) for row in schema.admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def record_an_event(schema: ReusableSchema) -> int:
    (event_id,) = schema.admin.execute(
        "INSERT INTO event_outbox (type, occurred_at, payload, dispatched, lease_until) "
        "VALUES ('t', now(), '{}', false, now()) RETURNING id"
    ).fetchone() or (None,)
    return int(event_id)  # type: ignore[arg-type]


def test_rows_go_sequences_restart_and_a_changed_shape_is_dropped(postgres_schema: ReusableSchema) -> None:
    schema = postgres_schema
    try:
        schema.prepare(empty=True)
        assert tables(schema) == set()
        migrate_default_plugins(schema.url)
        schema.settle()  # the baseline's shape: kept for the next test
        assert record_an_event(schema) == 1 and record_an_event(schema) == 2

        schema.prepare(empty=False)
        assert {"task", "event_outbox", "taskman_migrations"} <= tables(schema)
        assert schema.admin.execute("SELECT count(*) FROM event_outbox").fetchone() == (0,)
        assert schema.admin.execute("SELECT count(*) FROM taskman_migrations").fetchone() != (0,)  # history kept
        assert record_an_event(schema) == 1  # the sequence restarted

        schema.admin.execute("ALTER TABLE project ADD COLUMN colour text")
        schema.settle()
        schema.prepare(empty=False)
        assert tables(schema) == set()  # a shape the baseline does not have is not reused
    finally:
        schema.settle()
