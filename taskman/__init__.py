"""taskman: a small Falcon core that finds its features as pluggy plugins.

This module is the plugin API: everything a plugin needs is exported here,
and plugins import nothing else of ``taskman`` (an import-linter contract
enforces it).  The submodules are the core's internals.
"""

from taskman.app import create_app, routed_methods, start, stop
from taskman.asgi_adapters import nonblocking
from taskman.background import Wakeup
from taskman.cli import pass_runtime
from taskman.config import Config, ConfigError, load_config, redact, setting, settings_section
from taskman.db import UNAVAILABLE_ERRORS, database, ping, release_connection
from taskman.errors import PROBLEM_CONTENT_TYPE, ValidationProblem
from taskman.headers import split_header_list, with_vary
from taskman.hookspecs import ResponderWrapper, Route, hookimpl, hookspec
from taskman.pipeline import STAGES, staged
from taskman.plugins import PluginError
from taskman.runtime import Runtime, StartupError

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "STAGES",
    "UNAVAILABLE_ERRORS",
    "Config",
    "ConfigError",
    "PluginError",
    "ResponderWrapper",
    "Route",
    "Runtime",
    "StartupError",
    "ValidationProblem",
    "Wakeup",
    "__version__",
    "create_app",
    "database",
    "hookimpl",
    "hookspec",
    "load_config",
    "nonblocking",
    "pass_runtime",
    "ping",
    "redact",
    "release_connection",
    "routed_methods",
    "setting",
    "settings_section",
    "split_header_list",
    "staged",
    "start",
    "stop",
    "with_vary",
]

__version__ = "0.1.0"
