"""This plugin's own fragment: the document, the reference page and its assets."""

from __future__ import annotations

from typing import Any

from .assets import ASSETS, ASSETS_PATH, DOCS_PATH

DOCUMENT_PATH = "/api/openapi.json"
TAG = "openapi"

_STRING = {"type": "string"}


def _headers(cache_control: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "ETag": {"description": "Send it back in `If-None-Match` to get a 304.", "required": True, "schema": _STRING},
        "Cache-Control": {
            "description": cache_control,
            "required": True,
            "schema": _STRING,
        },
        **(extra or {}),
    }


_NOT_MODIFIED = {"description": "Not modified: `If-None-Match` named the current ETag."}


def fragment(docs: bool) -> dict[str, Any]:
    """``paths`` and ``tags`` for ``/api/openapi.json`` and, when ``docs``, the reference page and its assets."""
    paths: dict[str, Any] = {
        DOCUMENT_PATH: {
            "get": {
                "operationId": "openapi_document",
                "tags": [TAG],
                "summary": "This OpenAPI document",
                "description": "Every route of every enabled plugin, merged from their `taskman_openapi` fragments.",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "headers": _headers("`no-cache`: revalidate with the ETag."),
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["openapi", "info", "paths"],
                                    "properties": {
                                        "openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"},
                                        "info": {"type": "object"},
                                        "paths": {"type": "object"},
                                    },
                                }
                            }
                        },
                    },
                    "304": _NOT_MODIFIED,
                },
            }
        }
    }
    if docs:
        paths[DOCS_PATH] = {
            "get": {
                "operationId": "openapi_docs_page",
                "tags": [TAG],
                "summary": "Interactive API reference",
                "description": "Swagger UI, served with its files by the app itself (no CDN).",
                "responses": {
                    "200": {
                        "description": "The reference page.",
                        "headers": _headers(
                            "`no-cache`: revalidate with the ETag.",
                            {
                                "Content-Security-Policy": {
                                    "description": "Scripts from this origin only.",
                                    "required": True,
                                    "schema": _STRING,
                                }
                            },
                        ),
                        "content": {"text/html": {"schema": _STRING}},
                    },
                    "304": _NOT_MODIFIED,
                },
            }
        }
        paths[ASSETS_PATH + "/{name}"] = {
            "get": {
                "operationId": "openapi_docs_asset",
                "tags": [TAG],
                "summary": "A file of the reference page",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "One of the page's files; any other name is a 404.",
                        "schema": {"type": "string", "enum": sorted(ASSETS)},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "headers": _headers("`public, max-age=86400`, then revalidate with the ETag."),
                        "content": {
                            "text/css": {"schema": _STRING},
                            "text/javascript": {"schema": _STRING},
                            "image/png": {},
                        },
                    },
                    "304": _NOT_MODIFIED,
                },
            }
        }
    return {
        "paths": paths,
        "tags": [{"name": TAG, "description": "This document and the interactive reference."}],
    }
