"""The interactive reference page and its assets, all served by the app itself (no CDN).

Swagger UI's files come from the ``swagger-ui-py`` distribution (its
``swagger_ui/static`` folder, found without importing the package, which
would pull in Jinja2 and PyYAML for nothing).  Only the files the page
uses are served, from a fixed list; the page and its start-up script are
ours.  Plain Python: nothing here knows Falcon.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import threading
from pathlib import Path

import attrs

#: The distribution that ships Swagger UI's files, for error messages.
DISTRIBUTION = "swagger-ui-py"

DOCS_PATH = "/api/docs"
ASSETS_PATH = "/api/docs/assets"

#: Our own start-up script: in a file, not inline, so the page's CSP can forbid inline scripts.
#: ``openapi.json`` is relative to ``/api/docs``, so the page works under a path prefix too.
INIT_SCRIPT = b"""\
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
_PNG = "image/png"

#: Served name -> (content type, file in Swagger UI's folder, or None for our own script).
ASSETS: dict[str, tuple[str, str | None]] = {
    "swagger-ui.css": (_CSS, "swagger-ui.css"),
    "swagger-ui-bundle.js": (_JS, "swagger-ui-bundle.js"),
    "favicon-32x32.png": (_PNG, "favicon-32x32.png"),
    "favicon-16x16.png": (_PNG, "favicon-16x16.png"),
    "init.js": (_JS, None),
}

#: For the page itself: only this origin's scripts; Swagger UI sets inline styles and data: images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class AssetsMissingError(RuntimeError):
    """Swagger UI's files are not installed."""


def swagger_ui_folder() -> Path:
    """The folder holding Swagger UI's files, or :class:`AssetsMissingError` naming what to install."""
    spec = importlib.util.find_spec("swagger_ui")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        folder = Path(location) / "static"
        missing = [f for _, f in ASSETS.values() if f is not None and not (folder / f).is_file()]
        if not missing:
            return folder
    raise AssetsMissingError(
        f"Swagger UI's files were not found: install {DISTRIBUTION}, or set openapi.docs = false "
        "(APP_OPENAPI__DOCS=false) to serve the document without the reference page"
    )


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: str


class Assets:
    """The whitelisted assets, read once on first use and kept in memory (about 2 MB)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._cache: dict[str, Asset] = {}

    def get(self, name: str) -> Asset | None:
        """The asset served as ``name``, or None if it is not on the list."""
        entry = ASSETS.get(name)
        if entry is None:
            return None
        with self._lock:
            asset = self._cache.get(name)
            if asset is None:
                content_type, filename = entry
                body = INIT_SCRIPT if filename is None else (self.folder / filename).read_bytes()
                asset = Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
                self._cache[name] = asset
            return asset


def asset_url(name: str) -> str:
    """An asset's URL relative to the page (``/api/docs``): ``docs/assets/<name>``."""
    return f"docs/assets/{name}"


def docs_page(title: str) -> bytes:
    """The reference page: Swagger UI, its files and its start-up script, every URL relative to the page."""
    text = f"""\
<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{html.escape(title)} - API reference</title>
    <link rel="stylesheet" href="{asset_url("swagger-ui.css")}">
    <link rel="icon" type="image/png" href="{asset_url("favicon-32x32.png")}" sizes="32x32">
    <link rel="icon" type="image/png" href="{asset_url("favicon-16x16.png")}" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{asset_url("swagger-ui-bundle.js")}" charset="utf-8"></script>
    <script src="{asset_url("init.js")}" charset="utf-8"></script>
  </body>
</html>
"""
    return text.encode()
