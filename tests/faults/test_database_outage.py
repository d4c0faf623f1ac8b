"""PostgreSQL stops in the middle of a mixed load, then comes back; the servers ride it out without a restart.

The database is a private cluster (``tests/pgcluster.py``) that the test
stops with ``pg_ctl -m fast`` and starts again: never the shared server.
While it is down, liveness stays 200, readiness answers 503 at the first
probe, the API answers 503 problem+json with ``Retry-After`` and no worker
dies; once it is back, the API answers 2xx again within a bounded wait, and
every task the API acknowledged with 201 is in the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    API,
    FaultServer,
    Workload,
    answered,
    failures,
    problem,
    stored_task_ids,
    summary,
    unexpected,
    wait_for,
)
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.servers


def post_project(server: FaultServer, project_id: str) -> None:
    body = {"id": project_id, "name": "Outage", "mission": "Survive", "owner": "ops"}
    reply = server.call("POST", f"{API}/projects", body)
    assert reply.status == 201, reply.body


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_the_service_survives_a_database_outage_under_load(
    fault_server: Callable[..., FaultServer], pg_cluster: PgCluster, private_database_url: str, flavour: str
) -> None:
    server = fault_server(flavour, private_database_url)
    post_project(server, "P-out")
    workers = server.workers()
    workload = Workload(server, "P-out", threads=3).start()
    try:
        workload.wait_for("load before the outage", lambda outcomes: len(answered(outcomes)) >= 30)

        pg_cluster.stop()
        stopped_at = time.monotonic()

        ready = server.readiness()  # the first probe after the stop already knows
        assert ready.status == 503, ready.body
        assert ready.json()["checks"]["database"]["status"] == "unhealthy"
        live = server.call("GET", "/health/live")
        assert live.status == 200, live.body
        refused = server.call("POST", f"{API}/tasks", {"id": "T-during", "title": "No", "project_id": "P-out"})
        body = problem(refused, 503)
        assert int(refused.headers["retry-after"]) >= 1
        assert "database" in body["detail"].lower()
        listing = server.call("GET", f"{API}/tasks")
        problem(listing, 503)
        workload.wait_for(
            "the load to meet the outage",
            lambda outcomes: sum(1 for o in outcomes if o.started >= stopped_at and o.status == 503) >= 10,
        )
        assert server.workers() == workers, "a worker died or was replaced during the outage"

        pg_cluster.start()
        restarted_at = time.monotonic()

        def serves_again() -> bool:
            reply = server.call("GET", f"{API}/tasks?project_id=P-out&limit=1")
            return reply.status == 200

        wait_for("the API to answer 2xx after the database came back", serves_again)
        wait_for("readiness 200 after the database came back", lambda: server.readiness().status == 200)
        workload.wait_for(
            "writes acknowledged after the outage",
            lambda outcomes: sum(1 for o in outcomes if o.started >= restarted_at and o.status == 201) >= 10,
        )
    finally:
        workload.stop()
        if not pg_cluster.running:
            pg_cluster.start()

    outcomes = workload.outcomes
    print(f"\n{flavour}: {len(outcomes)} requests; {summary(outcomes)}")
    assert failures(outcomes) == [], summary(failures(outcomes))  # the server never dropped a connection
    assert unexpected(outcomes, also={503}) == [], summary(unexpected(outcomes, also={503}))
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, "the load never met the outage"
    assert all(o.content_type == "application/problem+json" and o.retry_after for o in unavailable)
    assert server.workers() == workers, "a worker died or was replaced"
    assert server.proc.poll() is None

    stored = stored_task_ids(private_database_url)
    missing = set(workload.created) - stored
    assert not missing, f"acknowledged with 201 but not stored: {sorted(missing)}"
    assert "T-during" not in stored
