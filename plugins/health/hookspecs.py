"""The hook the health plugin adds: ``taskman_health_checks``; documented in docs/health.md."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from taskman import hookspec

if TYPE_CHECKING:
    from taskman import Config, Runtime

    from .core import CheckFunc


@hookspec
def taskman_health_checks(
    runtime: Runtime, config: Config
) -> Mapping[str, CheckFunc] | Iterable[tuple[str, CheckFunc]] | None:
    """Return named readiness checks, ``{name: check}`` or ``[(name, check)]``; a check raises when it fails."""
