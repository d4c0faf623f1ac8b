"""cors: answer cross-origin requests and preflights for the configured origins (falcon.CORSMiddleware, extended).

Falcon's own :class:`falcon.CORSMiddleware` (it serves WSGI and ASGI) does
the origin check, ``Access-Control-Allow-Origin``/``-Credentials`` and
``-Expose-Headers``.  It answers a preflight with every method the route
has, echoes whatever headers the browser asks for and a fixed day-long
``Max-Age``; :class:`CorsMiddleware` narrows those to the configured
methods, headers and max age, and adds ``Vary: Origin``.  No origins
configured (the default): no middleware at all.  See docs/cors.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import falcon

from taskman import hookimpl, setting, settings_section, split_header_list, staged, with_vary

WILDCARD = "*"

DEFAULT_METHODS = ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS")
DEFAULT_HEADERS = ("Authorization", "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key", "X-Request-ID")
DEFAULT_EXPOSED = (
    "X-Request-ID",
    "ETag",
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)

#: What a preflight answer adds to the origin check; all dropped when none of the route's methods is allowed.
PREFLIGHT_HEADERS = ("Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age")

#: Browsers cap the preflight cache themselves (Firefox at a day, Chromium at two hours).
MAX_MAX_AGE = 86400

# Browsers send the origin serialized: lower-case scheme and host, no path, no trailing slash.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[a-z0-9.\-\[\]:]+")
_METHOD = re.compile(r"[A-Z]+")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'+.^_`|~-]+")


def _check_origins(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    if WILDCARD in value and len(value) > 1:
        raise ValueError(f"'{attribute.name}': '*' allows every origin and must be the only entry: {list(value)!r}")
    for origin in value:
        if origin != WILDCARD and not (isinstance(origin, str) and _ORIGIN.fullmatch(origin)):
            raise ValueError(
                f"'{attribute.name}' entries must be origins as browsers send them, scheme://host[:port] in lower "
                f"case without a path or trailing slash (https://app.example.com), or '*': {origin!r}"
            )


def _check_tokens(pattern: re.Pattern[str], what: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
        for item in value:
            if not (isinstance(item, str) and pattern.fullmatch(item)):
                raise ValueError(f"'{attribute.name}' entries must be {what}: {item!r}")

    return check


@settings_section("cors")
@attrs.frozen
class CorsSettings:
    """Which origins may call the API from a browser, with which methods and headers."""

    allow_origins: tuple[str, ...] = setting(
        (),
        "origins allowed to call the API from a browser (https://app.example.com), or '*'; empty: CORS off",
        _check_origins,
    )
    allow_credentials: bool = setting(
        False,
        "let browsers send cookies and Authorization to the allowed origins (not with '*')",
        attrs.validators.instance_of(bool),
    )
    allow_methods: tuple[str, ...] = setting(
        DEFAULT_METHODS,
        "methods a preflight allows (only those the route also answers are sent)",
        _check_tokens(_METHOD, "upper-case method names"),
    )
    allow_headers: tuple[str, ...] = setting(
        DEFAULT_HEADERS,
        "request headers a preflight allows",
        _check_tokens(_HEADER, "header names ('*' is not supported)"),
    )
    expose_headers: tuple[str, ...] = setting(
        DEFAULT_EXPOSED,
        "response headers the browser lets scripts read",
        _check_tokens(_HEADER, "header names ('*' is not supported)"),
    )
    max_age: int = setting(
        600,
        f"seconds a browser may cache a preflight answer (0-{MAX_MAX_AGE})",
        [attrs.validators.instance_of(int), attrs.validators.ge(0), attrs.validators.le(MAX_MAX_AGE)],
    )

    def __attrs_post_init__(self) -> None:
        if self.allow_credentials and WILDCARD in self.allow_origins:
            raise ValueError("allow_credentials needs the origins listed: browsers refuse credentials with '*'")


# -- plain logic ------------------------------------------------------------------


def narrow_methods(route_methods: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The route's methods that are also allowed, in the route's order."""
    permitted = frozenset(allowed)
    return [method for method in route_methods if method in permitted]


# -- Falcon glue --------------------------------------------------------------------


class CorsMiddleware(falcon.CORSMiddleware[Any, Any]):
    """Falcon's CORS policy, with preflights narrowed to the configured methods, headers and max age."""

    def __init__(self, settings: CorsSettings) -> None:
        wildcard = settings.allow_origins == (WILDCARD,)
        super().__init__(
            allow_origins=WILDCARD if wildcard else settings.allow_origins,
            expose_headers=settings.expose_headers or None,
            allow_credentials=WILDCARD if settings.allow_credentials else None,
        )
        self.allowed_methods = frozenset(settings.allow_methods)
        self.allow_headers = ", ".join(settings.allow_headers)
        self.max_age = str(settings.max_age)

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        super().process_response(req, resp, resource, req_succeeded)
        # The answer depends on Origin even when the request had none (it then
        # gets no CORS headers): a cache must not replay it to a CORS request.
        resp.set_header("Vary", with_vary(resp.get_header("Vary"), "Origin"))
        if req.method != "OPTIONS" or not req.get_header("Access-Control-Request-Method"):
            return
        route_methods = resp.get_header("Access-Control-Allow-Methods")
        if route_methods is None:  # Falcon did not answer it: a disallowed origin, or the preflight failed
            return
        methods = narrow_methods(split_header_list(route_methods), self.allowed_methods)
        if not methods:
            for name in PREFLIGHT_HEADERS:
                resp.delete_header(name)
            return
        resp.set_header("Access-Control-Allow-Methods", ", ".join(methods))
        resp.set_header("Access-Control-Allow-Headers", self.allow_headers)
        resp.set_header("Access-Control-Max-Age", self.max_age)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)


def settings_of(config: Any) -> CorsSettings:
    return config.settings(CorsSettings)  # type: ignore[no-any-return]


@hookimpl
def taskman_settings() -> type:
    return CorsSettings


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    settings = settings_of(config)
    if not settings.allow_origins:
        return []
    return [staged(CorsMiddleware(settings), "shape")]
