"""The cors plugin: falcon.CORSMiddleware configured from [cors], preflights narrowed, Vary: Origin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import falcon
import falcon.testing
import pytest
from taskman_plugins import cors
from taskman_plugins.cors import (
    DEFAULT_EXPOSED,
    DEFAULT_HEADERS,
    CorsMiddleware,
    CorsSettings,
    narrow_methods,
    split_header_list,
    with_vary,
)

from taskman import hookimpl
from taskman.config import Config, ConfigError
from taskman.errors import PROBLEM_CONTENT_TYPE

Client = Callable[..., falcon.testing.TestClient]

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"
ORIGINS = {"APP_CORS__ALLOW_ORIGINS": f"{APP_ORIGIN},http://localhost:5173"}


# -- settings and plain logic -------------------------------------------------------


def test_defaults_allow_no_origin_and_so_add_no_middleware(make_config: Callable[..., Config]) -> None:
    config = make_config()
    assert config.section("cors") == CorsSettings()
    assert CorsSettings().allow_origins == ()
    assert cors.taskman_middleware(config) == []


def test_configured_origins_add_the_middleware(make_config: Callable[..., Config]) -> None:
    config = make_config(environ=ORIGINS)
    assert config.section("cors").allow_origins == (APP_ORIGIN, "http://localhost:5173")
    [middleware] = cors.taskman_middleware(config)
    assert isinstance(middleware, CorsMiddleware) and isinstance(middleware, falcon.CORSMiddleware)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"allow_origins": ("*",), "allow_credentials": True}, "browsers refuse credentials with '\\*'"),
        ({"allow_origins": ("*", APP_ORIGIN)}, "must be the only entry"),
        ({"allow_origins": ("https://app.example.com/",)}, "without a path or trailing slash"),
        ({"allow_origins": ("https://app.example.com/api",)}, "without a path"),
        ({"allow_origins": ("https://App.Example.com",)}, "lower case"),
        ({"allow_origins": ("app.example.com",)}, "scheme://host"),
        ({"allow_origins": ("null",)}, "scheme://host"),
        ({"allow_methods": ("get",)}, "upper-case method names"),
        ({"allow_headers": ("*",)}, "'\\*' is not supported"),
        ({"expose_headers": ("X Bad",)}, "header names"),
        ({"max_age": -1}, "max_age"),
        ({"max_age": 86401}, "max_age"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attrs.evolve(CorsSettings(), **changes)


def test_credentials_with_the_wildcard_fail_start_up_with_the_source(make_config: Callable[..., Config]) -> None:
    environ = {"APP_CORS__ALLOW_ORIGINS": "*", "APP_CORS__ALLOW_CREDENTIALS": "true"}
    with pytest.raises(ConfigError, match=r"\[cors\] \(from env APP_CORS__ALLOW_CREDENTIALS, env APP_CORS__ALLOW"):
        make_config(environ=environ)


def test_split_header_list() -> None:
    assert split_header_list(" GET,POST , ,DELETE") == ["GET", "POST", "DELETE"]
    assert split_header_list(None) == []


def test_narrow_methods_keeps_the_routes_order() -> None:
    assert narrow_methods(["DELETE", "GET", "TRACE", "POST"], ["GET", "POST", "DELETE"]) == ["DELETE", "GET", "POST"]
    assert narrow_methods(["TRACE"], ["GET"]) == []


@pytest.mark.parametrize(
    "existing,expected",
    [(None, "Origin"), ("Accept-Encoding", "Accept-Encoding, Origin"), ("origin", "origin"), ("*", "*")],
)
def test_with_vary(existing: str | None, expected: str) -> None:
    assert with_vary(existing, "Origin") == expected


# -- over HTTP, both flavours ------------------------------------------------------------


class ThingResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"thing": 1}

    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = {"created": True}

    def on_delete(self, req: Any, resp: Any) -> None:
        resp.status = falcon.HTTP_204


class VaryResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.vary = ["Accept-Language"]
        resp.media = {}


class ThingsPlugin:
    taskman_plugin_name = "things"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/things", ThingResource()), ("/varied", VaryResource())]


def client_with(make_client: Client, **environ: str) -> falcon.testing.TestClient:
    return make_client(plugins=(ThingsPlugin(),), environ={**ORIGINS, **environ})


def cors_headers(result: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in result.headers.items() if k.lower().startswith("access-control-")}


def preflight(client: falcon.testing.TestClient, origin: str, method: str = "DELETE", path: str = "/things") -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, x-anything",
    }
    return client.simulate_options(path, headers=headers)


def vary(result: Any) -> list[str]:
    return [v.strip() for v in result.headers.get("Vary", "").split(",") if v.strip()]


def test_an_allowed_origin_gets_the_cors_headers(make_client: Client) -> None:
    result = client_with(make_client).simulate_get("/things", headers={"Origin": APP_ORIGIN})
    assert result.status_code == 200
    assert cors_headers(result) == {
        "access-control-allow-origin": APP_ORIGIN,
        "access-control-expose-headers": ", ".join(DEFAULT_EXPOSED),
    }
    assert "Origin" in vary(result)


def test_a_disallowed_origin_gets_none(make_client: Client) -> None:
    result = client_with(make_client).simulate_get("/things", headers={"Origin": OTHER_ORIGIN})
    assert result.status_code == 200  # the browser, not the server, withholds the answer
    assert cors_headers(result) == {}
    assert "Origin" in vary(result)


def test_a_request_without_origin_gets_no_cors_headers_but_vary(make_client: Client) -> None:
    result = client_with(make_client).simulate_get("/things")
    assert result.status_code == 200 and result.json == {"thing": 1}
    assert cors_headers(result) == {}
    assert "Origin" in vary(result)  # so a cache never replays it to a CORS request


def test_vary_is_appended_to(make_client: Client) -> None:
    result = client_with(make_client).simulate_get("/varied", headers={"Origin": APP_ORIGIN})
    assert vary(result)[:2] == ["Accept-Language", "Origin"]


def test_a_preflight_from_an_allowed_origin_is_answered(make_client: Client) -> None:
    result = preflight(client_with(make_client), APP_ORIGIN)
    assert result.status_code == 200
    headers = cors_headers(result)
    assert headers["access-control-allow-origin"] == APP_ORIGIN
    assert set(split_header_list(headers["access-control-allow-methods"])) == {
        "GET",
        "HEAD",
        "POST",
        "DELETE",
    }  # HEAD: the route answers it wherever GET
    assert headers["access-control-allow-headers"] == ", ".join(DEFAULT_HEADERS)  # not an echo of the request
    assert headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in headers
    assert "Allow" not in result.headers


def test_a_preflight_from_a_disallowed_origin_is_not(make_client: Client) -> None:
    result = preflight(client_with(make_client), OTHER_ORIGIN)
    assert cors_headers(result) == {}


def test_a_preflight_allows_only_the_configured_methods(make_client: Client) -> None:
    client = client_with(make_client, APP_CORS__ALLOW_METHODS="GET,HEAD,POST")
    headers = cors_headers(preflight(client, APP_ORIGIN))
    assert set(split_header_list(headers["access-control-allow-methods"])) == {"GET", "HEAD", "POST"}


def test_a_preflight_to_a_route_without_an_allowed_method_gets_no_method_headers(make_client: Client) -> None:
    client = client_with(make_client, APP_CORS__ALLOW_METHODS="PUT,PATCH")
    headers = cors_headers(preflight(client, APP_ORIGIN))
    assert "access-control-allow-methods" not in headers
    assert "access-control-allow-headers" not in headers
    assert "access-control-max-age" not in headers


def test_max_age_allowed_and_exposed_headers_come_from_the_settings(make_client: Client) -> None:
    client = client_with(
        make_client,
        APP_CORS__MAX_AGE="7200",
        APP_CORS__ALLOW_HEADERS="Authorization,X-Custom",
        APP_CORS__EXPOSE_HEADERS="ETag",
    )
    answered = cors_headers(preflight(client, APP_ORIGIN))
    assert answered["access-control-max-age"] == "7200"
    assert answered["access-control-allow-headers"] == "Authorization, X-Custom"
    simple = cors_headers(client.simulate_get("/things", headers={"Origin": APP_ORIGIN}))
    assert simple["access-control-expose-headers"] == "ETag"


def test_credentials_echo_the_origin(make_client: Client) -> None:
    client = client_with(make_client, APP_CORS__ALLOW_CREDENTIALS="true")
    simple = cors_headers(client.simulate_get("/things", headers={"Origin": APP_ORIGIN}))
    assert simple["access-control-allow-origin"] == APP_ORIGIN
    assert simple["access-control-allow-credentials"] == "true"
    answered = cors_headers(preflight(client, APP_ORIGIN))
    assert answered["access-control-allow-credentials"] == "true"
    assert cors_headers(client.simulate_get("/things", headers={"Origin": OTHER_ORIGIN})) == {}


def test_the_wildcard_allows_every_origin(make_client: Client) -> None:
    client = client_with(make_client, APP_CORS__ALLOW_ORIGINS="*")
    result = client.simulate_get("/things", headers={"Origin": OTHER_ORIGIN})
    assert cors_headers(result)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors_headers(result)
    assert cors_headers(preflight(client, OTHER_ORIGIN))["access-control-allow-origin"] == "*"


def test_error_responses_carry_the_cors_headers(make_client: Client) -> None:
    result = client_with(make_client).simulate_get("/nowhere", headers={"Origin": APP_ORIGIN})
    assert result.status_code == 404
    assert result.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert cors_headers(result)["access-control-allow-origin"] == APP_ORIGIN  # so the page can read the problem
    assert result.json["status"] == 404


def test_without_origins_preflights_get_no_cors_headers(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    result = preflight(client, APP_ORIGIN)
    assert result.status_code == 200
    assert cors_headers(result) == {}
    assert "Origin" not in vary(client.simulate_get("/things", headers={"Origin": APP_ORIGIN}))


def test_disabling_the_plugin_removes_cors(make_client: Client) -> None:
    client = client_with(make_client, APP_PLUGINS__DISABLE="cors")
    assert cors_headers(client.simulate_get("/things", headers={"Origin": APP_ORIGIN})) == {}
    assert cors_headers(preflight(client, APP_ORIGIN)) == {}
    assert "Origin" not in vary(client.simulate_get("/things"))
