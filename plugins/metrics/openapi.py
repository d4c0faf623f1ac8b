"""The metrics plugin's OpenAPI fragment (read by the openapi plugin through ``taskman_openapi``)."""

from __future__ import annotations

from typing import Any

TAG = "metrics"


def fragment(path: str) -> dict[str, Any]:
    """``GET <metrics.path>``: the scrape, in either format prometheus-client renders."""
    return {
        "paths": {
            path: {
                "get": {
                    "operationId": "metrics_scrape",
                    "tags": [TAG],
                    "summary": "Prometheus scrape",
                    "description": (
                        "Every metric of every worker process. The Prometheus text format "
                        "(`text/plain; version=...`), or OpenMetrics when the `Accept` header asks for "
                        "`application/openmetrics-text`."
                    ),
                    "responses": {
                        "200": {
                            "description": "The metrics.",
                            "headers": {
                                "Cache-Control": {
                                    "description": "`no-store`",
                                    "required": True,
                                    "schema": {"type": "string", "const": "no-store"},
                                }
                            },
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        }
                    },
                }
            }
        },
        "tags": [{"name": TAG, "description": "Prometheus metrics."}],
    }
