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

from typing import Any

from structlog.typing import Processor

from taskman import hookimpl
from taskman.config import plugin_settings
from taskman.plugins import PluginError, Plugins

from . import hookspecs as taskman_hookspecs
from .middleware import AccessLogMiddleware
from .pipeline import configure_logging, contributed
from .settings import LoggingSettings

SECTION = "logging"

__all__ = ["SECTION", "LoggingSettings", "log_processors", "taskman_hookspecs"]


def settings_of(config: Any) -> LoggingSettings:
    return plugin_settings(config, SECTION, LoggingSettings)


def log_processors(plugins: Plugins, config: Any) -> list[Processor]:
    """Every processor the enabled plugins contribute through ``taskman_log_processors``, in hook order."""

    def fail(plugin: str, reason: str) -> Exception:
        return PluginError(plugin, plugins.distribution_of(plugin), reason, "taskman_log_processors")

    return contributed(plugins.call_each("taskman_log_processors", config=config), fail)


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return SECTION, LoggingSettings


@hookimpl
def taskman_configure(config: Any, plugins: Plugins) -> None:
    settings = settings_of(config)
    configure_logging(
        format=settings.resolved_format(config.environment),
        level=settings.level_number,
        static={"app_name": config.app_name, "environment": config.environment},
        processors=log_processors(plugins, config),
    )


@hookimpl(tryfirst=True)
def taskman_middleware(config: Any) -> list[object]:
    return [AccessLogMiddleware()]
