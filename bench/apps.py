"""The apps the bench servers load, chosen by environment variables that :mod:`bench.serve` sets.

``BENCH_APP`` names a factory in :data:`FACTORIES` or any ``module:function``
taking ``asgi: bool``; ``BENCH_PLUGINS`` lists extra taskman plugin objects
as ``module:attribute`` or bare modules, comma-separated.  The raw-driver
floor of the database cases is the ``rawdb`` factory (:mod:`bench.rawdb`):
cases stay data.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi

APP_ENV = "BENCH_APP"
PLUGINS_ENV = "BENCH_PLUGINS"

#: The bare app answers on both paths the taskman cases use, so every case can hit the same path as its floor.
BARE_PATHS = ("/alive", "/health/live")


class BareAlive:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "alive"}


class BareAliveAsync:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "alive"}


def bare(asgi: bool) -> Any:
    """Case 1, the floor: Falcon alone, as a Falcon user would write it for each flavour."""
    app: Any = falcon.asgi.App() if asgi else falcon.App()
    resource = BareAliveAsync() if asgi else BareAlive()
    for path in BARE_PATHS:
        app.add_route(path, resource)
    return app


def load_object(spec: str) -> Any:
    """``package.module:attribute`` -> that attribute; ``package.module`` -> the module."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def extra_plugins() -> list[object]:
    return [load_object(spec) for spec in os.environ.get(PLUGINS_ENV, "").split(",") if spec.strip()]


def taskman_app(asgi: bool) -> Any:
    """Cases 2-4: ``taskman.create_app`` with the discovered plugins (minus the disabled) and the extra ones.

    Under WSGI start-up runs now, in the worker, as ``taskman.wsgi`` does.
    """
    import taskman

    app = taskman.create_app(asgi=asgi, plugins=extra_plugins())
    if not asgi:
        taskman.start(app)
    return app


def rawdb_app(asgi: bool) -> Any:
    """Case 6, the floor for database endpoints: :mod:`bench.rawdb` (imported here only when served)."""
    from bench import rawdb

    return rawdb.app(asgi)


FACTORIES: dict[str, Callable[[bool], Any]] = {"bare": bare, "taskman": taskman_app, "rawdb": rawdb_app}


def factory(name: str) -> Callable[[bool], Any]:
    found = FACTORIES.get(name)
    if found is not None:
        return found
    loaded = load_object(name)
    if not callable(loaded):
        raise ValueError(f"{APP_ENV}={name!r} is neither a known factory ({', '.join(FACTORIES)}) nor a callable")
    return loaded  # type: ignore[no-any-return]


def from_env(asgi: bool) -> Any:
    return factory(os.environ.get(APP_ENV, "bare"))(asgi)


def asgi_app() -> Any:
    """uvicorn's ``--factory`` entry."""
    return from_env(True)


def wsgi_app() -> Any:
    return from_env(False)
