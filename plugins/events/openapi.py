"""The OpenAPI fragment of the change feed and of every declared activity route."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .web import (
    ACTIVITY_DEFAULT_LIMIT,
    ACTIVITY_MAX_LIMIT,
    DEFAULT_LIMIT,
    FEED_PATH,
    MAX_AFTER,
    MAX_LIMIT,
    MAX_TYPES,
    PROJECT_ID,
    TYPE_PREFIX,
)

ERRORS = "#/components/responses/"
TAG = "events"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _integer(name: str, low: int, high: int, default: int, description: str) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


AFTER = _integer("after", 0, MAX_AFTER, 0, "Only events with a greater id: the next_after of the previous page.")

EVENT = {
    "type": "object",
    "required": ["id", "type", "occurred_at", "principal", "request_id", "project_id", "subject", "data"],
    "properties": {
        "id": {"type": "integer", "description": "Increasing in commit order: the feed's position."},
        "type": {"type": "string", "examples": ["task.updated"]},
        "occurred_at": {"type": "string", "format": "date-time"},
        "principal": {"type": ["string", "null"], "description": "The token that made the change, by name."},
        "request_id": {"type": ["string", "null"]},
        "project_id": {"type": ["string", "null"]},
        "subject": {
            "type": ["object", "null"],
            "required": ["kind", "id"],
            "properties": {"kind": {"type": "string"}, "id": {"type": "string"}},
        },
        "data": {"type": "object", "description": "The event's payload (changes: {field: {old, new}})."},
    },
}
CHANGE = {
    "type": "object",
    "required": ["field", "old", "new"],
    "properties": {"field": {"type": "string"}, "old": {}, "new": {}},
}
ACTIVITY_ENTRY = {
    "allOf": [
        _ref("Event"),
        {
            "type": "object",
            "required": ["changes"],
            "properties": {"changes": {"type": "array", "items": _ref("FieldChange")}},
        },
    ]
}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_after", "has_more"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_after": {"type": "integer", "description": "Pass as after= to read on."},
            "has_more": {"type": "boolean"},
        },
    }


def _openapi_template(route: str) -> tuple[str, str]:
    """``/tasks/{task_id:int}`` → (``/tasks/{task_id}``, ``task_id``): the path as OpenAPI spells it, and its field."""
    fields = re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}", route)
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}", r"{\1}", route), fields[-1]


def fragment(activity: Iterable[tuple[str, str, str]], max_wait: int) -> dict[str, Any]:
    """``activity``: ``(kind, route, tag)`` of each declared activity route; ``max_wait``: ``events.max_wait``."""
    types = {
        "name": "type",
        "in": "query",
        "required": False,
        "description": f"Up to {MAX_TYPES} comma-separated type prefixes: task. (every task event), task.created.",
        "schema": {
            "type": "string",
            "pattern": f"^{TYPE_PREFIX.pattern}(,{TYPE_PREFIX.pattern}){{0,{MAX_TYPES - 1}}}$",
        },
    }
    project = {
        "name": "project_id",
        "in": "query",
        "required": False,
        "description": "Only events of this project (their data names it).",
        "schema": {"type": "string", "pattern": f"^{PROJECT_ID.pattern}$"},
    }
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Seconds to wait for an event when there is none yet (a bounded long poll).",
        "schema": {"type": "integer", "minimum": 0, "maximum": max_wait, "default": 0},
    }
    paths: dict[str, Any] = {
        FEED_PATH: {
            "get": {
                "operationId": "listEvents",
                "tags": [TAG],
                "summary": "The change feed: every committed event after a position, in commit order",
                "parameters": [
                    AFTER,
                    _integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT, "Events per page."),
                    types,
                    project,
                    wait,
                ],
                "responses": {
                    "200": {"description": "One page.", "content": {"application/json": {"schema": _ref("EventPage")}}},
                    "400": {"$ref": ERRORS + "BadRequest"},
                },
            }
        }
    }
    for kind, route, tag in activity:
        path, field = _openapi_template(route)
        label = kind.replace("_", " ")
        paths[path] = {
            "get": {
                "operationId": "get" + "".join(part.capitalize() for part in kind.split("_")) + "Activity",
                "tags": [tag],
                "summary": f"The {label}'s history: who changed which field from what to what, and when",
                "parameters": [
                    {"name": field, "in": "path", "required": True, "schema": {"type": "string"}},
                    AFTER,
                    _integer("limit", 1, ACTIVITY_MAX_LIMIT, ACTIVITY_DEFAULT_LIMIT, "Entries per page."),
                ],
                "responses": {
                    "200": {
                        "description": "One page, oldest first.",
                        "content": {"application/json": {"schema": _ref("ActivityPage")}},
                    },
                    "400": {"$ref": ERRORS + "BadRequest"},
                    "404": {"$ref": ERRORS + "NotFound"},
                },
            }
        }
    return {
        "paths": paths,
        "components": {
            "schemas": {
                "Event": EVENT,
                "EventPage": _page("Event"),
                "FieldChange": CHANGE,
                "ActivityEntry": ACTIVITY_ENTRY,
                "ActivityPage": _page("ActivityEntry"),
            }
        },
        "tags": [{"name": TAG, "description": "The change feed of every committed change."}],
    }
