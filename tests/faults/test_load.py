"""A bounded mixed read/write load (create, get, patch, list tasks) on two workers: no 5xx, no client errors.

Runs ``TASKMAN_LOAD_SECONDS`` seconds (default 60; CI sets 10) per flavour,
with a few keep-alive client threads.  Prints the request count and rate;
asserts none of it, only that every request got a whole, expected answer.
Runs on SQLite, or on PostgreSQL with ``TASKMAN_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import API, FaultServer, Workload, answered, failures, summary, unexpected

pytestmark = pytest.mark.servers

LOAD_SECONDS = float(os.environ.get("TASKMAN_LOAD_SECONDS", "60"))
CLIENT_THREADS = 4


@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_a_bounded_mixed_load_gets_only_expected_answers(
    fault_server: Callable[..., FaultServer], database_url: str, flavour: str
) -> None:
    server = fault_server(flavour, database_url)
    project = {"id": "P-load", "name": "Load", "mission": "Carry it", "owner": "ops"}
    assert server.call("POST", f"{API}/projects", project).status == 201
    workers = server.workers()

    workload = Workload(server, "P-load", threads=CLIENT_THREADS).start()
    time.sleep(LOAD_SECONDS)  # the load's duration itself, not a wait for something to happen
    workload.stop()

    outcomes = workload.outcomes
    seconds = workload.finished - workload.began
    print(
        f"\n{flavour}: {len(outcomes)} requests in {seconds:.1f}s ({len(outcomes) / seconds:.0f} rps), "
        f"{CLIENT_THREADS} clients, {len(workload.created)} tasks created; {summary(outcomes)}"
    )
    assert failures(outcomes) == [], summary(failures(outcomes))
    assert unexpected(outcomes) == [], summary(unexpected(outcomes))
    assert {o.op for o in answered(outcomes)} == {"create", "get", "patch", "list"}
    assert server.workers() == workers, "a worker died or was replaced under load"
    assert "Traceback" not in server.log
