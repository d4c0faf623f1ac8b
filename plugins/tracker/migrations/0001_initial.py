"""Create the tracker's tables, indexes and the one-active-sprint-per-project rule.

A frozen copy of the models as they were when this migration was written:
later changes to ``models.py`` belong in new migrations.
"""

from __future__ import annotations

import json
from typing import Any

import peewee

_database = peewee.DatabaseProxy()


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
        database = _database
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
    name = peewee.CharField(max_length=200)
    goal = peewee.TextField(null=True)
    cadence = peewee.CharField(max_length=20)
    start_date = peewee.DateField()
    end_date = peewee.DateField()
    owner = peewee.CharField(max_length=100, null=True)
    status = peewee.CharField(max_length=20)
    velocity_target_points = peewee.FloatField(null=True)
    committed_points = peewee.FloatField(null=True)
    completed_points = peewee.FloatField(null=True)


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
    estimate_points = peewee.FloatField(null=True)
    due_at = peewee.DateTimeField(null=True)
    project = peewee.ForeignKeyField(Project, column_name="project_id", backref="tasks")
    sprint = peewee.ForeignKeyField(Sprint, column_name="sprint_id", null=True, backref="tasks")
    depends_on = JSONList()
    completed_at = peewee.DateTimeField(null=True)


class TaskLabel(peewee.Model):  # type: ignore[misc]
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    label = peewee.CharField(max_length=50)

    class Meta:
        database = _database
        table_name = "task_label"
        primary_key = peewee.CompositeKey("task", "label")


class TaskAssignee(peewee.Model):  # type: ignore[misc]
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    assignee = peewee.CharField(max_length=100)

    class Meta:
        database = _database
        table_name = "task_assignee"
        primary_key = peewee.CompositeKey("task", "assignee")


class TaskDependency(peewee.Model):  # type: ignore[misc]
    task = peewee.ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    depends_on = peewee.ForeignKeyField(Task, column_name="depends_on_id")

    class Meta:
        database = _database
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
    tags = JSONList()
    due_date = peewee.DateField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    items = JSONList()

    class Meta:
        table_name = "action_list"


class IdempotencyKey(peewee.Model):  # type: ignore[misc]
    scope = peewee.CharField(max_length=300)
    key = peewee.CharField(max_length=255)
    fingerprint = peewee.CharField(max_length=64)
    status_code = peewee.IntegerField()
    body = peewee.TextField()
    location = peewee.CharField(max_length=300, null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        database = _database
        table_name = "idempotency_key"
        indexes = ((("scope", "key"), True),)


_MODELS = (Project, Sprint, Task, TaskLabel, TaskAssignee, TaskDependency, ActionList, IdempotencyKey)

_INDEXES = (
    # Lists filter by project and status and page by (created_at, id): one index serves that walk.
    ("task_project_status_created", "task", "project_id, status, created_at, id"),
    ("task_project_created", "task", "project_id, created_at, id"),
    ("task_created", "task", "created_at, id"),
    ("task_updated", "task", "updated_at, id"),
    ("task_due", "task", "due_at"),
    ("task_sprint", "task", "sprint_id, status"),
    ("task_owner", "task", "owner"),
    ("task_label_label", "task_label", "label, task_id"),
    ("task_assignee_assignee", "task_assignee", "assignee, task_id"),
    ("task_dependency_depends_on", "task_dependency", "depends_on_id"),
    ("sprint_project", "sprint", "project_id, created_at, id"),
    ("sprint_created", "sprint", "created_at, id"),
    ("project_created", "project", "created_at, id"),
    ("action_list_created", "action_list", "created_at, id"),
    ("action_list_project", "action_list", "project_id"),
    ("action_list_sprint", "action_list", "sprint_id"),
    ("idempotency_key_created", "idempotency_key", "created_at"),
)


def up(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.create_tables(_MODELS, safe=False)
    for name, table, columns in _INDEXES:
        db.execute_sql(f'CREATE INDEX "{name}" ON "{table}" ({columns})')
    # At most one active sprint per project, enforced where two concurrent starts meet: the database.
    db.execute_sql('CREATE UNIQUE INDEX "sprint_one_active" ON "sprint" (project_id) WHERE status = \'active\'')


def down(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.drop_tables(_MODELS, safe=False)
