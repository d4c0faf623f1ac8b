"""A database that gets slow, then slower, then fast again: readiness follows, graded by the health thresholds.

A TCP proxy (``tests/tcpproxy.py``) sits between the server and a private
PostgreSQL cluster and delays every chunk it forwards; a ``SELECT 1`` round
trip then costs about twice the delay, and the check makes two.  With ``degraded_ms`` 100,
``unhealthy_ms`` 600 and ``timeout_ms`` 2000, readiness must go healthy (200)
-> degraded (200, ``"status": "degraded"``) -> unhealthy (503) as the delay
grows, and back to healthy when it drops: each stage is polled for, with a
deadline, since a probe may still join a check started at the previous delay.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.faults.harness import API, FaultServer, wait_for
from tests.servers import Reply
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.servers

THRESHOLDS = {
    "APP_HEALTH__DEGRADED_MS": "100",
    "APP_HEALTH__UNHEALTHY_MS": "600",
    "APP_HEALTH__TIMEOUT_MS": "2000",
}
#: Per-chunk delays (seconds).  A check crosses the proxy four times (two round trips: about 240 ms
#: and 1600 ms); were it two, the bands would still hold (120 ms, 800 ms).
FAST, SLOW, SLOWER = 0.0, 0.06, 0.4


def through(proxy: TcpProxy, database_url: str) -> str:
    """``database_url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{proxy.host}:{proxy.port}"))


def readiness_becomes(server: FaultServer, http_status: int, status: str) -> Reply:
    seen: list[Reply] = []

    def matches() -> bool:
        seen.append(server.readiness())
        report = seen[-1].json()
        return seen[-1].status == http_status and report["status"] == status == report["checks"]["database"]["status"]

    wait_for(f"readiness {http_status} {status}", matches, poll=0.1, detail=lambda: seen[-1:])
    return seen[-1]


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_readiness_follows_the_database_latency(
    fault_server: Callable[..., FaultServer], db_proxy: TcpProxy, private_database_url: str, flavour: str
) -> None:
    server = fault_server(flavour, through(db_proxy, private_database_url), environ=THRESHOLDS)
    healthy = readiness_becomes(server, 200, "healthy")
    assert healthy.json()["checks"]["database"]["latency_ms"] < 100

    db_proxy.set_delay(SLOW)
    degraded = readiness_becomes(server, 200, "degraded")
    assert 100 <= degraded.json()["checks"]["database"]["latency_ms"] <= 600
    assert server.call("GET", f"{API}/tasks?limit=1").status == 200  # slow, but serving

    db_proxy.set_delay(SLOWER)
    unhealthy = readiness_becomes(server, 503, "unhealthy")
    assert unhealthy.json()["checks"]["database"]["latency_ms"] > 600

    db_proxy.set_delay(FAST)
    readiness_becomes(server, 200, "healthy")
    assert server.call("GET", "/health/live").status == 200
