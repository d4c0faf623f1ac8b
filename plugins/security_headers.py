"""security_headers: browser-hardening headers on every response, errors included, and no-store when authenticated.

:class:`SecurityHeaders` is the plain part: from the settings it works out,
once, the headers for API responses and those for the API reference page
(whose Swagger UI needs scripts, styles and images from this origin), and
says which applies to a path.  The middleware adds each header the
responder did not set itself, and turns ``Cache-Control`` into
``no-store`` on authenticated responses.  See docs/security_headers.md.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs import validators as v

from taskman import hookimpl, setting, settings_section, staged

#: API responses are data, never documents: they may load nothing and be framed by no one.
API_CSP = "default-src 'none'; frame-ancestors 'none'"

#: The reference page (openapi plugin): Swagger UI's bundle and our start-up script are files on this origin
#: (no inline script); it sets inline styles, draws data: images and fetches the document and "Try it out" calls.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)

#: What the HSTS preload list asks for (https://hstspreload.org).
PRELOAD_MIN_AGE = 31_536_000
MAX_HSTS_AGE = 2 * PRELOAD_MIN_AGE

NO_STORE = "no-store"

# Printable ASCII and spaces only: a newline would let a value inject headers.
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def _header_value(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value) or value != value.strip():
        raise ValueError(f"'{attribute.name}' must be printable ASCII without surrounding spaces: {value!r}")


def _path_prefix(instance: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not isinstance(value, str) or (value and (not value.startswith("/") or value.endswith("/") or "*" in value)):
        raise ValueError(f"'{attribute.name}' must be empty or a path like /api/docs (no trailing '/'): {value!r}")


@settings_section("security_headers")
@attrs.frozen
class SecurityHeadersSettings:
    """Each header's value (empty: not sent), HSTS, and no-store for authenticated responses."""

    content_type_options: str = setting("nosniff", "X-Content-Type-Options", _header_value)
    frame_options: str = setting("DENY", "X-Frame-Options", _header_value)
    referrer_policy: str = setting("no-referrer", "Referrer-Policy", _header_value)
    content_security_policy: str = setting(
        API_CSP, "Content-Security-Policy of every response outside docs_path", _header_value
    )
    docs_content_security_policy: str = setting(
        DOCS_CSP, "Content-Security-Policy of responses under docs_path (Swagger UI)", _header_value
    )
    docs_path: str = setting(
        "/api/docs", "path prefix of the API reference page and its assets; empty: none", _path_prefix
    )
    hsts_max_age: int = setting(
        0,
        f"Strict-Transport-Security max-age in seconds; 0: not sent (0-{MAX_HSTS_AGE})",
        [v.instance_of(int), v.ge(0), v.le(MAX_HSTS_AGE)],
    )
    hsts_include_subdomains: bool = setting(
        True, "add includeSubDomains to Strict-Transport-Security", v.instance_of(bool)
    )
    hsts_preload: bool = setting(
        False,
        f"add preload to Strict-Transport-Security (needs includeSubDomains and max-age >= {PRELOAD_MIN_AGE})",
        v.instance_of(bool),
    )
    no_store_authenticated: bool = setting(
        True, "Cache-Control: no-store on every authenticated response", v.instance_of(bool)
    )

    def __attrs_post_init__(self) -> None:
        if self.hsts_preload and not (self.hsts_include_subdomains and self.hsts_max_age >= PRELOAD_MIN_AGE):
            raise ValueError(
                f"hsts_preload needs hsts_include_subdomains and hsts_max_age >= {PRELOAD_MIN_AGE}: "
                "browsers' preload lists refuse anything less"
            )


Headers = tuple[tuple[str, str], ...]


def strict_transport_security(max_age: int, include_subdomains: bool, preload: bool) -> str | None:
    """The ``Strict-Transport-Security`` value, or None when ``max_age`` is 0 (HSTS off)."""
    if max_age <= 0:
        return None
    value = f"max-age={max_age}"
    if include_subdomains:
        value += "; includeSubDomains"
    if preload:
        value += "; preload"
    return value


class SecurityHeaders:
    """The headers each response gets, worked out once from the settings."""

    def __init__(self, settings: SecurityHeadersSettings) -> None:
        hsts = strict_transport_security(settings.hsts_max_age, settings.hsts_include_subdomains, settings.hsts_preload)
        common = [
            ("X-Content-Type-Options", settings.content_type_options),
            ("X-Frame-Options", settings.frame_options),
            ("Referrer-Policy", settings.referrer_policy),
            ("Strict-Transport-Security", hsts or ""),
        ]
        self.api: Headers = _present([*common, ("Content-Security-Policy", settings.content_security_policy)])
        self.docs: Headers = _present([*common, ("Content-Security-Policy", settings.docs_content_security_policy)])
        self.docs_path = settings.docs_path
        self._docs_subtree = settings.docs_path + "/"
        self.no_store_authenticated = settings.no_store_authenticated

    def for_path(self, path: str) -> Headers:
        """The docs headers for the docs page and everything under it, else the API headers."""
        docs = self.docs_path
        if docs and (path == docs or path.startswith(self._docs_subtree)):
            return self.docs
        return self.api

    def cache_control(self, authenticated: bool) -> str | None:
        """The ``Cache-Control`` to force, if any: authenticated responses are no one's to store."""
        return NO_STORE if authenticated and self.no_store_authenticated else None


def _present(headers: list[tuple[str, str]]) -> Headers:
    return tuple((name, value) for name, value in headers if value)


# -- Falcon glue --------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Add the headers a responder did not set; ``no-store`` on authenticated responses, whatever was set."""

    def __init__(self, headers: SecurityHeaders) -> None:
        self.headers = headers

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        for name, value in self.headers.for_path(req.path):
            if resp.get_header(name) is None:
                resp.set_header(name, value)
        cache_control = self.headers.cache_control(getattr(req.context, "auth", None) is not None)
        if cache_control is not None:
            resp.set_header("Cache-Control", cache_control)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)


def settings_of(config: Any) -> SecurityHeadersSettings:
    return config.settings(SecurityHeadersSettings)  # type: ignore[no-any-return]


@hookimpl
def taskman_settings() -> type:
    return SecurityHeadersSettings


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    return [staged(SecurityHeadersMiddleware(SecurityHeaders(settings_of(config))), "shape")]
