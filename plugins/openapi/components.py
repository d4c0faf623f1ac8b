"""The shared components every plugin may ``$ref``: problem details and the error responses.

They describe what :mod:`taskman.errors` renders: every error is
``application/problem+json`` (RFC 9457) with all six members present, and a
422 adds ``errors: [{pointer, detail}]``.  Plain data: nothing here knows
Falcon.
"""

from __future__ import annotations

import copy
from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"

#: ``#/components/<section>/<name>``: the form of every reference this plugin writes.
REF_PREFIX = "#/components/"


def ref(section: str, name: str) -> dict[str, str]:
    return {"$ref": f"{REF_PREFIX}{section}/{name}"}


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Problem details (RFC 9457). Every error the app returns has all six members.",
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
    "properties": {
        "type": {
            "type": "string",
            "description": "A URI naming the problem type; `about:blank` when the status says it all.",
            "examples": ["about:blank"],
        },
        "title": {"type": "string", "description": "The status's reason phrase.", "examples": ["Not Found"]},
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "The HTTP status code."},
        "detail": {"type": "string", "description": "What went wrong, for a person to read."},
        "instance": {
            "type": "string",
            "description": "The request path for a 4xx; `urn:taskman:request:<request_id>` for a 5xx.",
        },
        "request_id": {"type": "string", "description": "The request's id, also in the server log."},
    },
    "additionalProperties": True,
}

VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "description": "A 422 problem listing each invalid member of the request body.",
    "allOf": [
        ref("schemas", "Problem"),
        {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["pointer", "detail"],
                        "properties": {
                            "pointer": {
                                "type": "string",
                                "description": "A JSON Pointer (RFC 6901) into the request body.",
                                "examples": ["/title"],
                            },
                            "detail": {"type": "string", "examples": ["must not be empty"]},
                        },
                    },
                }
            },
        },
    ],
}

_RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
}

#: ``(name, status, description, schema, headers)`` of each shared error response.
_RESPONSES: tuple[tuple[str, int, str, str, dict[str, Any]], ...] = (
    ("BadRequest", 400, "The request is malformed (unparsable body or parameter).", "Problem", {}),
    ("Unauthorized", 401, "Authentication is required or failed.", "Problem", {}),
    ("Forbidden", 403, "The caller may not do this.", "Problem", {}),
    ("NotFound", 404, "No resource matches this path.", "Problem", {}),
    ("Conflict", 409, "The request conflicts with the resource's current state.", "Problem", {}),
    ("PreconditionFailed", 412, "A precondition (`If-Match`, ...) does not hold.", "Problem", {}),
    ("ContentTooLarge", 413, "The request body is too large.", "Problem", {}),
    ("UnsupportedMediaType", 415, "The request body's media type is not supported.", "Problem", {}),
    ("UnprocessableContent", 422, "The request is well-formed but its content is invalid.", "ValidationProblem", {}),
    ("TooManyRequests", 429, "Too many requests; retry later.", "Problem", {"Retry-After": _RETRY_AFTER}),
    (
        "InternalServerError",
        500,
        "An unexpected error; the body reveals nothing, the log has it under the same request_id.",
        "Problem",
        {},
    ),
    (
        "ServiceUnavailable",
        503,
        "The service (its database, for one) is temporarily unavailable; retry later.",
        "Problem",
        {"Retry-After": _RETRY_AFTER},
    ),
)

#: Shared response name by status code.
RESPONSE_FOR_STATUS: dict[int, str] = {status: name for name, status, *_ in _RESPONSES}


def problem_response(
    description: str, schema: str = "Problem", headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A response object whose body is a problem document."""
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": ref("schemas", schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


def shared_components() -> dict[str, dict[str, Any]]:
    """A fresh copy of the shared ``components``: ``Problem``, ``ValidationProblem`` and the error responses."""
    return {
        "schemas": copy.deepcopy({"Problem": PROBLEM_SCHEMA, "ValidationProblem": VALIDATION_PROBLEM_SCHEMA}),
        "responses": {
            name: problem_response(description, schema, copy.deepcopy(headers))
            for name, _status, description, schema, headers in _RESPONSES
        },
    }
