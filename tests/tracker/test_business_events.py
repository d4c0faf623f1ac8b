"""The tracker feeds business_metrics: its events follow that plugin's contract, and active_tasks counts its table."""

from __future__ import annotations

import pytest
from prometheus_client import values
from taskman_plugins.metrics.multiprocess import ENV_VAR

from tests.test_metrics import promtool_check, total
from tests.tracker.conftest import Api


@pytest.fixture(autouse=True)
def _single_process_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)


def test_tracker_changes_show_in_the_business_metrics(api: Api) -> None:
    api.project()
    api.sprint()
    for n, priority in enumerate(("p0", "p1", "p1")):
        api.task(f"T-{n}", priority=priority, sprint_id="S-1", estimate_points=2)
    api.done("T-0")
    api.move("T-1", "dropped")
    api.post("/sprints/S-1/start")
    api.post("/sprints/S-1/close")

    scrape = api.client.simulate_get("/metrics")
    assert scrape.status_code == 200
    text = scrape.text
    assert total(text, "tasks_created_total", {"priority": "p1"}) == 2
    assert total(text, "tasks_completed_total", {"priority": "p0"}) == 1
    assert total(text, "task_status_transitions_total", {"from": "in_progress", "to": "done"}) == 1
    assert total(text, "task_status_transitions_total", {"from": "new", "to": "dropped"}) == 1
    assert total(text, "task_duration_seconds_count", {"priority": "p0"}) == 1
    assert total(text, "active_tasks") == 1  # counted in the tracker's own table: T-2 only
    assert total(text, "sprint_velocity", {"project": "P-1"}) == 2
    assert total(text, "project_health_score", {"project": "P-1"}) is not None
    assert total(text, "business_events_rejected_total") is None
    promtool_check(text)
