"""Comments on tasks: one table, paged per task by (created_at, id).

A frozen copy of the model as it was when this migration was written.
"""

from __future__ import annotations

from typing import Any

import peewee

_database = peewee.DatabaseProxy()


class _Task(peewee.Model):  # type: ignore[misc]
    id = peewee.CharField(max_length=50, primary_key=True)

    class Meta:
        database = _database
        table_name = "task"


class Comment(peewee.Model):  # type: ignore[misc]
    id = peewee.CharField(max_length=50, primary_key=True)
    task = peewee.ForeignKeyField(_Task, column_name="task_id", on_delete="CASCADE")
    author = peewee.CharField(max_length=100, null=True)
    body = peewee.TextField()
    edited_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    version = peewee.IntegerField(default=1)

    class Meta:
        database = _database
        table_name = "comment"


def up(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.create_tables([Comment], safe=False)
    # A task's comments, a page at a time in (created_at, id) order: one index serves the walk.
    db.execute_sql('CREATE INDEX "comment_task_created" ON "comment" (task_id, created_at, id)')


def down(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.drop_tables([Comment], safe=False)
