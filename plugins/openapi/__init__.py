"""openapi: ``GET /api/openapi.json`` (OpenAPI 3.1, every enabled plugin's routes) and ``GET /api/docs``.

Plugins document their routes with the ``taskman_openapi(config)`` hook
(:mod:`.hookspecs`), and what they add to every route (security, errors)
with ``taskman_openapi_amend(config, plugins, document)``; :mod:`.document` merges the fragments (plain Python),
adds the shared problem+json components (:mod:`.components`) and the error
responses the core can produce; :mod:`.resources` is the Falcon glue and
:mod:`.assets` serves Swagger UI's files from the app itself.  See
docs/openapi.md.

The document is built in ``taskman_configure``, where the plugin set is
known, so a conflict between two plugins stops start-up; ``taskman_routes``
runs with the config alone and finds it there.  Commands that build routes
without configuring (``taskman routes``, ``taskman check``) get resources
that build it from the app's runtime on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from typing import Any

import attrs

import taskman
from taskman import hookimpl
from taskman.config import plugin_settings

from . import hookspecs, paths
from .assets import ASSETS_PATH, DOCS_PATH, Assets, docs_page, swagger_ui_folder
from .components import shared_components
from .document import OpenApiContributionError, build_document, undocumented
from .resources import AssetResource, DocsResource, DocumentResource, routed_methods
from .settings import OpenApiSettings

__all__ = ["OpenApiContributionError", "OpenApiSettings", "build_document", "document_of", "shared_components"]

SECTION = "openapi"

#: The hook this plugin adds (registered by the core when it loads the plugin).
taskman_hookspecs = hookspecs

log = logging.getLogger("taskman.openapi")


def settings_of(config: Any) -> OpenApiSettings:
    return plugin_settings(config, SECTION, OpenApiSettings)


def compose(config: Any, plugins: Any) -> dict[str, Any]:
    """The merged document of every enabled plugin's ``taskman_openapi`` fragment."""
    settings = settings_of(config)
    contributions = plugins.call_each("taskman_openapi", config=config)
    document = build_document(
        contributions,
        title=settings.title or config.app_name,
        version=settings.version or taskman.__version__,
        description=settings.description,
        servers=settings.servers,
    )
    plugins.call_each("taskman_openapi_amend", config=config, plugins=plugins, document=document)
    return document


@attrs.define(eq=False)
class _Built:
    document: dict[str, Any]
    body: bytes
    etag: str


class DocumentSource:
    """One app's document: built by ``taskman_configure``, or from the runtime on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: _Built | None = None

    def build(self, config: Any, plugins: Any) -> _Built:
        document = compose(config, plugins)
        body = json.dumps(document, separators=(",", ":")).encode()
        built = _Built(document, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        with self._lock:
            self._built = built
        return built

    def get(self, runtime: Any) -> _Built:
        with self._lock:
            built = self._built
        return built if built is not None else self.build(runtime.config, runtime.plugins)

    def served(self, runtime: Any) -> tuple[bytes, str]:
        built = self.get(runtime)
        return built.body, built.etag


# One source per config (every hook receives it); an entry goes when its config is garbage collected.
_sources: dict[int, DocumentSource] = {}


def _source_for(config: Any) -> DocumentSource:
    source = _sources.get(id(config))
    if source is None:
        source = _sources[id(config)] = DocumentSource()
        weakref.finalize(config, _sources.pop, id(config), None)
    return source


def document_of(app: Any) -> dict[str, Any]:
    """The OpenAPI document ``app`` serves (built now if it was not yet)."""
    return _source_for(app.taskman.config).get(app.taskman).document


# -- hooks --------------------------------------------------------------------


@hookimpl
def taskman_settings() -> tuple[str, type]:
    return (SECTION, OpenApiSettings)


@hookimpl
def taskman_configure(config: Any, plugins: Any) -> None:
    _source_for(config).build(config, plugins)


@hookimpl
def taskman_routes(config: Any) -> list[tuple[str, object]]:
    source = _source_for(config)
    routes: list[tuple[str, object]] = [(paths.DOCUMENT_PATH, DocumentResource(source.served))]
    if settings_of(config).docs:
        page = docs_page(settings_of(config).title or config.app_name)
        routes += [
            (DOCS_PATH, DocsResource(page, f'"{hashlib.sha256(page).hexdigest()[:32]}"')),
            (ASSETS_PATH + "/{name}", AssetResource(Assets(swagger_ui_folder()))),
        ]
    return routes


@hookimpl
def taskman_access(config: Any) -> dict[str, str]:
    """For the auth plugin: the document and the docs page describe the API; anyone may read them."""
    return {paths.DOCUMENT_PATH: "public", DOCS_PATH: "public", ASSETS_PATH + "/{name}": "public"}


@hookimpl
def taskman_openapi(config: Any) -> dict[str, Any]:
    return paths.fragment(docs=settings_of(config).docs)


@hookimpl
def taskman_startup(app: Any, config: Any) -> None:
    """Warn about routes no plugin documents: they are missing from the document and the reference."""
    missing = undocumented(document_of(app), routed_methods(app))
    if missing:
        log.warning("openapi_undocumented_routes", extra={"routes": missing})
