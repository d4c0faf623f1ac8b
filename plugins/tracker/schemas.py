"""The one source of truth for every tracker body: JSON Schema (2020-12, as in OpenAPI 3.1).

Each resource is a table of :class:`Field`; from it come the schema a
``POST`` body must satisfy, the schema of a ``PATCH`` (JSON Merge Patch)
body, and the schema of the representation the API returns.  The request
validator and the OpenAPI document both read these, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

PROJECT_STATUSES = ("discovery", "active", "paused", "closed")
SPRINT_STATUSES = ("planned", "active", "closed")
SPRINT_CADENCES = ("weekly", "biweekly", "monthly", "custom")
TASK_STATUSES = ("new", "ready", "in_progress", "blocked", "review", "done", "dropped")
TASK_PRIORITIES = ("p0", "p1", "p2", "p3")
TASK_SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
ACTION_LIST_STATUSES = ("active", "completed", "archived")

MAX_POINTS = 100_000
#: The longest burndown series a report carries: the most recent days of a sprint left open (or planned) for years.
MAX_SERIES_DAYS = 3660
MAX_LIST_ITEMS = 100
MAX_ACTION_ITEMS = 500
MAX_VERSION = 1_000_000_000


def id_pattern(prefix: str) -> str:
    return f"^{prefix}-[A-Za-z0-9_-]{{1,47}}$"


def id_schema(prefix: str) -> dict[str, Any]:
    return {"type": "string", "pattern": id_pattern(prefix), "maxLength": len(prefix) + 48}


def text(max_length: int, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def enum(values: Sequence[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def string_set(max_length: int = 100) -> dict[str, Any]:
    return {"type": "array", "items": text(max_length), "uniqueItems": True, "maxItems": MAX_LIST_ITEMS}


DATE = {"type": "string", "format": "date", "maxLength": 10}
DATE_TIME = {"type": "string", "format": "date-time", "maxLength": 40}
POINTS = {"type": "number", "minimum": 0, "maximum": MAX_POINTS}


@attrs.frozen
class Field:
    name: str
    schema: Mapping[str, Any]
    #: Must be given at creation (and can never be cleared with ``null``).
    required: bool = False
    #: The value stored when a creation body leaves the field out.
    default: Any = None
    #: Set by the server only; a body that sends it is refused.
    read_only: bool = False
    #: Given at creation only (ids, parents that cannot change).
    immutable: bool = False
    description: str = ""
    #: The field's schema in the representation, when it differs from what a body sends (derived parts).
    output: Mapping[str, Any] | None = None

    @property
    def nullable(self) -> bool:
        """Optional fields without a default may hold (and be cleared to) ``null``."""
        return not self.required and self.default is None


@attrs.frozen
class Resource:
    name: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def writable(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.read_only)

    def create_schema(self) -> dict[str, Any]:
        properties = {f.name: _maybe_null(f, f.nullable) for f in self.writable}
        return _object(properties, [f.name for f in self.writable if f.required])

    def patch_schema(self) -> dict[str, Any]:
        fields = [f for f in self.writable if not f.immutable]
        return _object({f.name: _maybe_null(f, f.nullable) for f in fields}, [])

    def output_schema(self) -> dict[str, Any]:
        properties = {f.name: _maybe_null(f, f.nullable, output=True) for f in self.fields}
        return _object(properties, [f.name for f in self.fields], closed=False)

    def defaults(self) -> dict[str, Any]:
        return {f.name: _copy(f.default) for f in self.writable if not f.required}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _maybe_null(field: Field, nullable: bool, *, output: bool = False) -> dict[str, Any]:
    schema = dict(field.output if output and field.output is not None else field.schema)
    if field.description:
        schema["description"] = field.description
    if field.read_only:
        schema["readOnly"] = True
    if nullable:
        kind = schema.get("type")
        if isinstance(kind, str):
            schema["type"] = [kind, "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def _object(properties: dict[str, Any], required: list[str], *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _record_fields() -> tuple[Field, ...]:
    return (
        Field("created_at", DATE_TIME, required=True, read_only=True),
        Field("updated_at", DATE_TIME, required=True, read_only=True),
        # An import sets versions as given: bounded well inside a 32-bit INTEGER column, so later writes can
        # still count up (PostgreSQL's would overflow into a 500 at 2**31).
        Field("version", {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}, required=True, read_only=True),
    )


PROJECT = Resource(
    "Project",
    (
        Field("id", id_schema("P"), required=True, immutable=True),
        Field("name", text(200), required=True),
        Field("mission", text(2000), required=True),
        Field("owner", text(100), required=True),
        Field("status", enum(PROJECT_STATUSES), default="discovery"),
        Field("start_date", DATE),
        Field("target_end_date", DATE, description="Not before start_date."),
        Field("tags", string_set(50), default=[]),
        *_record_fields(),
    ),
)

SPRINT = Resource(
    "Sprint",
    (
        Field("id", id_schema("S"), required=True, immutable=True),
        Field("project_id", id_schema("P"), required=True, immutable=True),
        Field("name", text(200), required=True),
        Field("goal", text(2000)),
        Field("cadence", enum(SPRINT_CADENCES), default="biweekly"),
        Field("start_date", DATE, required=True),
        Field("end_date", DATE, required=True, description="Not before start_date; a sprint lasts at most 366 days."),
        Field("owner", text(100)),
        Field(
            "status",
            enum(SPRINT_STATUSES),
            required=True,
            read_only=True,
            description="Changed by POST /sprints/{id}/start and /close.",
        ),
        Field("velocity_target_points", POINTS),
        Field("committed_points", POINTS, read_only=True, description="Snapshot taken when the sprint closes."),
        Field("completed_points", POINTS, read_only=True, description="Snapshot taken when the sprint closes."),
        Field("started_at", DATE_TIME, read_only=True, description="Set by POST /sprints/{id}/start."),
        Field("closed_at", DATE_TIME, read_only=True, description="Set by POST /sprints/{id}/close."),
        *_record_fields(),
    ),
)

TASK = Resource(
    "Task",
    (
        Field("id", id_schema("T"), required=True, immutable=True),
        Field("title", text(500), required=True),
        Field("summary", text(1000, 0)),
        Field("description", text(20000, 0)),
        Field("owner", text(100)),
        Field("assignees", string_set(100), default=[]),
        Field("labels", string_set(50), default=[]),
        Field("priority", enum(TASK_PRIORITIES), default="p2"),
        Field("severity", enum(TASK_SEVERITIES)),
        Field(
            "status",
            enum(TASK_STATUSES),
            default="new",
            description="A task is created as new; later moves follow the transition table.",
        ),
        Field("estimate_points", POINTS),
        Field("due_at", DATE_TIME),
        Field("project_id", id_schema("P"), required=True, immutable=True),
        Field("sprint_id", id_schema("S"), description="null: the project's backlog."),
        Field(
            "depends_on",
            {"type": "array", "items": id_schema("T"), "uniqueItems": True, "maxItems": MAX_LIST_ITEMS},
            default=[],
        ),
        Field("completed_at", DATE_TIME, read_only=True, description="Set when the task reaches done."),
        *_record_fields(),
    ),
)

ITEM_ID = id_schema("I")
ACTION_ITEM: dict[str, Any] = {
    "type": "object",
    "description": "An item: its text, a task it links, or both. Without an id it gets one from the server.",
    "properties": {
        "id": {**ITEM_ID, "description": "Kept when given (unique in the list); chosen by the server otherwise."},
        "text": text(1000),
        "done": {"type": "boolean", "default": False},
        "task_id": {**id_schema("T"), "description": "A task that exists: the item shows its title and status."},
    },
    "additionalProperties": False,
}
LINKED_TASK = {
    "type": ["object", "null"],
    "description": "The linked task as it is now; null for a text item.",
    "properties": {"title": text(500), "status": enum(TASK_STATUSES)},
    "required": ["title", "status"],
}
ACTION_ITEM_OUT = {
    "type": "object",
    "properties": {
        "id": ITEM_ID,
        "text": {"type": ["string", "null"], "maxLength": 1000},
        "done": {"type": "boolean"},
        "task_id": {"type": ["string", "null"], "pattern": id_pattern("T"), "maxLength": 50},
        "task": LINKED_TASK,
    },
    "required": ["id", "text", "done", "task_id", "task"],
}

ACTION_LIST = Resource(
    "ActionList",
    (
        Field("id", id_schema("AL"), required=True, read_only=True, description="Chosen by the server."),
        Field("title", text(200), required=True),
        Field("description", text(20000, 0)),
        Field("owner", text(100)),
        Field("status", enum(ACTION_LIST_STATUSES), default="active"),
        Field("project_id", id_schema("P")),
        Field("sprint_id", id_schema("S")),
        Field("tags", string_set(50), default=[]),
        Field("due_date", DATE),
        Field("completed_at", DATE_TIME, read_only=True),
        Field(
            "items",
            {"type": "array", "items": ACTION_ITEM, "maxItems": MAX_ACTION_ITEMS},
            default=[],
            output={"type": "array", "items": ACTION_ITEM_OUT, "maxItems": MAX_ACTION_ITEMS},
        ),
        *_record_fields(),
    ),
)

MAX_COMMENT_LENGTH = 10_000

COMMENT = Resource(
    "Comment",
    (
        Field("id", id_schema("C"), required=True, read_only=True, description="Chosen by the server."),
        Field("task_id", id_schema("T"), required=True, read_only=True, description="The task it is on."),
        Field(
            "author",
            text(100),
            read_only=True,
            description="The name of the token that wrote it; null when written without one.",
        ),
        Field("body", text(MAX_COMMENT_LENGTH), required=True),
        Field("edited_at", DATE_TIME, read_only=True, description="When the body last changed; null if never."),
        *_record_fields(),
    ),
)

RESOURCES = {r.name: r for r in (PROJECT, SPRINT, TASK, ACTION_LIST, COMMENT)}

#: The most tasks one batch creates.
MAX_BATCH = 500


def task_batch(item: Mapping[str, Any]) -> dict[str, Any]:
    """``{"items": [...]}``, 1 to :data:`MAX_BATCH` task creation bodies (``item``: the schema, or its $ref)."""
    return _object({"items": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": item}}, ["items"])


TASK_BATCH = task_batch(TASK.create_schema())

STATUS_CHANGE = _object({"status": enum(TASK_STATUSES)}, ["status"])
SPRINT_START = _object(
    {
        "start_date": {**DATE, "description": "Move the start in the same request."},
        "end_date": {
            **DATE,
            "description": "Move the end in the same request: a sprint whose end date has passed cannot start.",
        },
    },
    [],
)
SPRINT_CLOSE = _object(
    {
        "carry_over": {
            "description": 'Where unfinished tasks go: "backlog" or the id of a planned sprint of the same project.',
            "anyOf": [{"const": "backlog"}, id_schema("S")],
        }
    },
    [],
)
ITEM_PATCH = _object(
    {
        "text": {**text(1000), "type": ["string", "null"], "description": "null: none (the item must link a task)."},
        "done": {"type": "boolean"},
        "task_id": {**id_schema("T"), "type": ["string", "null"], "description": "null: unlink the task."},
    },
    [],
)
ITEM_REORDER = _object(
    {
        "order": {
            "type": "array",
            "description": "Every item once, by id (or, all of them, by index): position i gets the item named i-th.",
            "items": {
                "type": ["string", "integer"],
                "pattern": id_pattern("I"),
                "maxLength": 50,
                "minimum": 0,
                "maximum": MAX_ACTION_ITEMS - 1,
            },
            "maxItems": MAX_ACTION_ITEMS,
        }
    },
    ["order"],
)

_NUMBER = {"type": "number"}
_DAYS = {"type": "integer", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}


def _by_status() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Tasks in each status (every status, 0 included).",
        "properties": {status: _COUNT for status in TASK_STATUSES},
        "required": list(TASK_STATUSES),
    }


PROJECT_METRICS = {
    "type": "object",
    "description": "The project's tasks by status and its health: red above 20% blocked, yellow above 10% "
    "blocked or under 30% done, green otherwise (or with no tasks).",
    "properties": {
        "project_id": id_schema("P"),
        "total_tasks": _COUNT,
        "tasks_by_status": _by_status(),
        "completion_percentage": {**_PERCENT, "description": "Done tasks, of all tasks."},
        "blocked_percentage": {**_PERCENT, "description": "Blocked tasks, of all tasks."},
        "health_status": enum(("green", "yellow", "red")),
    },
    "required": [
        "project_id",
        "total_tasks",
        "tasks_by_status",
        "completion_percentage",
        "blocked_percentage",
        "health_status",
    ],
}

VELOCITY = {
    "type": "object",
    "description": "Points of each closed sprint, oldest (by end date) first, and the average completed.",
    "properties": {
        "project_id": id_schema("P"),
        "sprints": {
            "type": "array",
            "maxItems": 100_000,
            "items": {
                "type": "object",
                "properties": {
                    "sprint_id": id_schema("S"),
                    "name": text(200),
                    "end_date": DATE,
                    "committed_points": _NUMBER,
                    "completed_points": _NUMBER,
                },
                "required": ["sprint_id", "name", "end_date", "committed_points", "completed_points"],
            },
        },
        "average_completed_points": _NUMBER,
    },
    "required": ["project_id", "sprints", "average_completed_points"],
}
BURNDOWN = {
    "type": "object",
    "description": (
        "Remaining points per day from start_date to as_of: today for a planned or active sprint (an active "
        "sprint past its end runs on to today), the day it closed for a closed one. The summary is the last day."
    ),
    "properties": {
        "sprint_id": id_schema("S"),
        "status": enum(SPRINT_STATUSES),
        "as_of": {**DATE, "description": "The last day of the series."},
        "total_points": _NUMBER,
        "completed_points": _NUMBER,
        "remaining_points": {**_NUMBER, "description": "Equals the series' last remaining_points."},
        "days_total": {"type": "integer", "minimum": 1},
        "days_elapsed": {**_DAYS, "description": "Days of start_date..end_date up to as_of."},
        "days_remaining": _DAYS,
        "days_past_end": {**_DAYS, "description": "Days from end_date to as_of, 0 when not past the end."},
        "ideal_burndown_rate": _NUMBER,
        "actual_burndown_rate": _NUMBER,
        "on_track": {
            "type": "boolean",
            "description": (
                "At or below the ideal line as of as_of; a closed sprint only when it completed everything it "
                "committed (and had work done)."
            ),
        },
        "series": {
            "type": "array",
            "maxItems": MAX_SERIES_DAYS,
            "items": {
                "type": "object",
                "properties": {
                    "date": DATE,
                    "remaining_points": _NUMBER,
                    "ideal_remaining_points": _NUMBER,
                },
                "required": ["date", "remaining_points", "ideal_remaining_points"],
            },
        },
    },
    "required": [
        "sprint_id",
        "status",
        "as_of",
        "total_points",
        "completed_points",
        "remaining_points",
        "days_total",
        "days_elapsed",
        "days_remaining",
        "days_past_end",
        "ideal_burndown_rate",
        "actual_burndown_rate",
        "on_track",
        "series",
    ],
}

SPRINT_PROGRESS = {
    "type": "object",
    "description": (
        "Where a sprint stands as of the burndown's last day (as_of), with the burndown's definitions: "
        "committed_points is its total_points, completed_points and remaining_points and the days are those of "
        "its summary."
    ),
    "properties": {
        "sprint_id": id_schema("S"),
        "status": enum(SPRINT_STATUSES),
        "as_of": {**DATE, "description": "The burndown's last day."},
        "total_tasks": {**_COUNT, "description": "Tasks in the sprint now."},
        "tasks_by_status": _by_status(),
        "committed_points": {**_NUMBER, "description": "Estimates of the tasks not dropped (closed: the snapshot)."},
        "completed_points": {**_NUMBER, "description": "Estimates of the tasks done by as_of."},
        "remaining_points": _NUMBER,
        "completion_percentage": {**_PERCENT, "description": "completed_points of committed_points; 0 if none."},
        "days_total": {"type": "integer", "minimum": 1},
        "days_elapsed": _DAYS,
        "days_remaining": _DAYS,
        "days_past_end": _DAYS,
        "on_track": {"type": "boolean", "description": "As in the burndown."},
    },
    "required": [
        "sprint_id",
        "status",
        "as_of",
        "total_tasks",
        "tasks_by_status",
        "committed_points",
        "completed_points",
        "remaining_points",
        "completion_percentage",
        "days_total",
        "days_elapsed",
        "days_remaining",
        "days_past_end",
        "on_track",
    ],
}
