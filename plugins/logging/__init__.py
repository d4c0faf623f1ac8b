"""logging: structlog for the whole process, one access line per request.

* ``taskman_configure`` sets up structlog and the stdlib root logger once per
  process (again only when the settings change): JSON lines, or a coloured
  console in development.  stdlib records (the core's ``taskman.errors``,
  falcon, uvicorn, gunicorn) go through the same processors.
* ``taskman_middleware`` adds the outermost middleware, which writes one
  ``request_completed`` line per request and clears the log context after it.
* Plugins add processors through ``taskman_log_processors(config)``, the hook
  this plugin adds (see ``docs/logging.md``).

The work is done in :mod:`.pipeline` (plain Python) and :mod:`.middleware`.
"""

from __future__ import annotations

from structlog.typing import Processor

import taskman
from taskman import hookimpl, staged

from . import hookspecs as taskman_hookspecs
from .middleware import AccessLogMiddleware
from .pipeline import configure_logging, contributed
from .settings import LoggingSettings

__all__ = ["LoggingSettings", "log_processors", "taskman_hookspecs"]

HOOK = "taskman_log_processors"


def log_processors(runtime: taskman.Runtime) -> list[Processor]:
    """Every processor the enabled plugins contribute through ``taskman_log_processors``, each isolated."""
    plugins = runtime.plugins

    def fail(plugin: str, reason: str) -> Exception:
        return plugins.error(plugin, reason, HOOK)

    def report(plugin: str, error: BaseException) -> None:
        runtime.report_failure(plugin, HOOK, error)

    return contributed(plugins.call_each(HOOK, config=runtime.config), fail, report)


@hookimpl
def taskman_settings() -> type:
    return LoggingSettings


@hookimpl
def taskman_configure(runtime: taskman.Runtime) -> None:
    config = runtime.config
    settings = runtime.settings(LoggingSettings)
    configure_logging(
        format=settings.resolved_format(config.environment),
        level=settings.level_number,
        static={"app_name": config.app_name, "environment": config.environment},
        processors=log_processors(runtime),
    )


@hookimpl
def taskman_middleware() -> list[object]:
    # An observer right after request_id: its one line per request has the id and the response as sent.
    return [staged(AccessLogMiddleware(), "observe", after=("request_id",))]
