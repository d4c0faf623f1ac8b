"""HEAD wherever GET is (RFC 9110 section 9.1), and a 405 with Allow for everyone for a method a route lacks."""

from __future__ import annotations

from collections.abc import Callable

import falcon.testing
import pytest
from taskman_plugins.auth import TokenStore

Client = Callable[..., falcon.testing.TestClient]
ENFORCED = {"APP_AUTH__ALLOW_ANONYMOUS": "false"}


@pytest.mark.parametrize("path", ["/health/live", "/api/openapi.json", "/health/startup"])
def test_head_answers_like_get_without_a_body(make_client: Client, path: str) -> None:
    client = make_client(environ=ENFORCED)
    got, head = client.simulate_get(path), client.simulate_head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path == "/api/openapi.json":  # the same bytes every time (the probes carry times and durations)
        assert head.headers["content-length"] == str(len(got.content))
    else:
        assert int(head.headers["content-length"]) > 0


def test_head_needs_what_get_needs(make_client: Client) -> None:
    client = make_client(environ=ENFORCED)
    assert client.simulate_head("/api/v1/projects").status_code == 401
    token, _ = TokenStore().create("reader", "read", None)
    head = client.simulate_head("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ratelimit-limit"], "HEAD is counted as a read"


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/health/live"), ("POST", "/api/openapi.json")])
def test_a_method_the_route_lacks_is_a_405_with_allow_for_everyone(make_client: Client, method: str, path: str) -> None:
    client = make_client(environ=ENFORCED)
    result = client.simulate_request(method, path)
    assert result.status_code == 405, result.text
    assert {"GET", "HEAD"} <= {m.strip() for m in result.headers["allow"].split(",")}
    assert result.headers["content-type"] == "application/problem+json"
