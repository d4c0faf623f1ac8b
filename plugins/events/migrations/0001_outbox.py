"""The outbox (every domain event, in the transaction of its change) and the positions of durable consumers.

Written as SQL per dialect: the id must never be reused, so SQLite needs
``AUTOINCREMENT`` (a plain rowid restarts after the newest rows are
deleted, and a feed reader would then miss every new event).
"""

from __future__ import annotations

from typing import Any

import peewee

_COLUMNS = """
    type VARCHAR(100) NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    principal VARCHAR(200),
    request_id VARCHAR(128),
    project_id VARCHAR(100),
    subject_kind VARCHAR(50),
    subject_id VARCHAR(100),
    payload TEXT NOT NULL,
    dispatched BOOLEAN NOT NULL DEFAULT FALSE,
    lease_until TIMESTAMP
"""

_INDEXES = (
    # The feed filtered by project, and a record's activity, each walked in id order.
    'CREATE INDEX "event_outbox_project" ON "event_outbox" (project_id, id)',
    'CREATE INDEX "event_outbox_subject" ON "event_outbox" (subject_kind, subject_id, id)',
    'CREATE INDEX "event_outbox_occurred" ON "event_outbox" (occurred_at)',
    # What the listeners have not heard of yet: few rows, looked at every round.
    'CREATE INDEX "event_outbox_undispatched" ON "event_outbox" (lease_until) WHERE NOT dispatched',
)


def up(migrator: Any, db: Any) -> None:
    if isinstance(db, peewee.PostgresqlDatabase):
        key = "id BIGSERIAL PRIMARY KEY"
    else:
        key = "id INTEGER PRIMARY KEY AUTOINCREMENT"
    db.execute_sql(f'CREATE TABLE "event_outbox" ({key}, {_COLUMNS})')
    for statement in _INDEXES:
        db.execute_sql(statement)
    db.execute_sql(
        'CREATE TABLE "event_consumer" (name VARCHAR(100) PRIMARY KEY, position BIGINT NOT NULL, '
        "updated_at TIMESTAMP NOT NULL)"
    )


def down(migrator: Any, db: Any) -> None:
    db.execute_sql('DROP TABLE "event_consumer"')
    db.execute_sql('DROP TABLE "event_outbox"')
