"""The ratelimit plugin: plain limiter logic, settings, and the HTTP behaviour on WSGI and ASGI, in memory and Redis."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import falcon
import falcon.testing
import pytest
import redis
from limits.errors import StorageError
from taskman_plugins.auth import TokenStore
from taskman_plugins.ratelimit import (
    Decision,
    FailureLog,
    MemoryBackend,
    RateLimiter,
    RateLimitSettings,
    StorageUnavailableError,
    group_of,
    identity_of,
    is_exempt,
    open_backend,
    parse_rate,
)
from taskman_plugins.ratelimit.backends import Hit

import taskman
from taskman import hookimpl
from taskman.config import Config, ConfigError
from tests.helpers import free_port
from tests.redis_server import RedisServer

Client = Callable[..., falcon.testing.TestClient]

PROBLEM = "application/problem+json"
HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
WARNING = "ratelimit_storage_unavailable"
PRINCIPAL_HEADER = "X-Test-Principal"


# -- a test plugin: routes to count, and a stand-in for the auth plugin's principal ----------------------------------


@attrs.frozen
class Principal:
    name: str
    prefix: str
    scopes: frozenset[str] = frozenset()


class ProbeResource:
    def __init__(self) -> None:
        self.calls = 0

    def _answer(self, resp: Any) -> None:
        self.calls += 1
        resp.media = {"ok": True}

    def on_get(self, req: Any, resp: Any) -> None:
        self._answer(resp)

    def on_head(self, req: Any, resp: Any) -> None:
        self.calls += 1

    def on_post(self, req: Any, resp: Any) -> None:
        self._answer(resp)

    def on_put(self, req: Any, resp: Any) -> None:
        self._answer(resp)

    def on_patch(self, req: Any, resp: Any) -> None:
        self._answer(resp)

    def on_delete(self, req: Any, resp: Any) -> None:
        self._answer(resp)


class GoneResource:
    def on_get(self, req: Any, resp: Any) -> None:
        raise falcon.HTTPNotFound(description="There is no such thing.")


class PrincipalMiddleware:
    """Plays the auth plugin's part of the contract: ``req.context.auth`` is a principal or None."""

    def process_request(self, req: Any, resp: Any) -> None:
        prefix = req.get_header(PRINCIPAL_HEADER)
        req.context.auth = Principal(name=f"token {prefix}", prefix=prefix) if prefix else None


class ProbePlugin:
    taskman_plugin_name = "ratelimit_probe"

    def __init__(self) -> None:
        self.probe = ProbeResource()

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/probe", self.probe), ("/gone", GoneResource())]

    @hookimpl
    def taskman_middleware(self, config: Any) -> list[object]:
        return [PrincipalMiddleware()]


@pytest.fixture
def probe() -> ProbePlugin:
    return ProbePlugin()


@pytest.fixture
def client_with(make_client: Client, probe: ProbePlugin) -> Callable[..., falcon.testing.TestClient]:
    """A client of an app with the probe routes and ``APP_*`` settings; the real auth plugin stays out of the way."""

    def make(**environ: str) -> falcon.testing.TestClient:
        disable = ",".join(filter(None, ["auth", environ.pop("APP_PLUGINS__DISABLE", "")]))
        # A rate given for tokens is the anonymous callers' too, unless the test sets theirs: most tests here
        # are about how a budget is spent, whoever spends it.
        for group in ("READS", "WRITES"):
            if f"APP_RATELIMIT__{group}" in environ:
                environ.setdefault(f"APP_RATELIMIT__ANONYMOUS_{group}", environ[f"APP_RATELIMIT__{group}"])
        return make_client(plugins=(probe,), environ={"APP_PLUGINS__DISABLE": disable, **environ})

    return make


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def rate_headers(result: Any) -> dict[str, str]:
    return {name: result.headers[name] for name in HEADERS if name in result.headers}


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == WARNING]


# -- plain logic ------------------------------------------------------------------------------------------------------


def test_methods_fall_into_reads_writes_or_nothing() -> None:
    assert {m: group_of(m) for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")} == {
        "GET": "reads",
        "HEAD": "reads",
        "POST": "writes",
        "PUT": "writes",
        "PATCH": "writes",
        "DELETE": "writes",
        "OPTIONS": None,
        "TRACE": None,
    }


@pytest.mark.parametrize(
    "path,exempt",
    [
        ("/health", True),
        ("/health/live", True),
        ("/metrics", True),
        ("/healthz", False),
        ("/metrics-old", False),
        ("/api/v1/health", False),
        ("/", False),
    ],
)
def test_exempt_paths_are_prefixes_by_path_segment(path: str, exempt: bool) -> None:
    assert is_exempt(path, ("/health", "/metrics/")) is exempt


def test_a_principal_is_identified_by_its_token_prefix_whatever_its_address() -> None:
    principal = Principal(name="ci", prefix="tm_ab12")
    assert identity_of(principal, "192.0.2.1") == identity_of(principal, "192.0.2.2") == "token:tm_ab12"


def test_anonymous_callers_are_identified_by_the_address_the_server_resolved() -> None:
    assert identity_of(None, "192.0.2.1") == "ip:192.0.2.1"
    assert identity_of(None, None) == "ip:unknown"


def test_a_decision_rounds_its_reset_up_and_retries_after_at_least_a_second() -> None:
    decision = Decision(allowed=True, limit=10, remaining=3, reset_after=4.2)
    assert decision.headers() == {"RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "5"}
    assert Decision(False, 1, 0, 0.0).retry_after == 1
    assert Decision(False, 1, 0, -0.5).reset_seconds == 0


def memory_limiter(**rates: str) -> RateLimiter:
    return RateLimiter({group: parse_rate(rate) for group, rate in rates.items()}, MemoryBackend())


def test_the_limiter_counts_down_then_refuses() -> None:
    limiter = memory_limiter(reads="3/minute")
    decisions = [limiter.decide("ip:192.0.2.1", "reads") for _ in range(4)]
    assert [(d.allowed, d.limit, d.remaining) for d in decisions] == [
        (True, 3, 2),
        (True, 3, 1),
        (True, 3, 0),
        (False, 3, 0),
    ]
    assert all(0 < d.reset_after <= 60 for d in decisions)


def test_identities_and_groups_have_separate_budgets() -> None:
    limiter = memory_limiter(reads="1/minute", writes="1/minute")
    assert limiter.decide("ip:192.0.2.1", "reads").allowed
    assert not limiter.decide("ip:192.0.2.1", "reads").allowed
    assert limiter.decide("ip:192.0.2.2", "reads").allowed
    assert limiter.decide("ip:192.0.2.1", "writes").allowed
    assert limiter.decide("token:tm_1", "reads").allowed


def test_the_async_path_counts_in_the_same_window() -> None:
    limiter = memory_limiter(reads="2/minute")

    async def two() -> list[Decision]:
        return [await limiter.decide_async("ip:192.0.2.1", "reads") for _ in range(2)]

    assert [d.remaining for d in asyncio.run(two())] == [1, 0]
    assert not limiter.decide("ip:192.0.2.1", "reads").allowed


def test_the_reset_is_when_the_oldest_hit_leaves_the_moving_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("limits.storage.memory.time", types.SimpleNamespace(time=lambda: now[0]))
    limiter = RateLimiter({"reads": parse_rate("2/minute")}, MemoryBackend(), clock=lambda: now[0])

    first = limiter.decide("ip:192.0.2.1", "reads")
    now[0] = 1010.0
    second = limiter.decide("ip:192.0.2.1", "reads")
    now[0] = 1030.0
    refused = limiter.decide("ip:192.0.2.1", "reads")
    now[0] = 1060.5  # the hit of t=1000 has left the window: one request fits again
    again = limiter.decide("ip:192.0.2.1", "reads")

    assert (first.reset_after, second.reset_after) == (60.0, 50.0)
    assert (refused.allowed, refused.reset_after, refused.retry_after) == (False, 30.0, 30)
    assert (again.allowed, again.remaining, again.reset_seconds) == (True, 0, 10)


class FlakyBackend:
    """Fails while ``failing``; counts how often it was asked."""

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    def hit(self, rate: Any, *key: str) -> Hit:
        self.calls += 1
        if self.failing:
            raise StorageError(ConnectionError("Connection refused"))
        return Hit(True, rate.amount - 1, 0.0)

    async def hit_async(self, rate: Any, *key: str) -> Hit:
        return self.hit(rate, *key)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def test_after_a_storage_failure_the_storage_is_left_alone_for_the_retry_interval() -> None:
    clock = [0.0]
    backend = FlakyBackend()
    limiter = RateLimiter({"reads": parse_rate("5/minute")}, backend, retry_interval=5.0, monotonic=lambda: clock[0])

    with pytest.raises(StorageUnavailableError, match="Connection refused") as failed:
        limiter.decide("ip:192.0.2.1", "reads")
    assert failed.value.contacted and isinstance(failed.value.cause, ConnectionError)

    clock[0] = 4.9
    with pytest.raises(StorageUnavailableError) as skipped:
        limiter.decide("ip:192.0.2.1", "reads")
    assert not skipped.value.contacted and backend.calls == 1

    clock[0] = 5.0
    backend.failing = False
    assert limiter.decide("ip:192.0.2.1", "reads").remaining == 4
    assert limiter.decide("ip:192.0.2.1", "reads").allowed and backend.calls == 3


def test_the_failure_warning_goes_out_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    logger = logging.getLogger("tests.ratelimit")
    log = FailureLog(logger, WARNING, interval=60.0, monotonic=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="tests.ratelimit"):
        assert log(error="down") is True
        clock[0] = 30.0
        assert log(error="down") is False
        assert log(error="down") is False
        clock[0] = 60.0
        assert log(error="still down") is True
    records = warnings_logged(caplog)
    assert [(r.error, r.suppressed) for r in records] == [("down", 0), ("still down", 2)]  # type: ignore[attr-defined]


def test_a_redis_url_without_the_redis_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ValueError, match=r"needs the redis package \(taskman\[redis\]\)"):
        open_backend("redis://127.0.0.1:6379/0", timeout=0.5, key_prefix="taskman")


# -- settings -------------------------------------------------------------------------------------------------------


def test_the_defaults_are_safe_and_on() -> None:
    settings = RateLimitSettings()
    assert (settings.reads, settings.writes, settings.storage_url) == ("3000/minute", "1200/minute", "memory://")
    assert (settings.anonymous_reads, settings.anonymous_writes, settings.auth_failures) == (
        "300/minute",
        "60/minute",
        "30/minute",
    )
    assert (settings.storage_failure, settings.storage_timeout, settings.key_prefix) == ("open", 0.5, "taskman")
    assert settings.trust_forwarded_for is False
    assert settings.exempt_paths == ("/health", "/metrics")


def test_settings_come_from_the_environment(make_config: Callable[..., Config]) -> None:
    config = make_config(
        environ={
            "APP_RATELIMIT__READS": "10 per second",
            "APP_RATELIMIT__STORAGE_URL": "redis://cache.internal:6380/2",
            "APP_RATELIMIT__STORAGE_FAILURE": "closed",
            "APP_RATELIMIT__TRUST_FORWARDED_FOR": "false",
            "APP_RATELIMIT__EXEMPT_PATHS": "/health,/metrics,/status",
        }
    )
    settings = config.section("ratelimit")
    assert settings.rates()["reads"].amount == 10 and settings.rates()["reads"].get_expiry() == 1
    assert settings.storage_url == "redis://cache.internal:6380/2" and settings.storage_failure == "closed"
    assert settings.trust_forwarded_for is False
    assert settings.exempt_paths == ("/health", "/metrics", "/status")


@pytest.mark.parametrize(
    "var,value,reason",
    [
        ("APP_RATELIMIT__READS", "lots", "must be a rate like '300/minute'"),
        ("APP_RATELIMIT__READS", "10/second;300/minute", "must be one rate"),
        ("APP_RATELIMIT__WRITES", "0/minute", "at least one request"),
        ("APP_RATELIMIT__STORAGE_URL", "memcached://127.0.0.1:11211", "must be a URL with one of the schemes"),
        ("APP_RATELIMIT__STORAGE_URL", "redis://127.0.0.1:port/0", "must be a URL"),
        ("APP_RATELIMIT__STORAGE_FAILURE", "maybe", "must be one of open, closed"),
        ("APP_RATELIMIT__STORAGE_TIMEOUT", "0", "must be > 0"),
        ("APP_RATELIMIT__KEY_PREFIX", "two words", "must be 1-64 characters"),
        ("APP_RATELIMIT__EXEMPT_PATHS", "health", "path prefixes starting with '/'"),
        ("APP_RATELIMIT__TRUST_FORWARDED_FOR", "true", "is replaced by server.forwarded_allow_ips"),
    ],
)
def test_a_bad_value_fails_start_up_naming_the_key(
    make_config: Callable[..., Config], var: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as failed:
        make_config(environ={var: value})
    key = "ratelimit." + var.removeprefix("APP_RATELIMIT__").lower()
    assert f"{key} (from env {var}): " in str(failed.value)
    assert reason in str(failed.value)


def test_the_middleware_comes_after_the_request_id_logging_and_metrics_middleware(
    make_config: Callable[..., Config],
) -> None:
    """So a 429 still gets its request id, its access log line and its metrics."""
    steps = [(step.plugin, step.stage) for step in taskman.create_app(make_config()).taskman.pipeline.steps]
    order = [plugin for plugin, _ in steps]
    assert order.index("ratelimit") > max(order.index(name) for name in ("request_id", "logging", "metrics"))
    # Admission counts the request before auth enforces the route's rule (a 401 is counted too).
    assert steps.index(("ratelimit", "admit")) < steps.index(("auth", "authorize"))


# -- HTTP, memory storage ---------------------------------------------------------------------------------------------


def test_allowed_responses_carry_the_ratelimit_headers(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="3/minute", APP_RATELIMIT__WRITES="5/minute")
    read = client.simulate_get("/probe")
    write = client.simulate_post("/probe")
    assert read.status_code == write.status_code == 200
    assert {k: v for k, v in rate_headers(read).items() if k != "RateLimit-Reset"} == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
    }
    assert rate_headers(write)["RateLimit-Limit"] == "5" and rate_headers(write)["RateLimit-Remaining"] == "4"
    assert 1 <= int(read.headers["RateLimit-Reset"]) <= 60


def test_over_the_limit_is_a_429_problem_with_retry_after(client_with: Client, probe: ProbePlugin) -> None:
    client = client_with(APP_RATELIMIT__READS="2/minute")
    assert [client.simulate_get("/probe").status_code for _ in range(2)] == [200, 200]
    refused = client.simulate_get("/probe")

    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == PROBLEM
    body = refused.json
    assert body["status"] == 429 and body["title"] == "Too Many Requests" and body["instance"] == "/probe"
    assert "2 per 1 minute" in body["detail"]
    assert body["request_id"] == refused.headers["X-Request-ID"]
    assert rate_headers(refused)["RateLimit-Limit"] == "2" and rate_headers(refused)["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert probe.probe.calls == 2  # the refused request never reached the resource


def test_retry_after_is_the_storage_window_not_a_constant(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/hour")
    client.simulate_get("/probe")
    refused = client.simulate_get("/probe")
    assert refused.status_code == 429
    assert 3600 - 300 < int(refused.headers["Retry-After"]) <= 3600


def test_reads_and_writes_have_separate_budgets(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute", APP_RATELIMIT__WRITES="2/minute")
    assert client.simulate_get("/probe").status_code == 200
    assert client.simulate_get("/probe").status_code == 429
    assert client.simulate_head("/probe").status_code == 429
    assert client.simulate_post("/probe").status_code == 200
    assert client.simulate_put("/probe").headers["RateLimit-Remaining"] == "0"
    assert client.simulate_patch("/probe").status_code == 429
    assert client.simulate_delete("/probe").status_code == 429


def test_options_is_never_limited(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute", APP_RATELIMIT__WRITES="1/minute")
    client.simulate_get("/probe")
    client.simulate_post("/probe")
    preflights = [client.simulate_options("/probe") for _ in range(3)]
    assert [r.status_code for r in preflights] == [200, 200, 200]
    assert all(not rate_headers(r) for r in preflights)


def test_anonymous_clients_are_limited_per_address(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute")
    assert client.simulate_get("/probe", remote_addr="192.0.2.1").status_code == 200
    assert client.simulate_get("/probe", remote_addr="192.0.2.1").status_code == 429
    assert client.simulate_get("/probe", remote_addr="192.0.2.2").status_code == 200


def test_anonymous_callers_have_stricter_budgets_of_their_own(client_with: Client) -> None:
    client = client_with(
        APP_RATELIMIT__READS="3/minute",
        APP_RATELIMIT__WRITES="3/minute",
        APP_RATELIMIT__ANONYMOUS_READS="1/minute",
        APP_RATELIMIT__ANONYMOUS_WRITES="1/minute",
    )
    anonymous = client.simulate_post("/probe", remote_addr="192.0.2.1")
    assert anonymous.headers["RateLimit-Limit"] == "1"
    refused = client.simulate_post("/probe", remote_addr="192.0.2.1")
    assert refused.status_code == 429
    assert refused.json["detail"].startswith("Too many writes without a token from this client: the limit is 1 per")
    assert "Send a token for a larger budget." in refused.json["detail"]
    assert client.simulate_get("/probe", remote_addr="192.0.2.1").headers["RateLimit-Limit"] == "1"
    # A token from the same address spends its own, larger budget.
    token = {PRINCIPAL_HEADER: "tm_a"}
    answers = [client.simulate_post("/probe", headers=token, remote_addr="192.0.2.1") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert answers[3].json["detail"].startswith("Too many writes from this client: the limit is 3 per")


def test_a_script_seeding_hundreds_of_records_meets_no_default_limit(make_client: Client) -> None:
    """The defaults serve a real first user: 400 writes and as many reads in a minute, with a token."""
    defaults = RateLimitSettings()
    client = make_client(
        environ={
            "APP_AUTH__ALLOW_ANONYMOUS": "false",
            "APP_RATELIMIT__READS": defaults.reads,
            "APP_RATELIMIT__WRITES": defaults.writes,
        }
    )
    token, _ = TokenStore().create("seeder", "write")
    headers = {"Authorization": f"Bearer {token}"}
    project = {"id": "P-1", "name": "Seed", "mission": "m", "owner": "o"}
    assert client.simulate_post("/api/v1/projects", json=project, headers=headers).status_code == 201
    statuses = set()
    for n in range(400):
        task = {"id": f"T-{n}", "title": f"Task {n}", "project_id": "P-1"}
        statuses.add(client.simulate_post("/api/v1/tasks", json=task, headers=headers).status_code)
        statuses.add(client.simulate_get(f"/api/v1/tasks/T-{n}", headers=headers).status_code)
    assert statuses == {200, 201}
    last = client.simulate_get("/api/v1/tasks/T-0", headers=headers)
    assert int(last.headers["RateLimit-Remaining"]) > 1000


def test_tokens_are_limited_per_token_whatever_their_address(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute")

    def get(prefix: str | None, address: str) -> int:
        headers = {PRINCIPAL_HEADER: prefix} if prefix else {}
        return int(client.simulate_get("/probe", headers=headers, remote_addr=address).status_code)

    assert get("tm_a", "192.0.2.1") == 200
    assert get("tm_a", "192.0.2.2") == 429  # same token, another address: same budget
    assert get("tm_b", "192.0.2.1") == 200  # another token: its own budget
    assert get(None, "192.0.2.1") == 200  # anonymous from that address: the address's budget


def test_forwarded_for_never_chooses_the_budget(client_with: Client) -> None:
    """The client address is the server's to resolve (server.forwarded_allow_ips): a header cannot pick a budget."""
    client = client_with(APP_RATELIMIT__READS="1/minute")
    spoofed = [client.simulate_get("/probe", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in (1, 2)]
    assert spoofed == [200, 429]


def test_probes_and_scrapes_are_never_limited(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute")
    for path in ("/health/live", "/metrics"):
        answers = [client.simulate_get(path) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 200], path
        assert all(not rate_headers(r) for r in answers), path


def test_exempt_paths_are_configurable(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute", APP_RATELIMIT__EXEMPT_PATHS="/probe")
    assert [client.simulate_get("/probe").status_code for _ in range(3)] == [200, 200, 200]
    assert client.simulate_get("/gone").status_code == 404
    assert client.simulate_get("/gone").status_code == 429


def test_paths_no_route_serves_are_not_counted(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="1/minute")
    misses = [client.simulate_get("/no/such/path") for _ in range(3)]
    assert [r.status_code for r in misses] == [404, 404, 404]
    assert all(not rate_headers(r) for r in misses)
    assert client.simulate_get("/probe").status_code == 200


def test_error_responses_of_counted_requests_carry_the_headers_too(client_with: Client) -> None:
    client = client_with(APP_RATELIMIT__READS="5/minute")
    missing = client.simulate_get("/gone")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == PROBLEM
    assert rate_headers(missing)["RateLimit-Remaining"] == "4"


def test_disabling_the_plugin_removes_limits_and_headers(client_with: Client) -> None:
    client = client_with(APP_PLUGINS__DISABLE="ratelimit", APP_RATELIMIT__READS="1/minute")
    answers = [client.simulate_get("/probe") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert all(not rate_headers(r) and "Retry-After" not in r.headers for r in answers)


def test_memory_storage_counts_per_app(client_with: Client) -> None:
    first = client_with(APP_RATELIMIT__READS="1/minute")
    second = client_with(APP_RATELIMIT__READS="1/minute")
    assert first.simulate_get("/probe").status_code == second.simulate_get("/probe").status_code == 200


# -- HTTP, Redis storage ----------------------------------------------------------------------------------------------


def test_two_workers_share_one_limit_through_redis(client_with: Client, redis_server: RedisServer) -> None:
    settings = {"APP_RATELIMIT__READS": "3/minute", "APP_RATELIMIT__STORAGE_URL": redis_server.url}
    worker_a, worker_b = client_with(**settings), client_with(**settings)
    answers = [worker.simulate_get("/probe") for worker in (worker_a, worker_b, worker_a, worker_b)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


def test_the_key_prefix_separates_apps_sharing_a_redis(client_with: Client, redis_server: RedisServer) -> None:
    settings = {"APP_RATELIMIT__READS": "1/minute", "APP_RATELIMIT__STORAGE_URL": redis_server.url}
    billing = client_with(APP_RATELIMIT__KEY_PREFIX="billing", **settings)
    shop = client_with(APP_RATELIMIT__KEY_PREFIX="shop", **settings)
    assert billing.simulate_get("/probe").status_code == shop.simulate_get("/probe").status_code == 200
    assert billing.simulate_get("/probe").status_code == 429


def our_redis_connections(server: RedisServer, expected: int) -> int:
    """Clients connected to ``server`` besides this probe, once that count is ``expected`` (or after a deadline)."""
    probe = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        deadline = time.monotonic() + 10
        while True:
            count = int(probe.info("clients")["connected_clients"]) - 1
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.02)
    finally:
        probe.close()


def test_stopping_the_app_closes_its_redis_connections(
    client_with: Client, redis_server: RedisServer, asgi: bool
) -> None:
    client = client_with(APP_RATELIMIT__STORAGE_URL=redis_server.url)
    assert rate_headers(client.simulate_get("/probe"))
    # ASGI: the client of the event loop closes at the end of the lifespan (one per request in falcon's test client).
    assert our_redis_connections(redis_server, expected=0 if asgi else 1) == (0 if asgi else 1)
    taskman.stop(client.app)
    assert our_redis_connections(redis_server, expected=0) == 0


def test_fail_open_keeps_serving_while_redis_is_down_and_limits_again_after(
    client_with: Client, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_with(
        APP_RATELIMIT__READS="5/minute",
        APP_RATELIMIT__STORAGE_URL=redis_server.url,
        APP_RATELIMIT__STORAGE_RETRY_INTERVAL="0",
    )
    assert rate_headers(client.simulate_get("/probe"))["RateLimit-Remaining"] == "4"

    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="taskman.ratelimit"):
        while_down = [client.simulate_get("/probe") for _ in range(3)]
    assert [r.status_code for r in while_down] == [200, 200, 200]
    assert all(not rate_headers(r) for r in while_down)
    warnings = warnings_logged(caplog)
    assert len(warnings) == 1
    assert warnings[0].storage_failure == "open" and "Connection" in warnings[0].error  # type: ignore[attr-defined]

    redis_server.start()  # same port, empty: counting starts over
    assert rate_headers(client.simulate_get("/probe"))["RateLimit-Remaining"] == "4"


def test_fail_closed_answers_503_while_the_storage_is_unreachable(
    client_with: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_with(
        APP_RATELIMIT__STORAGE_URL=f"redis://127.0.0.1:{free_port()}/0",
        APP_RATELIMIT__STORAGE_FAILURE="closed",
        APP_RATELIMIT__STORAGE_RETRY_INTERVAL="2.5",
    )
    with caplog.at_level(logging.WARNING, logger="taskman.ratelimit"):
        refused = [client.simulate_get("/probe"), client.simulate_post("/probe")]
    for answer in refused:
        assert answer.status_code == 503 and answer.headers["Content-Type"] == PROBLEM
        assert answer.headers["Retry-After"] == "3"
        assert answer.json["detail"] == "Rate limiting is unavailable; retry later."
        assert not rate_headers(answer)
    assert len(warnings_logged(caplog)) == 1
    assert client.simulate_get("/health/live").status_code == 200
    assert client.simulate_options("/probe").status_code == 200


@pytest.mark.parametrize("mode,status", [("open", 200), ("closed", 503)])
def test_a_redis_that_never_answers_times_out(client_with: Client, silent_port: int, mode: str, status: int) -> None:
    client = client_with(
        APP_RATELIMIT__STORAGE_URL=f"redis://127.0.0.1:{silent_port}/0",
        APP_RATELIMIT__STORAGE_FAILURE=mode,
        APP_RATELIMIT__STORAGE_TIMEOUT="0.2",
    )
    assert client.simulate_get("/probe").status_code == status


def test_the_redis_fixture_fails_rather_than_skips_without_redis_server(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, executable="redis-server-that-is-not-installed")
    with pytest.raises(pytest.fail.Exception, match="was not found on PATH"):
        server.start()


def test_the_openapi_document_lists_429_on_limited_operations_only(client_with: Client) -> None:
    paths = client_with().simulate_get("/api/openapi.json").json["paths"]
    assert "429" in paths["/api/v1/tasks"]["post"]["responses"]
    assert "429" in paths["/api/v1/tasks/{task_id}"]["get"]["responses"]
    assert "429" not in paths["/health/live"]["get"]["responses"]  # exempt
    assert "429" not in paths["/metrics"]["get"]["responses"]
