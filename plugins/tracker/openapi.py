"""The tracker's OpenAPI 3.1 fragment, built from :mod:`.schemas` (the same schemas that validate requests).

Error responses refer to the shared problem+json responses the ``openapi``
plugin provides (``#/components/responses/NotFound``...).
"""

from __future__ import annotations

from typing import Any

from . import listing, transfer
from .action_lists import ActionLists
from .comments import Comments
from .projects import Projects
from .schemas import (
    ACTION_ITEM,
    BURNDOWN,
    COMMENT,
    ITEM_PATCH,
    ITEM_REORDER,
    MAX_BATCH,
    PROJECT_METRICS,
    RESOURCES,
    SPRINT_CLOSE,
    SPRINT_PROGRESS,
    SPRINT_START,
    STATUS_CHANGE,
    VELOCITY,
    id_schema,
    task_batch,
)
from .sprints import Sprints
from .tasks import Tasks

ERRORS = "#/components/responses/"

#: The tags, lower case as the other plugins' are (health, metrics, openapi): the path segment they cover.
TAGS = {
    "Project": ("projects", "Projects, their metrics and velocity."),
    "Sprint": ("sprints", "Sprints: start, close, burndown and progress."),
    "Task": ("tasks", "Tasks, their workflow and batches of them."),
    "ActionList": ("action-lists", "Action lists and their items."),
    "Comment": ("comments", "Comments on tasks."),
    "Transfer": ("transfer", "Export every record as one document, and import one."),
}


def _tag(name: str) -> list[str]:
    return [TAGS[name][0]]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], content_type: str = "application/json") -> dict[str, Any]:
    return {content_type: {"schema": schema}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        404: "NotFound",
        409: "Conflict",
        412: "PreconditionFailed",
        415: "UnsupportedMediaType",
        422: "UnprocessableContent",
    }
    return {str(code): {"$ref": ERRORS + names[code]} for code in codes}


ETAG = {"ETag": {"description": "The record's version, for If-Match and If-None-Match.", "schema": {"type": "string"}}}


def _record_response(name: str, description: str, *, created: bool = False) -> dict[str, Any]:
    headers = dict(ETAG)
    if created:
        headers["Location"] = {"description": "The new record's URL.", "schema": {"type": "string"}}
    headers["Idempotent-Replayed"] = {
        "description": "true when this is the stored response of an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
    return {"description": description, "headers": headers, "content": _json(_ref(name))}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": {"type": "string"}}


IF_MATCH = _header("If-Match", 'Only change the record if its ETag is one of these ("3"); else 412.')
IF_NONE_MATCH = _header("If-None-Match", "Answer 304 if the record's ETag is one of these.")
IDEMPOTENCY_KEY = {
    **_header("Idempotency-Key", "A retry with the same key and body replays the first response (24 h)."),
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}


def _path_param(name: str, prefix: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": id_schema(prefix)}


def _query_params(definition: listing.ListDefinition) -> list[dict[str, Any]]:
    sort_keys = sorted(definition.sortable)
    params = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT, "default": listing.DEFAULT_LIMIT},
        },
        {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the last page."},
        {
            "name": "sort",
            "in": "query",
            "schema": {"type": "string"},
            "description": "Comma list of " + ", ".join(sort_keys) + "; prefix - for descending.",
        },
        {
            "name": "count",
            "in": "query",
            "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
            "description": "true: add total, the number of rows matching the filters (costs a count of them all).",
        },
    ]
    for name in sorted(definition.filters):
        params.append({"name": name, "in": "query", "schema": {"type": "string"}})
    return params


def _page_schema(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(name)},
            "next_cursor": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
            "total": {
                "type": "integer",
                "minimum": 0,
                "description": "Rows matching the filters (every page of the walk); only with count=true.",
            },
        },
        "required": ["items", "next_cursor", "has_more"],
    }


def fragment(prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    collections = (
        ("projects", "project_id", "P", "Project", Projects),
        ("sprints", "sprint_id", "S", "Sprint", Sprints),
        ("tasks", "task_id", "T", "Task", Tasks),
        ("action-lists", "list_id", "AL", "ActionList", ActionLists),
    )
    for plural, param, id_prefix, name, collection in collections:
        resource = RESOURCES[name]
        singular = plural[:-1].replace("-", " ")
        schemas[name] = resource.output_schema()
        schemas[f"{name}Create"] = resource.create_schema()
        schemas[f"{name}Patch"] = resource.patch_schema()
        schemas[f"{name}Page"] = _page_schema(name)
        base = f"{prefix}/{plural}"
        item = f"{base}/{{{param}}}"
        tag = _tag(name)
        paths[base] = {
            "get": {
                "operationId": f"list{name}s",
                "tags": tag,
                "summary": f"A page of {plural}, filtered and sorted",
                "parameters": _query_params(collection.listing),
                "responses": {
                    "200": {
                        "description": "One page.",
                        "headers": {
                            "Link": {"description": 'rel="next" when there are more', "schema": {"type": "string"}}
                        },
                        "content": _json(_ref(f"{name}Page")),
                    },
                    **_errors(400),
                },
            },
            "post": {
                "operationId": f"create{name}",
                "tags": tag,
                "summary": f"Create a {singular}",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": _json(_ref(f"{name}Create"))},
                "responses": {
                    "201": _record_response(name, "Created.", created=True),
                    **_errors(400, 409, 415, 422),
                },
            },
        }
        delete_params = [IF_MATCH]
        if name == "Project":
            delete_params.append(
                {"name": "cascade", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}}
            )
        paths[item] = {
            "parameters": [_path_param(param, id_prefix)],
            "get": {
                "operationId": f"get{name}",
                "tags": tag,
                "summary": f"One {singular}",
                "parameters": [IF_NONE_MATCH],
                "responses": {
                    "200": _record_response(name, "The record."),
                    "304": {"description": "Not modified.", "headers": ETAG},
                    **_errors(400, 404),
                },
            },
            "put": {
                "operationId": f"replace{name}",
                "tags": tag,
                "summary": f"Replace a {singular}: absent optional fields go back to their defaults",
                "parameters": [IF_MATCH],
                "requestBody": {"required": True, "content": _json(_ref(f"{name}Create"))},
                "responses": {
                    "200": _record_response(name, "The replaced record."),
                    **_errors(400, 404, 409, 412, 415, 422),
                },
            },
            "patch": {
                "operationId": f"update{name}",
                "tags": tag,
                "summary": f"Change a {singular} (JSON Merge Patch: absent fields stay, null clears)",
                "parameters": [IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {
                        **_json(_ref(f"{name}Patch"), "application/merge-patch+json"),
                        **_json(_ref(f"{name}Patch")),
                    },
                },
                "responses": {
                    "200": _record_response(name, "The updated record."),
                    **_errors(400, 404, 409, 412, 415, 422),
                },
            },
            "delete": {
                "operationId": f"delete{name}",
                "tags": tag,
                "summary": f"Delete a {singular}"
                + (" (and, with cascade=true, what it holds)" if name == "Project" else ""),
                "parameters": delete_params,
                "responses": {"204": {"description": "Deleted."}, **_errors(400, 404, 409, 412)},
            },
        }

    schemas["StatusChange"] = STATUS_CHANGE
    schemas["SprintStart"] = SPRINT_START
    schemas["SprintClose"] = SPRINT_CLOSE
    schemas["ActionItem"] = ACTION_ITEM
    schemas["ActionItemPatch"] = ITEM_PATCH
    schemas["ActionItemOrder"] = ITEM_REORDER
    schemas["ProjectMetrics"] = PROJECT_METRICS
    schemas["Velocity"] = VELOCITY
    schemas["Burndown"] = BURNDOWN
    schemas["SprintProgress"] = SPRINT_PROGRESS

    def action(path: str, param: str, id_prefix: str, op: str, result: str, body: str | None, summary: str) -> None:
        operation: dict[str, Any] = {
            "operationId": op,
            "tags": _tag(result),
            "summary": summary,
            "parameters": [_path_param(param, id_prefix), IF_MATCH, IDEMPOTENCY_KEY],
            "responses": {
                "200": _record_response(result, "The changed record."),
                **_errors(400, 404, 409, 412, 415, 422),
            },
        }
        if body:
            optional = body in ("SprintStart", "SprintClose")
            operation["requestBody"] = {"required": not optional, "content": _json(_ref(body))}
        paths[path] = {"post": operation}

    def report(path: str, param: str, id_prefix: str, op: str, tag: str, summary: str, schema: str) -> None:
        paths[path] = {
            "get": {
                "operationId": op,
                "tags": _tag(tag),
                "summary": summary,
                "parameters": [_path_param(param, id_prefix)],
                "responses": {"200": {"description": summary, "content": _json(_ref(schema))}, **_errors(400, 404)},
            }
        }

    p, s, t, a = (f"{prefix}/{n}" for n in ("projects", "sprints", "tasks", "action-lists"))
    report(
        f"{p}/{{project_id}}/metrics",
        "project_id",
        "P",
        "getProjectMetrics",
        "Project",
        "Task counts and health",
        "ProjectMetrics",
    )
    report(
        f"{p}/{{project_id}}/velocity",
        "project_id",
        "P",
        "getProjectVelocity",
        "Project",
        "Points per closed sprint",
        "Velocity",
    )
    report(
        f"{s}/{{sprint_id}}/burndown",
        "sprint_id",
        "S",
        "getSprintBurndown",
        "Sprint",
        "Remaining points by day",
        "Burndown",
    )
    report(
        f"{s}/{{sprint_id}}/progress",
        "sprint_id",
        "S",
        "getSprintProgress",
        "Sprint",
        "Task counts, points and days so far",
        "SprintProgress",
    )
    action(
        f"{s}/{{sprint_id}}/start", "sprint_id", "S", "startSprint", "Sprint", "SprintStart", "Start a planned sprint"
    )
    action(
        f"{s}/{{sprint_id}}/close", "sprint_id", "S", "closeSprint", "Sprint", "SprintClose", "Close the active sprint"
    )
    action(f"{t}/{{task_id}}/status", "task_id", "T", "changeTaskStatus", "Task", "StatusChange", "Move a task")
    action(f"{a}/{{list_id}}/items", "list_id", "AL", "addActionItem", "ActionList", "ActionItem", "Append an item")
    action(
        f"{a}/{{list_id}}/items/reorder",
        "list_id",
        "AL",
        "reorderActionItems",
        "ActionList",
        "ActionItemOrder",
        "Reorder the items",
    )
    action(f"{a}/{{list_id}}/complete", "list_id", "AL", "completeActionList", "ActionList", None, "Complete the list")
    item_param = {
        "name": "item",
        "in": "path",
        "required": True,
        "description": "The item's id (I-...), or its position from 0.",
        "schema": {"type": "string", "pattern": "^(I-[A-Za-z0-9_-]{1,47}|[0-9]{1,3})$", "maxLength": 49},
    }
    paths[f"{a}/{{list_id}}/items/{{item}}"] = {
        "parameters": [_path_param("list_id", "AL"), item_param],
        "patch": {
            "operationId": "updateActionItem",
            "tags": _tag("ActionList"),
            "summary": "Change an item (by id, or by position)",
            "parameters": [IF_MATCH],
            "requestBody": {
                "required": True,
                "content": {
                    **_json(_ref("ActionItemPatch"), "application/merge-patch+json"),
                    **_json(_ref("ActionItemPatch")),
                },
            },
            "responses": {"200": _record_response("ActionList", "The list."), **_errors(400, 404, 412, 415, 422)},
        },
        "delete": {
            "operationId": "deleteActionItem",
            "tags": _tag("ActionList"),
            "summary": "Remove an item (by id, or by position)",
            "parameters": [IF_MATCH],
            "responses": {"200": _record_response("ActionList", "The list."), **_errors(400, 404, 412)},
        },
    }
    paths.update(comment_paths(t, schemas))
    paths.update(transfer_paths(prefix, schemas))
    schemas["TaskBatch"] = task_batch(_ref("TaskCreate"))
    schemas["TaskBatchResult"] = {
        "type": "object",
        "properties": {"items": {"type": "array", "maxItems": MAX_BATCH, "items": _ref("Task")}},
        "required": ["items"],
    }
    paths[f"{t}/batch"] = {
        "post": {
            "operationId": "createTasks",
            "tags": _tag("Task"),
            "summary": "Create up to 500 tasks at once, all or none",
            "description": (
                "One transaction: any refused item refuses the batch, with a 422 naming each problem by its "
                "item (/items/3/title). Items are created in order, so one may depend on an earlier one."
            ),
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {"required": True, "content": _json(_ref("TaskBatch"))},
            "responses": {
                "201": {
                    "description": "Every task, created.",
                    "headers": {"Idempotent-Replayed": _record_response("Task", "")["headers"]["Idempotent-Replayed"]},
                    "content": _json(_ref("TaskBatchResult")),
                },
                **_errors(400, 415, 422),
            },
        }
    }
    return {
        "paths": paths,
        "components": {"schemas": schemas},
        "tags": [{"name": tag, "description": description} for tag, description in TAGS.values()],
    }


def _errors_with_403(*codes: int) -> dict[str, Any]:
    return {**_errors(*codes), "403": {"$ref": ERRORS + "Forbidden"}}


def comment_paths(tasks: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """``/tasks/{task_id}/comments`` and ``/tasks/{task_id}/comments/{comment_id}``."""
    schemas["Comment"] = COMMENT.output_schema()
    schemas["CommentCreate"] = COMMENT.create_schema()
    schemas["CommentPatch"] = COMMENT.patch_schema()
    schemas["CommentPage"] = _page_schema("Comment")
    tag = _tag("Comment")
    task = _path_param("task_id", "T")
    return {
        f"{tasks}/{{task_id}}/comments": {
            "parameters": [task],
            "get": {
                "operationId": "listComments",
                "tags": tag,
                "summary": "A page of a task's comments, oldest first",
                "parameters": _query_params(Comments.listing),
                "responses": {
                    "200": {"description": "One page.", "content": _json(_ref("CommentPage"))},
                    **_errors(400, 404),
                },
            },
            "post": {
                "operationId": "createComment",
                "tags": tag,
                "summary": "Comment on a task, as the caller",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": _json(_ref("CommentCreate"))},
                "responses": {
                    "201": _record_response("Comment", "Created.", created=True),
                    **_errors(400, 404, 415, 422),
                },
            },
        },
        f"{tasks}/{{task_id}}/comments/{{comment_id}}": {
            "parameters": [task, _path_param("comment_id", "C")],
            "get": {
                "operationId": "getComment",
                "tags": tag,
                "summary": "One comment",
                "parameters": [IF_NONE_MATCH],
                "responses": {
                    "200": _record_response("Comment", "The comment."),
                    "304": {"description": "Not modified.", "headers": ETAG},
                    **_errors(400, 404),
                },
            },
            "patch": {
                "operationId": "updateComment",
                "tags": tag,
                "summary": "Edit a comment (its author or an admin)",
                "parameters": [IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {
                        **_json(_ref("CommentPatch"), "application/merge-patch+json"),
                        **_json(_ref("CommentPatch")),
                    },
                },
                "responses": {
                    "200": _record_response("Comment", "The edited comment."),
                    **_errors_with_403(400, 404, 412, 415, 422),
                },
            },
            "delete": {
                "operationId": "deleteComment",
                "tags": tag,
                "summary": "Delete a comment (its author or an admin)",
                "parameters": [IF_MATCH],
                "responses": {"204": {"description": "Deleted."}, **_errors_with_403(400, 404, 412)},
            },
        },
    }


def transfer_paths(prefix: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """``GET /export`` and ``POST /import``: one document of every record."""
    for section in transfer.SECTIONS:
        schemas[f"{section.resource.name}Record"] = transfer.record_schema(section.resource)
    schemas["ExportDocument"] = transfer.document_schema(lambda resource: _ref(f"{resource.name}Record"))
    counts = {
        "type": "object",
        "properties": {section.key: {"type": "integer", "minimum": 0} for section in transfer.SECTIONS},
        "required": [section.key for section in transfer.SECTIONS],
    }
    schemas["ImportSummary"] = {
        "type": "object",
        "description": "Records written, and records that were there already, equal, by kind.",
        "properties": {"created": counts, "unchanged": counts},
        "required": ["created", "unchanged"],
    }
    tag = _tag("Transfer")
    project = {
        "name": "project_id",
        "in": "query",
        "required": False,
        "description": "Export this project only: its sprints, tasks, action lists and their comments.",
        "schema": id_schema("P"),
    }
    return {
        f"{prefix}/export": {
            "get": {
                "operationId": "exportRecords",
                "tags": tag,
                "summary": "Every record, or one project's, as one document",
                "parameters": [project],
                "responses": {
                    "200": {"description": "The document.", "content": _json(_ref("ExportDocument"))},
                    **_errors(400, 404),
                },
            }
        },
        f"{prefix}/import": {
            "post": {
                "operationId": "importRecords",
                "tags": tag,
                "summary": "Load an export, all or nothing, keeping statuses and timestamps (admin)",
                "description": (
                    "Records are written as given, without replaying the transition table. A record whose id "
                    "exists already is kept when equal and refuses the import (409) when not, so importing the "
                    "same document twice changes nothing."
                ),
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": _json(_ref("ExportDocument"))},
                "responses": {
                    "200": {
                        "description": "What was created and what was there already.",
                        "content": _json(_ref("ImportSummary")),
                    },
                    **_errors(400, 409, 415, 422),
                },
            }
        },
    }
