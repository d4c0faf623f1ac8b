"""The hook the auth plugin adds: every route declares the access it needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from taskman import hookspec

if TYPE_CHECKING:
    from taskman import Config, Runtime

#: One route's rule: a rule name for every method, or ``{METHOD: rule}``.
#: Rules: ``public``, ``optional`` (a token is checked when sent, never required),
#: ``read``, ``write``, ``admin``, ``by-method`` (reads need read, writes need
#: write) and ``metrics`` (``auth.metrics_access`` decides: open or read).
AccessDeclaration = str | Mapping[str, str]


@hookspec
def taskman_access(runtime: Runtime, config: Config) -> Mapping[str, AccessDeclaration] | None:
    """Return ``{uri_template: rule}`` for the routes this plugin adds (see docs/auth.md)."""
