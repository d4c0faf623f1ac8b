"""The hooks the openapi plugin adds: ``taskman_openapi`` and ``taskman_openapi_amend``; see docs/openapi.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskman import hookspec

if TYPE_CHECKING:
    from taskman import Config, Runtime

    from .document import OpenApiDocument


@hookspec
def taskman_openapi(runtime: Runtime, config: Config) -> Mapping[str, Any] | None:
    """Return an OpenAPI fragment: ``paths``, and optionally ``components`` (schemas, responses, ...) and ``tags``."""


@hookspec
def taskman_openapi_amend(runtime: Runtime, config: Config, plugins: Any, document: OpenApiDocument) -> None:
    """Amend the merged document in place through its helpers: what a plugin adds to others' operations."""
