"""peewee models of the tracker, bound to the core's database proxy.

The tables are created by ``migrations/0001_initial.py`` (a frozen copy of
these definitions, so later changes to this module never rewrite history).
Lists (tags, labels, assignees, dependencies, items) are stored as JSON
text for reading; labels, assignees and dependencies are also kept in
small indexed tables so lists can filter on them exactly, and so are the
tasks action list items link (so that a task knows the lists that link it).
"""

from __future__ import annotations

import json
from typing import Any

import peewee

from taskman import database


class JSONList(peewee.TextField):  # type: ignore[misc]
    """A JSON array in a text column (portable between SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class Record(peewee.Model):  # type: ignore[misc]
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    version = peewee.IntegerField(default=1)

    class Meta:
        database = database
        legacy_table_names = False


class Project(Record):
    id = peewee.CharField(max_length=50, primary_key=True)
    name = peewee.CharField(max_length=200)
    mission = peewee.TextField()
    owner = peewee.CharField(max_length=100)
    status = peewee.CharField(max_length=20)
    start_date = peewee.DateField(null=True)
    target_end_date = peewee.DateField(null=True)
    tags = JSONList()


class Sprint(Record):
    id = peewee.CharField(max_length=50, primary_key=True)
    project = peewee.ForeignKeyField(Project, column_name="project_id", backref="sprints")
    project_id: str  # peewee's accessor for the raw key, declared for the type checker
    name = peewee.CharField(max_length=200)
    goal = peewee.TextField(null=True)
    cadence = peewee.CharField(max_length=20)
    start_date = peewee.DateField()
    end_date = peewee.DateField()
    owner = peewee.CharField(max_length=100, null=True)
    status = peewee.CharField(max_length=20)
    # Double precision on PostgreSQL too (its FLOAT is a 4-byte REAL): points come back as they were written.
    velocity_target_points = peewee.DoubleField(null=True)
    committed_points = peewee.DoubleField(null=True)
    completed_points = peewee.DoubleField(null=True)
    started_at = peewee.DateTimeField(null=True)
    closed_at = peewee.DateTimeField(null=True)


class Task(Record):
    id = peewee.CharField(max_length=50, primary_key=True)
    title = peewee.CharField(max_length=500)
    summary = peewee.TextField(null=True)
    description = peewee.TextField(null=True)
    owner = peewee.CharField(max_length=100, null=True)
    assignees = JSONList()
    labels = JSONList()
    priority = peewee.CharField(max_length=2)
    severity = peewee.CharField(max_length=4, null=True)
    status = peewee.CharField(max_length=20)
    estimate_points = peewee.DoubleField(null=True)
    due_at = peewee.DateTimeField(null=True)
    project = peewee.ForeignKeyField(Project, column_name="project_id", backref="tasks")
    sprint = peewee.ForeignKeyField(Sprint, column_name="sprint_id", null=True, backref="tasks")
    project_id: str
    sprint_id: str | None
    depends_on = JSONList()
    completed_at = peewee.DateTimeField(null=True)


class TaskLabel(peewee.Model):  # type: ignore[misc]
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    label = peewee.CharField(max_length=50)

    class Meta:
        database = database
        table_name = "task_label"
        primary_key = peewee.CompositeKey("task", "label")


class TaskAssignee(peewee.Model):  # type: ignore[misc]
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    assignee = peewee.CharField(max_length=100)

    class Meta:
        database = database
        table_name = "task_assignee"
        primary_key = peewee.CompositeKey("task", "assignee")


class TaskDependency(peewee.Model):  # type: ignore[misc]
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    depends_on = peewee.ForeignKeyField(Task, column_name="depends_on_id")
    task_id: str
    depends_on_id: str

    class Meta:
        database = database
        table_name = "task_dependency"
        primary_key = peewee.CompositeKey("task", "depends_on")


class ActionList(Record):
    id = peewee.CharField(max_length=50, primary_key=True)
    title = peewee.CharField(max_length=200)
    description = peewee.TextField(null=True)
    owner = peewee.CharField(max_length=100, null=True)
    status = peewee.CharField(max_length=20)
    project = peewee.ForeignKeyField(Project, column_name="project_id", null=True)
    sprint = peewee.ForeignKeyField(Sprint, column_name="sprint_id", null=True)
    project_id: str | None
    sprint_id: str | None
    tags = JSONList()
    due_date = peewee.DateField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    items = JSONList()

    class Meta:
        table_name = "action_list"


class ActionItemLink(peewee.Model):  # type: ignore[misc]
    """Which item of which action list links which task: finds the lists that link a task, by index."""

    action_list = peewee.ForeignKeyField(ActionList, column_name="action_list_id", on_delete="CASCADE")
    item_id = peewee.CharField(max_length=50)
    task = peewee.ForeignKeyField(Task, column_name="task_id")
    action_list_id: str
    task_id: str

    class Meta:
        database = database
        table_name = "action_item_link"
        primary_key = peewee.CompositeKey("action_list", "item_id")


class Comment(Record):
    id = peewee.CharField(max_length=50, primary_key=True)
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE", backref="comments")
    task_id: str
    #: The token's name; None for a comment written without one (auth off, or anonymous access).
    author = peewee.CharField(max_length=100, null=True)
    body = peewee.TextField()
    edited_at = peewee.DateTimeField(null=True)


class IdempotencyKey(peewee.Model):  # type: ignore[misc]
    scope = peewee.CharField(max_length=300)
    key = peewee.CharField(max_length=255)
    fingerprint = peewee.CharField(max_length=64)
    status_code = peewee.IntegerField()
    body = peewee.TextField()
    location = peewee.CharField(max_length=300, null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        database = database
        table_name = "idempotency_key"
        indexes = ((("scope", "key"), True),)


MODELS = (
    Project,
    Sprint,
    Task,
    TaskLabel,
    TaskAssignee,
    TaskDependency,
    ActionList,
    ActionItemLink,
    Comment,
    IdempotencyKey,
)
