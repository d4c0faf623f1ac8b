"""The hook the logging plugin adds (exposed as its ``taskman_hookspecs`` attribute)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from structlog.typing import Processor

from taskman import hookspec

if TYPE_CHECKING:
    from taskman import Config, Runtime


@hookspec
def taskman_log_processors(runtime: Runtime, config: Config) -> Sequence[Processor] | None:
    """Return structlog processors to run on every log event, after the standard fields and before rendering."""
