"""taskman: a small Falcon core that finds its features as pluggy plugins."""

from taskman.app import create_app, start, stop
from taskman.asgi_adapters import nonblocking
from taskman.hookspecs import hookimpl, hookspec

__all__ = ["__version__", "create_app", "hookimpl", "hookspec", "nonblocking", "start", "stop"]

__version__ = "0.1.0"
