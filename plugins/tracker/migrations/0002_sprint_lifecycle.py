"""When a sprint started and closed: the burndown of a closed sprint ends on the day it closed.

Sprints closed before this migration get their last update as the closing
time (nothing else on record is closer); active ones keep an unknown start.
"""

from __future__ import annotations

from typing import Any

import peewee


def up(migrator: Any, db: Any) -> None:
    migrator.migrate(
        migrator.add_column("sprint", "started_at", peewee.DateTimeField(null=True)),
        migrator.add_column("sprint", "closed_at", peewee.DateTimeField(null=True)),
    )
    db.execute_sql("UPDATE sprint SET closed_at = updated_at WHERE status = 'closed'")


def down(migrator: Any, db: Any) -> None:
    migrator.migrate(
        migrator.drop_column("sprint", "closed_at"),
        migrator.drop_column("sprint", "started_at"),
    )
