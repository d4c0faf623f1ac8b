"""Subscriptions, their deliveries (one per event, in event order) and the log of every attempt.

SQL per dialect: ids are never reused (SQLite needs ``AUTOINCREMENT`` for
that), and deleting a subscription deletes its deliveries and attempts.
"""

from __future__ import annotations

from typing import Any

import peewee


def up(migrator: Any, db: Any) -> None:
    key = "BIGSERIAL PRIMARY KEY" if isinstance(db, peewee.PostgresqlDatabase) else "INTEGER PRIMARY KEY AUTOINCREMENT"
    db.execute_sql(
        """CREATE TABLE "webhook_subscription" (
            id VARCHAR(40) PRIMARY KEY,
            url VARCHAR(2000) NOT NULL,
            event_types TEXT NOT NULL,
            description VARCHAR(500) NOT NULL,
            secret VARCHAR(100) NOT NULL,
            enabled BOOLEAN NOT NULL,
            disabled_reason VARCHAR(500),
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMP,
            lease_owner VARCHAR(100),
            lease_until TIMESTAMP,
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )"""
    )
    # What a delivery worker looks for: enabled subscriptions whose head delivery is due.
    db.execute_sql('CREATE INDEX "webhook_subscription_due" ON "webhook_subscription" (next_attempt_at) WHERE enabled')
    db.execute_sql(
        f"""CREATE TABLE "webhook_delivery" (
            id {key},
            subscription_id VARCHAR(40) NOT NULL REFERENCES "webhook_subscription" (id) ON DELETE CASCADE,
            event_id BIGINT,
            event_type VARCHAR(100) NOT NULL,
            occurred_at TIMESTAMP NOT NULL,
            message_id VARCHAR(64) NOT NULL,
            body TEXT NOT NULL,
            status VARCHAR(20) NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL,
            last_attempt_at TIMESTAMP,
            delivered_at TIMESTAMP,
            last_status_code INTEGER,
            last_outcome VARCHAR(30),
            last_error VARCHAR(500),
            last_duration_ms INTEGER
        )"""
    )
    db.execute_sql('CREATE INDEX "webhook_delivery_queue" ON "webhook_delivery" (subscription_id, status, id)')
    db.execute_sql('CREATE INDEX "webhook_delivery_log" ON "webhook_delivery" (subscription_id, id)')
    db.execute_sql(
        'CREATE INDEX "webhook_delivery_pending" ON "webhook_delivery" (occurred_at) WHERE status = \'pending\''
    )
    db.execute_sql(
        f"""CREATE TABLE "webhook_attempt" (
            id {key},
            delivery_id BIGINT NOT NULL REFERENCES "webhook_delivery" (id) ON DELETE CASCADE,
            subscription_id VARCHAR(40) NOT NULL REFERENCES "webhook_subscription" (id) ON DELETE CASCADE,
            event_id BIGINT,
            attempt INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            duration_ms INTEGER NOT NULL,
            status_code INTEGER,
            outcome VARCHAR(30) NOT NULL,
            error VARCHAR(500)
        )"""
    )
    db.execute_sql('CREATE INDEX "webhook_attempt_log" ON "webhook_attempt" (subscription_id, id)')
    db.execute_sql('CREATE INDEX "webhook_attempt_delivery" ON "webhook_attempt" (delivery_id)')


def down(migrator: Any, db: Any) -> None:
    for table in ("webhook_attempt", "webhook_delivery", "webhook_subscription"):
        db.execute_sql(f'DROP TABLE "{table}"')
