"""The thin Falcon layer: the document, the reference page, its assets, and what the app routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

import taskman
from taskman import nonblocking

from .assets import CONTENT_SECURITY_POLICY, Assets

#: The document and the page may change with a deploy: revalidate every time (cheap, thanks to the ETag).
REVALIDATE = "no-cache"
#: Assets change only with the Swagger UI distribution: a day, then revalidate by ETag.
ASSET_CACHE = "public, max-age=86400"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as RFC 9110 asks for GET)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _send(req: Any, resp: Any, body: bytes, content_type: str, etag: str, cache_control: str) -> None:
    resp.etag = etag
    resp.cache_control = [cache_control]
    resp.set_header("X-Content-Type-Options", "nosniff")
    if etag_matches(req.get_header("If-None-Match"), etag):
        resp.status = falcon.HTTP_304
        return
    resp.content_type = content_type
    resp.data = body


class DocumentResource:
    """``GET /api/openapi.json``: the merged document (built once per app)."""

    def __init__(self, document: Callable[[Any], tuple[bytes, str]]) -> None:
        self.document = document

    @nonblocking
    def on_get(self, req: Any, resp: Any) -> None:
        body, etag = self.document(req.taskman)
        _send(req, resp, body, falcon.MEDIA_JSON, etag, REVALIDATE)


class DocsResource:
    """``GET /api/docs``: the interactive reference page; scripts from this origin only."""

    def __init__(self, page: bytes, etag: str) -> None:
        self.page = page
        self.etag = etag

    @nonblocking
    def on_get(self, req: Any, resp: Any) -> None:
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        _send(req, resp, self.page, falcon.MEDIA_HTML, self.etag, REVALIDATE)


class AssetResource:
    """``GET /api/docs/assets/{name}``: one of the page's whitelisted files, else 404.

    Plain sync: the first request for a file reads it from disk.
    """

    def __init__(self, assets: Assets) -> None:
        self.assets = assets

    def on_get(self, req: Any, resp: Any, name: str) -> None:
        asset = self.assets.get(name)
        if asset is None:
            raise falcon.HTTPNotFound()
        _send(req, resp, asset.body, asset.content_type, asset.etag, ASSET_CACHE)


def routed_methods(app: Any) -> dict[str, set[str]]:
    """``{uri_template: {"GET", ...}}``: the methods each route's responders answer.

    Falcon's own responders (``OPTIONS`` on every route, 405 for the rest)
    are left out: OpenAPI does not describe them per path; so is the HEAD
    the core adds wherever GET is (it is that GET without the body).
    """
    routed = {}
    for path, answered in taskman.routed_methods(app).items():
        methods = set(answered)
        if "GET" in methods:
            methods.discard("HEAD")
        routed[path] = methods
    return routed
