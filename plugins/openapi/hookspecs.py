"""The hooks the openapi plugin adds: ``taskman_openapi`` and ``taskman_openapi_amend``; see docs/openapi.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskman import hookspec

if TYPE_CHECKING:
    from taskman.config import Config


@hookspec
def taskman_openapi(config: Config) -> Mapping[str, Any] | None:
    """Return an OpenAPI fragment: ``paths``, and optionally ``components`` (schemas, responses, ...) and ``tags``."""


@hookspec
def taskman_openapi_amend(config: Config, plugins: Any, document: dict[str, Any]) -> None:
    """Change the merged document in place: what a plugin adds to other plugins' operations (security, errors)."""
