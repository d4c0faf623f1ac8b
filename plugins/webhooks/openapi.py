"""The schemas of ``/api/v1/webhooks`` (they also validate request bodies) and the OpenAPI fragment."""

from __future__ import annotations

from typing import Any

from .sender import MAX_URL_LENGTH, OUTCOMES
from .service import MAX_PATTERNS, PATTERN, STATUSES

ERRORS = "#/components/responses/"
TAG = "webhooks"

URL = {"type": "string", "minLength": 1, "maxLength": MAX_URL_LENGTH, "description": "http:// or https://"}
TYPES = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_PATTERNS,
    "items": {"type": "string", "pattern": f"^(?:{PATTERN.pattern})$", "maxLength": 210},
    "description": "Which events: * (all), a prefix (task.*) or a type (task.created).",
}
DESCRIPTION = {"type": "string", "maxLength": 500}
CREATE = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": URL,
        "event_types": {**TYPES, "default": ["*"]},
        "description": DESCRIPTION,
        "enabled": {"type": "boolean", "default": True},
    },
}
PATCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"url": URL, "event_types": TYPES, "description": DESCRIPTION, "enabled": {"type": "boolean"}},
}
STAMP = {"type": "string", "format": "date-time"}
MAYBE_STAMP = {"type": ["string", "null"], "format": "date-time"}
WEBHOOK = {
    "type": "object",
    "required": [
        "id",
        "url",
        "event_types",
        "description",
        "enabled",
        "disabled_reason",
        "consecutive_failures",
        "pending_deliveries",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "consecutive_failures": {"type": "integer"},
        "pending_deliveries": {"type": "integer"},
        "next_attempt_at": MAYBE_STAMP,
        "created_at": STAMP,
        "updated_at": STAMP,
    },
}
CREATED = {
    "allOf": [
        {"$ref": "#/components/schemas/Webhook"},
        {
            "type": "object",
            "required": ["secret"],
            "properties": {"secret": {"type": "string", "description": "whsec_...: shown only now."}},
        },
    ]
}
OUTCOME = {"type": "string", "enum": list(OUTCOMES)}
DELIVERY = {
    "type": "object",
    "required": [
        "id",
        "event_id",
        "event_type",
        "occurred_at",
        "message_id",
        "status",
        "attempts",
        "created_at",
        "delivered_at",
        "last_attempt",
    ],
    "properties": {
        "id": {"type": "integer"},
        "event_id": {"type": ["integer", "null"]},
        "event_type": {"type": "string"},
        "occurred_at": STAMP,
        "message_id": {"type": "string", "description": "The webhook-id header: the same on every attempt."},
        "status": {"type": "string", "enum": list(STATUSES)},
        "attempts": {"type": "integer"},
        "created_at": STAMP,
        "delivered_at": MAYBE_STAMP,
        "last_attempt": {
            "type": ["object", "null"],
            "properties": {
                "at": STAMP,
                "status_code": {"type": ["integer", "null"]},
                "outcome": OUTCOME,
                "error": {"type": ["string", "null"]},
                "duration_ms": {"type": ["integer", "null"]},
            },
        },
    },
}
ATTEMPT = {
    "type": "object",
    "required": ["id", "delivery_id", "event_id", "attempt", "started_at", "duration_ms", "status_code", "outcome"],
    "properties": {
        "id": {"type": "integer"},
        "delivery_id": {"type": "integer"},
        "event_id": {"type": ["integer", "null"]},
        "attempt": {"type": "integer"},
        "started_at": STAMP,
        "duration_ms": {"type": "integer"},
        "status_code": {"type": ["integer", "null"]},
        "outcome": OUTCOME,
        "error": {"type": ["string", "null"]},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {400: "BadRequest", 404: "NotFound", 409: "Conflict", 413: "ContentTooLarge", 415: "UnsupportedMediaType"}
    names[422] = "UnprocessableContent"
    return {str(code): {"$ref": ERRORS + names[code]} for code in codes}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_before", "has_more"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_before": {"type": ["integer", "null"], "description": "Pass as before= for older entries."},
            "has_more": {"type": "boolean"},
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


BEFORE = _query("before", {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}, "Only entries with a smaller id.")
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Entries per page.")


def fragment(prefix: str) -> dict[str, Any]:
    item = f"{prefix}/{{webhook_id}}"
    webhook_id = {"name": "webhook_id", "in": "path", "required": True, "schema": {"type": "string"}}
    body = {"required": True, "content": {"application/json": {"schema": _ref("WebhookCreate")}}}
    patch_body = {
        "required": True,
        "content": {
            "application/json": {"schema": _ref("WebhookPatch")},
            "application/merge-patch+json": {"schema": _ref("WebhookPatch")},
        },
    }
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Webhook")}},
    }
    paths = {
        prefix: {
            "get": {
                "operationId": "listWebhooks",
                "tags": [TAG],
                "summary": "Every subscription (never their secrets)",
                "responses": {
                    "200": {"description": "The subscriptions.", "content": _json("WebhookList")},
                    **_errors(400),
                },
            },
            "post": {
                "operationId": "createWebhook",
                "tags": [TAG],
                "summary": "Subscribe a URL to events; the answer shows its signing secret, once",
                "requestBody": body,
                "responses": {
                    "201": {
                        "description": "Created, with its secret.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": _json("WebhookCreated"),
                    },
                    **_errors(400, 409, 413, 415, 422),
                },
            },
        },
        item: {
            "parameters": [webhook_id],
            "get": {
                "operationId": "getWebhook",
                "tags": [TAG],
                "summary": "One subscription (never its secret)",
                "responses": {
                    "200": {"description": "The subscription.", "content": _json("Webhook")},
                    **_errors(400, 404),
                },
            },
            "patch": {
                "operationId": "updateWebhook",
                "tags": [TAG],
                "summary": "Change it; enabled: true resumes a disabled one with its kept deliveries",
                "requestBody": patch_body,
                "responses": {
                    "200": {"description": "The subscription.", "content": _json("Webhook")},
                    **_errors(400, 404, 413, 415, 422),
                },
            },
            "delete": {
                "operationId": "deleteWebhook",
                "tags": [TAG],
                "summary": "Delete it, with its deliveries and their log",
                "responses": {"204": {"description": "Deleted."}, **_errors(400, 404)},
            },
        },
        f"{item}/ping": {
            "parameters": [webhook_id],
            "post": {
                "operationId": "pingWebhook",
                "tags": [TAG],
                "summary": "Queue a webhook.ping for this subscription, delivered like any event",
                "responses": {
                    "202": {"description": "Queued.", "content": _json("WebhookDelivery")},
                    **_errors(400, 404, 409),
                },
            },
        },
        f"{item}/deliveries": {
            "parameters": [webhook_id],
            "get": {
                "operationId": "listWebhookDeliveries",
                "tags": [TAG],
                "summary": "Its deliveries, newest first: status, attempts, the last answer",
                "parameters": [
                    _query("status", {"type": "string", "enum": list(STATUSES)}, "Only deliveries in this state."),
                    BEFORE,
                    LIMIT,
                ],
                "responses": {
                    "200": {"description": "One page.", "content": _json("WebhookDeliveryPage")},
                    **_errors(400, 404),
                },
            },
        },
        f"{item}/attempts": {
            "parameters": [webhook_id],
            "get": {
                "operationId": "listWebhookAttempts",
                "tags": [TAG],
                "summary": "The log of every attempt, newest first: outcome, response code, duration",
                "parameters": [BEFORE, LIMIT],
                "responses": {
                    "200": {"description": "One page.", "content": _json("WebhookAttemptPage")},
                    **_errors(400, 404),
                },
            },
        },
    }
    schemas = {
        "Webhook": WEBHOOK,
        "WebhookCreate": CREATE,
        "WebhookPatch": PATCH,
        "WebhookCreated": CREATED,
        "WebhookList": listing,
        "WebhookDelivery": DELIVERY,
        "WebhookDeliveryPage": _page("WebhookDelivery"),
        "WebhookAttempt": ATTEMPT,
        "WebhookAttemptPage": _page("WebhookAttempt"),
    }
    return {
        "paths": paths,
        "components": {"schemas": schemas},
        "tags": [{"name": TAG, "description": "Signed deliveries of events to your URLs (Standard Webhooks)."}],
    }
