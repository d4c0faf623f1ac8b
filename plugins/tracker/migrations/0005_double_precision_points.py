"""Points in double precision on PostgreSQL, where peewee's FLOAT was a 4-byte REAL (1234.5678 read 1234.5677).

SQLite's REAL is already a double: nothing changes there.  Values stored
before keep what REAL kept of them.
"""

from __future__ import annotations

from typing import Any

import peewee

_COLUMNS = (
    ("sprint", "velocity_target_points"),
    ("sprint", "committed_points"),
    ("sprint", "completed_points"),
    ("task", "estimate_points"),
)


def _retype(db: Any, sql_type: str) -> None:
    if not isinstance(getattr(db, "obj", db), peewee.PostgresqlDatabase):
        return
    for table, column in _COLUMNS:
        db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {sql_type}')


def up(migrator: Any, db: Any) -> None:
    _retype(db, "DOUBLE PRECISION")


def down(migrator: Any, db: Any) -> None:
    _retype(db, "REAL")
