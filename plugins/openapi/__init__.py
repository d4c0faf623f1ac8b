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
from typing import Any

import attrs

import taskman
from taskman import hookimpl

from . import hookspecs, paths
from .assets import ASSETS_PATH, DOCS_PATH, Assets, docs_page, swagger_ui_folder
from .components import shared_components
from .document import OpenApiContributionError, OpenApiDocument, build_document, undocumented
from .resources import AssetResource, DocsResource, DocumentResource, routed_methods
from .settings import OpenApiSettings

__all__ = [
    "OpenApiContributionError",
    "OpenApiDocument",
    "OpenApiSettings",
    "build_document",
    "document_of",
    "shared_components",
]

#: The hooks this plugin adds (registered by the core when it loads the plugin).
taskman_hookspecs = hookspecs

log = logging.getLogger("taskman.openapi")


def compose(runtime: taskman.Runtime) -> OpenApiDocument:
    """The merged document of every enabled plugin's ``taskman_openapi`` fragment, amended."""
    config = runtime.config
    settings = runtime.settings(OpenApiSettings)
    contributions = runtime.plugins.call_each("taskman_openapi", config=config)
    document = OpenApiDocument(
        build_document(
            contributions,
            title=settings.title or config.app_name,
            version=settings.version or taskman.__version__,
            description=settings.description,
            servers=settings.servers,
        )
    )
    runtime.plugins.call_each("taskman_openapi_amend", config=config, plugins=runtime.plugins, document=document)
    return document


@attrs.define(eq=False)
class _Built:
    document: dict[str, Any]
    body: bytes
    etag: str


class DocumentSource:
    """One app's document, built once its plugin set is configured."""

    def __init__(self, runtime: taskman.Runtime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._built: _Built | None = None

    def build(self) -> _Built:
        document = compose(self._runtime)
        body = json.dumps(document, separators=(",", ":")).encode()
        built = _Built(document, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        with self._lock:
            self._built = built
        return built

    def get(self) -> _Built:
        with self._lock:
            built = self._built
        return built if built is not None else self.build()

    def served(self, runtime: Any) -> tuple[bytes, str]:
        built = self.get()
        return built.body, built.etag


def _source(runtime: taskman.Runtime) -> DocumentSource:
    return runtime.component(DocumentSource, lambda: DocumentSource(runtime))


def document_of(app: Any) -> dict[str, Any]:
    """The OpenAPI document ``app`` serves (built now if it was not yet)."""
    return _source(app.taskman).get().document


# -- hooks --------------------------------------------------------------------


@hookimpl
def taskman_settings() -> type:
    return OpenApiSettings


@hookimpl
def taskman_validate(runtime: taskman.Runtime) -> None:
    """Build the document once the app is: a conflict between two plugins stops start-up and fails a check."""
    _source(runtime).build()


@hookimpl
def taskman_routes(runtime: taskman.Runtime) -> list[tuple[str, object]]:
    source = _source(runtime)
    settings = runtime.settings(OpenApiSettings)
    routes: list[tuple[str, object]] = [(paths.DOCUMENT_PATH, DocumentResource(source.served))]
    if settings.docs:
        page = docs_page(settings.title or runtime.config.app_name)
        routes += [
            (DOCS_PATH, DocsResource(page, f'"{hashlib.sha256(page).hexdigest()[:32]}"')),
            (ASSETS_PATH + "/{name}", AssetResource(Assets(swagger_ui_folder()))),
        ]
    return routes


@hookimpl
def taskman_access(runtime: taskman.Runtime) -> dict[str, str]:
    """For the auth plugin: the document and the docs page describe the API; anyone may read them."""
    if not runtime.settings(OpenApiSettings).docs:
        return {paths.DOCUMENT_PATH: "public"}
    return {paths.DOCUMENT_PATH: "public", DOCS_PATH: "public", ASSETS_PATH + "/{name}": "public"}


@hookimpl
def taskman_openapi(runtime: taskman.Runtime) -> dict[str, Any]:
    return paths.fragment(docs=runtime.settings(OpenApiSettings).docs)


@hookimpl
def taskman_startup(runtime: taskman.Runtime, app: Any) -> None:
    """Warn about routes no plugin documents: they are missing from the document and the reference."""
    missing = undocumented(document_of(app), routed_methods(app))
    if missing:
        log.warning("openapi_undocumented_routes", extra={"routes": missing})
