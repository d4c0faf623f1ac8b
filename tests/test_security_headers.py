"""The security_headers plugin: hardening headers on every response, the docs page's CSP, HSTS and no-store."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import attrs
import falcon
import falcon.testing
import pytest
from taskman_plugins.openapi.assets import docs_page
from taskman_plugins.security_headers import (
    API_CSP,
    DOCS_CSP,
    SecurityHeaders,
    SecurityHeadersSettings,
    strict_transport_security,
)

from taskman import hookimpl
from taskman.config import Config, ConfigError
from taskman.errors import PROBLEM_CONTENT_TYPE

Client = Callable[..., falcon.testing.TestClient]

DEFAULTS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_CSP,
}
HSTS_YEAR = 31_536_000


# -- the plain part ------------------------------------------------------------------


def test_the_api_and_the_docs_get_their_own_policy() -> None:
    headers = SecurityHeaders(SecurityHeadersSettings())
    api = dict(headers.for_path("/api/v1/tasks"))
    assert api == DEFAULTS
    docs = dict(headers.for_path("/api/docs"))
    assert docs == {**DEFAULTS, "Content-Security-Policy": DOCS_CSP}
    assert headers.for_path("/api/docs/assets/init.js") == headers.docs
    assert headers.for_path("/api/docsearch") == headers.api  # a prefix of the path, not of the name
    assert headers.for_path("/") == headers.api


def test_without_a_docs_path_every_response_gets_the_api_policy() -> None:
    headers = SecurityHeaders(SecurityHeadersSettings(docs_path=""))
    assert headers.for_path("/api/docs") == headers.api


def test_an_empty_value_sends_no_header() -> None:
    settings = SecurityHeadersSettings(frame_options="", content_security_policy="")
    headers = SecurityHeaders(settings)
    assert dict(headers.for_path("/x")) == {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    assert dict(headers.for_path("/api/docs"))["Content-Security-Policy"] == DOCS_CSP


@pytest.mark.parametrize(
    "max_age,subdomains,preload,expected",
    [
        (0, True, False, None),
        (HSTS_YEAR, True, False, f"max-age={HSTS_YEAR}; includeSubDomains"),
        (600, False, False, "max-age=600"),
        (HSTS_YEAR, True, True, f"max-age={HSTS_YEAR}; includeSubDomains; preload"),
    ],
)
def test_strict_transport_security(max_age: int, subdomains: bool, preload: bool, expected: str | None) -> None:
    assert strict_transport_security(max_age, subdomains, preload) == expected


def test_hsts_is_off_by_default_and_on_when_configured() -> None:
    assert "Strict-Transport-Security" not in dict(SecurityHeaders(SecurityHeadersSettings()).api)
    on = SecurityHeaders(SecurityHeadersSettings(hsts_max_age=600))
    assert dict(on.api)["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    assert dict(on.docs)["Strict-Transport-Security"] == "max-age=600; includeSubDomains"


def test_no_store_only_for_authenticated_responses_unless_switched_off() -> None:
    headers = SecurityHeaders(SecurityHeadersSettings())
    assert headers.cache_control(authenticated=True) == "no-store"
    assert headers.cache_control(authenticated=False) is None
    assert SecurityHeaders(SecurityHeadersSettings(no_store_authenticated=False)).cache_control(True) is None


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"frame_options": "DENY\r\nSet-Cookie: x=1"}, "printable ASCII"),
        ({"referrer_policy": " no-referrer"}, "surrounding spaces"),
        ({"content_security_policy": "default-src 'none' ✓"}, "printable ASCII"),
        ({"docs_path": "/api/docs/"}, "no trailing"),
        ({"docs_path": "api/docs"}, "a path like"),
        ({"hsts_max_age": -1}, "hsts_max_age"),
        ({"hsts_preload": True, "hsts_max_age": 600}, "hsts_preload needs"),
        ({"hsts_preload": True, "hsts_max_age": HSTS_YEAR, "hsts_include_subdomains": False}, "hsts_preload needs"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attrs.evolve(SecurityHeadersSettings(), **changes)


def test_a_bad_value_fails_start_up_with_its_key(make_config: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"security_headers.docs_path \(from env APP_SECURITY_HEADERS__DOCS_PATH\)"):
        make_config(environ={"APP_SECURITY_HEADERS__DOCS_PATH": "docs"})


def test_the_docs_policy_allows_what_the_reference_page_loads() -> None:
    page = docs_page("TaskMan").decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts and all('src="' in attributes and not body.strip() for attributes, body in scripts)
    assert not re.search(r"\bon[a-z]+=", page)  # no inline event handlers either
    # every URL is relative to the page: same origin
    assert all(not url.startswith(("http:", "https:", "//")) for url in re.findall(r'(?:src|href)="([^"]+)"', page))
    directives = dict(d.strip().split(" ", 1) for d in DOCS_CSP.split(";"))
    assert directives["script-src"] == "'self'"  # no inline script needed
    assert directives["connect-src"] == "'self'"  # openapi.json and "Try it out"
    assert "data:" in directives["img-src"]  # Swagger UI's CSS draws data: images
    assert directives["frame-ancestors"] == "'none'"


# -- over HTTP, both flavours ------------------------------------------------------------


class PlainResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"ok": True}


class OwnHeadersResource:
    """A responder that chose some of the headers itself."""

    def on_get(self, req: Any, resp: Any) -> None:
        resp.set_header("X-Frame-Options", "SAMEORIGIN")
        resp.set_header("Content-Security-Policy", "default-src 'self'")
        resp.cache_control = ["public", "max-age=60"]
        resp.media = {"ok": True}


class FailingResource:
    def on_get(self, req: Any, resp: Any) -> None:
        raise falcon.HTTPConflict(description="not now")


class AsAuthenticated:
    """Stands in for the auth plugin: a request with ``X-Test-User`` is authenticated."""

    def process_request(self, req: Any, resp: Any) -> None:
        user = req.get_header("X-Test-User")
        req.context.auth = None if user is None else SimpleNamespace(name=user, prefix="tm_test", scopes=frozenset())


class HeadersPlugin:
    taskman_plugin_name = "headers_probe"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/plain", PlainResource()), ("/own", OwnHeadersResource()), ("/failing", FailingResource())]

    @hookimpl
    def taskman_middleware(self, config: Any) -> list[object]:
        return [AsAuthenticated()]


def client_with(make_client: Client, **environ: str) -> falcon.testing.TestClient:
    # The stand-in sets req.context.auth itself: the real auth plugin would reset it.
    return make_client(plugins=(HeadersPlugin(),), environ={"APP_PLUGINS__DISABLE": "auth", **environ})


def picked(result: Any, names: Any = DEFAULTS) -> dict[str, str | None]:
    return {name: result.headers.get(name) for name in names}


@pytest.mark.parametrize("path,status", [("/plain", 200), ("/failing", 409), ("/nowhere", 404)])
def test_every_response_gets_the_headers_errors_included(make_client: Client, path: str, status: int) -> None:
    result = client_with(make_client).simulate_get(path)
    assert result.status_code == status
    assert picked(result) == DEFAULTS
    assert "Strict-Transport-Security" not in result.headers
    if status >= 400:
        assert result.headers["Content-Type"] == PROBLEM_CONTENT_TYPE


def test_headers_a_responder_set_are_kept(make_client: Client) -> None:
    result = client_with(make_client).simulate_get("/own")
    assert picked(result) == {
        **DEFAULTS,
        "X-Frame-Options": "SAMEORIGIN",
        "Content-Security-Policy": "default-src 'self'",
    }
    assert result.headers["Cache-Control"] == "public, max-age=60"


def test_the_docs_assets_get_the_docs_policy(make_client: Client) -> None:
    client = client_with(make_client)
    asset = client.simulate_get("/api/docs/assets/init.js")
    assert asset.status_code == 200
    assert asset.headers["Content-Security-Policy"] == DOCS_CSP
    assert client.simulate_get("/api/docs/assets/missing.js").headers["Content-Security-Policy"] == DOCS_CSP
    assert client.simulate_get("/api/openapi.json").headers["Content-Security-Policy"] == API_CSP


def test_the_docs_page_keeps_the_policy_the_openapi_plugin_gives_it(make_client: Client) -> None:
    page = client_with(make_client).simulate_get("/api/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert policy not in (API_CSP, DOCS_CSP) and "script-src 'self'" in policy
    assert picked(page, ["X-Frame-Options", "Referrer-Policy"]) == {
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def test_the_docs_path_and_policies_are_configurable(make_client: Client) -> None:
    client = client_with(
        make_client,
        APP_SECURITY_HEADERS__DOCS_PATH="/plain",
        APP_SECURITY_HEADERS__DOCS_CONTENT_SECURITY_POLICY="default-src 'self'",
        APP_SECURITY_HEADERS__CONTENT_SECURITY_POLICY="default-src 'none'; sandbox",
    )
    assert client.simulate_get("/plain").headers["Content-Security-Policy"] == "default-src 'self'"
    assert client.simulate_get("/api/docs/assets/init.js").headers["Content-Security-Policy"] == (
        "default-src 'none'; sandbox"
    )


def test_each_header_can_be_changed_or_switched_off(make_client: Client) -> None:
    client = client_with(
        make_client,
        APP_SECURITY_HEADERS__CONTENT_TYPE_OPTIONS="",
        APP_SECURITY_HEADERS__FRAME_OPTIONS="SAMEORIGIN",
        APP_SECURITY_HEADERS__REFERRER_POLICY="strict-origin-when-cross-origin",
        APP_SECURITY_HEADERS__CONTENT_SECURITY_POLICY="",
    )
    result = client.simulate_get("/plain")
    assert picked(result) == {
        "X-Content-Type-Options": None,
        "X-Frame-Options": "SAMEORIGIN",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Content-Security-Policy": None,
    }


def test_hsts_is_sent_when_configured(make_client: Client) -> None:
    client = client_with(make_client, APP_SECURITY_HEADERS__HSTS_MAX_AGE=str(HSTS_YEAR))
    for path in ("/plain", "/nowhere"):
        assert (
            client.simulate_get(path).headers["Strict-Transport-Security"] == f"max-age={HSTS_YEAR}; includeSubDomains"
        )
    without_subdomains = client_with(
        make_client, APP_SECURITY_HEADERS__HSTS_MAX_AGE="600", APP_SECURITY_HEADERS__HSTS_INCLUDE_SUBDOMAINS="false"
    )
    assert without_subdomains.simulate_get("/plain").headers["Strict-Transport-Security"] == "max-age=600"


@pytest.mark.parametrize("path", ["/plain", "/own", "/failing", "/nowhere"])
def test_authenticated_responses_are_not_stored(make_client: Client, path: str) -> None:
    client = client_with(make_client)
    assert client.simulate_get(path, headers={"X-Test-User": "ci"}).headers["Cache-Control"] == "no-store"


def test_anonymous_responses_keep_their_cache_control(make_client: Client) -> None:
    client = client_with(make_client)
    assert "Cache-Control" not in client.simulate_get("/plain").headers
    assert client.simulate_get("/own").headers["Cache-Control"] == "public, max-age=60"


def test_no_store_can_be_switched_off(make_client: Client) -> None:
    client = client_with(make_client, APP_SECURITY_HEADERS__NO_STORE_AUTHENTICATED="false")
    assert "Cache-Control" not in client.simulate_get("/plain", headers={"X-Test-User": "ci"}).headers
    assert client.simulate_get("/own", headers={"X-Test-User": "ci"}).headers["Cache-Control"] == "public, max-age=60"


def test_disabling_the_plugin_removes_the_headers(make_client: Client) -> None:
    client = client_with(
        make_client,
        APP_PLUGINS__DISABLE="auth,security_headers",
        APP_SECURITY_HEADERS__HSTS_MAX_AGE="600",
    )
    for path in ("/plain", "/nowhere"):
        result = client.simulate_get(path, headers={"X-Test-User": "ci"})
        assert picked(result, [*DEFAULTS, "Strict-Transport-Security", "Cache-Control"]) == dict.fromkeys(
            [*DEFAULTS, "Strict-Transport-Security", "Cache-Control"]
        )
