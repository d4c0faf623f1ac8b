"""Action list items get stable ids and may link a task (``action_item_link`` finds the lists that link one).

Items written before this migration get an id each and no task.  A frozen
copy of the link model as it was when this migration was written.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import peewee

_database = peewee.DatabaseProxy()


class _ActionList(peewee.Model):  # type: ignore[misc]
    id = peewee.CharField(max_length=50, primary_key=True)

    class Meta:
        database = _database
        table_name = "action_list"


class _Task(peewee.Model):  # type: ignore[misc]
    id = peewee.CharField(max_length=50, primary_key=True)

    class Meta:
        database = _database
        table_name = "task"


class ActionItemLink(peewee.Model):  # type: ignore[misc]
    action_list = peewee.ForeignKeyField(_ActionList, column_name="action_list_id", on_delete="CASCADE")
    item_id = peewee.CharField(max_length=50)
    task = peewee.ForeignKeyField(_Task, column_name="task_id")

    class Meta:
        database = _database
        table_name = "action_item_link"
        primary_key = peewee.CompositeKey("action_list", "item_id")


def _with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": "I-" + secrets.token_urlsafe(9), "text": item["text"], "done": item["done"], "task_id": None}
        for item in items
    ]


def up(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.create_tables([ActionItemLink], safe=False)
    db.execute_sql('CREATE INDEX "action_item_link_task" ON "action_item_link" (task_id)')
    rows = db.execute_sql("SELECT id, items FROM action_list").fetchall()
    for list_id, items in rows:
        stored = json.dumps(_with_ids(json.loads(items)), ensure_ascii=False, separators=(",", ":"))
        db.execute_sql(f"UPDATE action_list SET items = {db.param} WHERE id = {db.param}", (stored, list_id))


def down(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    rows = db.execute_sql("SELECT id, items FROM action_list").fetchall()
    for list_id, items in rows:
        # Back to text items: a linked item without text keeps the task's id as its text.
        old = [{"text": i["text"] or i["task_id"], "done": i["done"]} for i in json.loads(items)]
        stored = json.dumps(old, ensure_ascii=False, separators=(",", ":"))
        db.execute_sql(f"UPDATE action_list SET items = {db.param} WHERE id = {db.param}", (stored, list_id))
    db.drop_tables([ActionItemLink], safe=False)
