"""business_metrics: events in, metrics out on the metrics plugin's /metrics; active_tasks from the database.

Until the tracker plugin lands, events are fired with ``app.taskman.fire_event``
(and, under real servers, by the ``taskman-metrics-probe`` fixture
distribution), and the ``task`` table is created by the tests.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
from collections.abc import Callable, Iterator
from typing import Any

import falcon.testing
import peewee
import pytest
from prometheus_client import values
from taskman_plugins import business_metrics
from taskman_plugins.business_metrics import events
from taskman_plugins.business_metrics.active import ActiveTasksCollector
from taskman_plugins.business_metrics.recorder import OTHER, LabelLimiter
from taskman_plugins.metrics.multiprocess import ENV_VAR

from taskman.config import ConfigError
from tests import test_metrics
from tests.conftest import database_for, disabling
from tests.test_metrics import MetricsServer, parse_scrape, promtool_check, total

# The real-server fixtures of the metrics tests.
metrics_server = test_metrics.metrics_server
probe_pythonpath = test_metrics.probe_pythonpath

Client = Callable[..., falcon.testing.TestClient]

#: These tests make a ``task`` table of their own; tests/tracker covers the tracker feeding these metrics.
WITHOUT_TRACKER = {"APP_PLUGINS__DISABLE": "tracker"}


@pytest.fixture(autouse=True)
def _single_process_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process apps use the single-process mode, whatever the environment (or an earlier test) says."""
    monkeypatch.setenv(ENV_VAR, "")  # so that teardown restores the value from before the test
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)


@pytest.fixture
def make_config(make_config: Callable[..., Any]) -> Callable[..., Any]:
    """Without the tracker (see WITHOUT_TRACKER)."""
    return disabling(make_config, "tracker", "auth")


def make_tasks_table(db: peewee.Database, name: str = "task", column: str = "status") -> Any:
    class Row(peewee.Model):
        priority = peewee.TextField(null=True)

        class Meta:
            table_name = name

    Row._meta.add_field(column, peewee.TextField(null=True))
    Row.bind(db)
    db.create_tables([Row])
    return Row


@pytest.fixture
def tasks(database_url: str) -> Iterator[Callable[..., Any]]:
    """``tasks(*statuses, table="task", column="status")``: create the table (once) and insert rows."""
    db = database_for(database_url)
    models: dict[tuple[str, str], Any] = {}

    def add(*statuses: str | None, table: str = "task", column: str = "status") -> Any:
        model = models.get((table, column))
        if model is None:
            model = models[(table, column)] = make_tasks_table(db, table, column)
        for status in statuses:
            model.insert({column: status}).execute()
        db.close_all()
        return model

    yield add
    db.close_all()


def scrape(client: falcon.testing.TestClient) -> str:
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    return result.text


# -- reading payloads ---------------------------------------------------------------


def test_timestamps_from_datetimes_iso_strings_and_epoch_seconds() -> None:
    aware = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    assert events.timestamp(aware, "t") == aware.timestamp()
    assert events.timestamp(datetime.datetime(2024, 5, 1, 12, 0), "t") == aware.timestamp(), "naive means UTC"
    assert events.timestamp("2024-05-01T12:00:00Z", "t") == aware.timestamp()
    assert events.timestamp("2024-05-01T14:00:00+02:00", "t") == aware.timestamp()
    assert events.timestamp(1714564800, "t") == 1714564800.0
    for bad in ("yesterday", True, float("nan"), ["2024"], None):
        with pytest.raises(events.InvalidEvent, match="t"):
            events.timestamp(bad, "t")


def test_completion_duration_from_created_at_or_given() -> None:
    done = events.parse_task_completed(
        {"priority": "high", "created_at": "2024-05-01T12:00:00Z", "completed_at": "2024-05-01T13:30:00Z"}
    )
    assert done == events.TaskCompleted(priority="high", duration=5400.0)
    now = datetime.datetime(2024, 5, 2, tzinfo=datetime.UTC).timestamp()
    assert events.parse_task_completed({"created_at": now - 60}, now=lambda: now).duration == 60
    assert events.parse_task_completed({"duration_seconds": 7, "created_at": "junk"}).duration == 7
    assert events.parse_task_completed({}) == events.TaskCompleted(priority="none", duration=None)
    with pytest.raises(events.InvalidEvent, match="before created_at"):
        events.parse_task_completed({"created_at": 200, "completed_at": 100})
    with pytest.raises(events.InvalidEvent, match="duration_seconds"):
        events.parse_task_completed({"duration_seconds": -1})


def test_required_fields_and_label_values() -> None:
    assert events.parse_status_changed({"from": "todo", "to": " doing "}) == events.StatusChanged("todo", "doing")
    assert events.parse_task_created({"priority": 2}) == events.TaskCreated("2")
    assert events.parse_task_created({"priority": ""}) == events.TaskCreated("none")
    assert events.parse_sprint_closed({"project_id": 7, "completed_points": 21}) == events.SprintClosed("7", 21.0)
    assert events.parse_health_changed({"project_id": "p", "score": -0.5}) == events.HealthChanged("p", -0.5)
    for parse, payload, field in [
        (events.parse_status_changed, {"to": "done"}, "from is required"),
        (events.parse_task_created, {"priority": {"nested": 1}}, "priority must be a string"),
        (events.parse_sprint_closed, {"project_id": "p"}, "completed_points is required"),
        (events.parse_sprint_closed, {"project_id": "p", "completed_points": -3}, "completed_points must be >= 0"),
        (events.parse_health_changed, {"project_id": "p", "score": "high"}, "score must be a finite number"),
        (events.parse_health_changed, {"score": 1}, "project_id is required"),
    ]:
        with pytest.raises(events.InvalidEvent, match=field):
            parse(payload)


def test_label_values_are_bounded_per_label() -> None:
    label = LabelLimiter(2)
    assert [label("priority", v) for v in ("low", "high", "urgent", "low")] == ["low", "high", OTHER, "low"]
    assert label("status", "urgent") == "urgent", "each label has its own budget"
    assert label("status", "x" * 500) == "x" * 64


# -- events through the app, on both flavours ----------------------------------------


def test_events_update_the_business_metrics(make_client: Client) -> None:
    client = make_client()
    fire = client.app.taskman.fire_event
    fire("task.created", {"task_id": 101, "project_id": "alpha", "priority": "high", "status": "todo"})
    fire("task.created", {"task_id": 102, "priority": "high"})
    fire("task.created", {"task_id": 103, "priority": "low"})
    fire("task.created", {"task_id": 104})
    fire("task.status_changed", {"task_id": 101, "from": "todo", "to": "in_progress"})
    fire("task.status_changed", {"task_id": 101, "from": "in_progress", "to": "done"})
    fire(
        "task.completed",
        {"task_id": 101, "priority": "high", "created_at": "2024-05-01T12:00:00Z", "completed_at": "2024-05-01T14:00Z"},
    )
    fire("sprint.closed", {"project_id": "alpha", "sprint_id": 9, "completed_points": 34})
    fire("project.health_changed", {"project_id": "alpha", "score": 80})
    fire("project.health_changed", {"project_id": "alpha", "score": 72.5})

    text = scrape(client)
    assert total(text, "tasks_created_total", {"priority": "high"}) == 2
    assert total(text, "tasks_created_total", {"priority": "low"}) == 1
    assert total(text, "tasks_created_total", {"priority": "none"}) == 1
    assert total(text, "task_status_transitions_total", {"from": "todo", "to": "in_progress"}) == 1
    assert total(text, "task_status_transitions_total", {"from": "in_progress", "to": "done"}) == 1
    assert total(text, "tasks_completed_total", {"priority": "high"}) == 1
    assert total(text, "task_duration_seconds_count", {"priority": "high"}) == 1
    assert total(text, "task_duration_seconds_sum", {"priority": "high"}) == 7200
    assert total(text, "task_duration_seconds_bucket", {"priority": "high", "le": "3600.0"}) == 0
    assert total(text, "task_duration_seconds_bucket", {"priority": "high", "le": "7200.0"}) == 1
    assert total(text, "sprint_velocity", {"project": "alpha"}) == 34
    assert total(text, "project_health_score", {"project": "alpha"}) == 72.5
    assert total(text, "business_events_rejected_total") is None
    # Ids never become labels (look at labels, not the text: timestamps are digits too).
    samples = parse_scrape(text)
    assert not {name for _, labels, _ in samples for name in labels} & {"task_id", "sprint_id"}
    assert not {value for _, labels, _ in samples for value in labels.values()} & {"101", "102", "9"}
    promtool_check(text)


def test_bad_payloads_are_counted_and_logged_never_raised(
    make_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    fire = client.app.taskman.fire_event
    with caplog.at_level(logging.WARNING, logger="taskman.business_metrics"):
        fire("task.status_changed", {"to": "done"})
        fire("task.completed", {"created_at": "not a date"})
        fire("sprint.closed", {"project_id": "alpha", "completed_points": "many"})
        fire("task.created", {"priority": "high"})
    text = scrape(client)
    assert total(text, "business_events_rejected_total", {"event": "task.status_changed"}) == 1
    assert total(text, "business_events_rejected_total", {"event": "task.completed"}) == 1
    assert total(text, "business_events_rejected_total", {"event": "sprint.closed"}) == 1
    assert total(text, "tasks_created_total", {"priority": "high"}) == 1
    assert total(text, "tasks_completed_total") is None
    rejected = [r for r in caplog.records if r.getMessage() == "business_event_rejected"]
    assert [getattr(r, "event", None) for r in rejected] == ["task.status_changed", "task.completed", "sprint.closed"]


def test_other_events_are_left_alone(make_client: Client) -> None:
    client = make_client()
    recorder = business_metrics.current(client.app.taskman)
    assert recorder is not None
    assert recorder.handle("audit.logged", {"anything": 1}) is False
    client.app.taskman.fire_event("task.deleted", {"task_id": 1})
    text = scrape(client)
    assert total(text, "business_events_rejected_total") is None
    assert total(text, "tasks_created_total") is None


def test_label_values_beyond_the_limit_become_other(make_client: Client) -> None:
    client = make_client(environ={"APP_BUSINESS_METRICS__LABEL_VALUES": "2"})
    for priority in ("low", "high", "p3", "p4", "low"):
        client.app.taskman.fire_event("task.created", {"priority": priority})
    text = scrape(client)
    assert total(text, "tasks_created_total", {"priority": "low"}) == 2
    assert total(text, "tasks_created_total", {"priority": "high"}) == 1
    assert total(text, "tasks_created_total", {"priority": OTHER}) == 2


# -- active_tasks from the database ---------------------------------------------------


@pytest.mark.empty_database  # (makes a task table of its own)
def test_active_tasks_counts_the_non_terminal_rows(make_client: Client, tasks: Callable[..., Any]) -> None:
    tasks("todo", "in_progress", "done", "dropped", None, "todo")
    client = make_client()
    assert total(scrape(client), "active_tasks") == 4
    tasks("done", "review")
    assert total(scrape(client), "active_tasks") == 5, "counted at each scrape"


@pytest.mark.empty_database  # (makes a task table of its own)
def test_active_tasks_is_zero_until_the_table_exists(make_client: Client, tasks: Callable[..., Any]) -> None:
    client = make_client()
    text = scrape(client)
    assert "# TYPE active_tasks gauge" in text
    assert total(text, "active_tasks") == 0
    tasks("todo")
    assert total(scrape(client), "active_tasks") == 1


@pytest.mark.empty_database  # (makes a task table of its own)
def test_active_tasks_table_column_and_terminal_statuses_are_configurable(
    make_client: Client, tasks: Callable[..., Any]
) -> None:
    tasks("open", "closed", "done", table="work_item", column="state")
    tasks("todo", "todo")
    client = make_client(
        environ={
            "APP_BUSINESS_METRICS__TASKS_TABLE": "work_item",
            "APP_BUSINESS_METRICS__STATUS_COLUMN": "state",
            "APP_BUSINESS_METRICS__TERMINAL_STATUSES": "closed,archived",
        }
    )
    assert total(scrape(client), "active_tasks") == 2  # "open" and "done": done is not terminal here


@pytest.mark.empty_database  # (makes a task table of its own)
def test_active_tasks_is_the_same_after_a_restart(make_client: Client, tasks: Callable[..., Any]) -> None:
    tasks("todo", "todo", "done")
    first = make_client()
    first.app.taskman.fire_event("task.created", {"priority": "high"})
    assert total(scrape(first), "active_tasks") == 2
    second = make_client()  # a new process, as far as counters are concerned
    text = scrape(second)
    assert total(text, "active_tasks") == 2
    assert total(text, "tasks_created_total") is None


def test_a_database_error_leaves_active_tasks_out_of_that_scrape_only(
    make_client: Client, tasks: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    tasks("todo")
    client = make_client(environ={"APP_BUSINESS_METRICS__STATUS_COLUMN": "no_such_column"})
    with caplog.at_level(logging.WARNING, logger="taskman.business_metrics"):
        text = scrape(client)
    assert total(text, "active_tasks") is None
    assert total(text, "taskman_workers") == 1, "the rest of the scrape is served"
    assert any(r.getMessage() == "active_tasks_query_failed" for r in caplog.records)
    assert client.simulate_get("/nowhere").status_code == 404, "and the app goes on"


def test_the_collector_leaves_a_connection_it_did_not_open(database_url: str, tasks: Callable[..., Any]) -> None:
    tasks("todo", "done")
    db = database_for(database_url)
    try:
        collector = ActiveTasksCollector(db, "task", "status", ("done",))
        assert [m.name for m in collector.describe()] == ["active_tasks"]
        assert collector.count() == 1
        assert db.is_closed(), "opened for the count, returned after it"
        db.connect()
        assert collector.count() == 1
        assert not db.is_closed(), "the caller's connection stays open"
        db.close()
        assert ActiveTasksCollector(db, "missing_table", "status", ()).count() == 0
        assert ActiveTasksCollector(peewee.DatabaseProxy(), "task", "status", ()).count() is None
    finally:
        db.close_all()


@pytest.mark.parametrize(
    "var,value,reason",
    [
        ("APP_BUSINESS_METRICS__TASKS_TABLE", "task; DROP TABLE task", "table name"),
        ("APP_BUSINESS_METRICS__TASKS_TABLE", "a.b.c", "table name"),
        ("APP_BUSINESS_METRICS__STATUS_COLUMN", "status-1", "column name"),
        ("APP_BUSINESS_METRICS__DURATION_BUCKETS", "60,30", "strictly increasing"),
        ("APP_BUSINESS_METRICS__LABEL_VALUES", "0", ">= 1"),
    ],
)
def test_bad_settings_stop_start_up(make_config: Callable[..., Any], var: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(environ={var: value})
    assert var in str(caught.value)
    assert reason in str(caught.value)


def test_schema_qualified_tables_are_accepted(make_config: Callable[..., Any]) -> None:
    config = make_config(environ={"APP_BUSINESS_METRICS__TASKS_TABLE": "tracker.task"})
    assert config.business_metrics.tasks_table == "tracker.task"


# -- without the metrics plugin ---------------------------------------------------------


def test_without_the_metrics_plugin_events_are_ignored_and_the_app_runs(
    make_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="taskman.business_metrics"):
        client = make_client(environ={"APP_PLUGINS__DISABLE": "metrics"})
    assert business_metrics.current(client.app.taskman) is None
    assert any(r.getMessage() == "business_metrics_inactive" for r in caplog.records)
    client.app.taskman.fire_event("task.created", {"priority": "high"})
    client.app.taskman.fire_event("task.status_changed", {})  # not even validated
    assert client.simulate_get("/metrics").status_code == 404
    assert client.simulate_get("/nowhere").status_code == 404
    assert "business_metrics" in client.app.taskman.plugins.names


def test_disabling_business_metrics_leaves_http_metrics(make_client: Client) -> None:
    client = make_client(environ={"APP_PLUGINS__DISABLE": "business_metrics"})
    client.app.taskman.fire_event("task.created", {"priority": "high"})
    text = scrape(client)
    assert total(text, "tasks_created_total") is None
    assert total(text, "active_tasks") is None
    assert total(text, "taskman_workers") == 1


# -- real servers: two workers ----------------------------------------------------------


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_business_counts_are_exact_across_workers_and_active_tasks_survives_restarts(
    metrics_server: Callable[..., MetricsServer], tasks: Callable[..., Any], flavour: str
) -> None:
    tasks()  # the table, empty
    server = metrics_server(asgi=flavour == "asgi", environ=WITHOUT_TRACKER)
    workers = server.workers()
    statuses = ["todo", "in_progress", "done", "todo", "dropped"]
    sent: list[tuple[str, str]] = []
    served_by: set[int] = set()

    def create(i: int) -> int:
        status, priority = statuses[i % len(statuses)], "high" if i % 2 else "low"
        reply = server.request("POST", "/probe/tasks", json_body={"status": status, "priority": priority})
        assert reply.status == 201, reply
        sent.append((status, priority))
        return int(reply.json()["pid"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(sent) < 30 or not workers <= served_by:
            assert len(sent) < 2000, f"workers {workers - served_by} served no request:\n{server.log}"
            served_by.update(pool.map(create, range(len(sent), len(sent) + 10)))
    active = sum(1 for status, _ in sent if status not in ("done", "dropped"))
    for _ in range(4):
        text = server.scrape()
        assert total(text, "tasks_created_total") == len(sent)
        assert total(text, "tasks_created_total", {"priority": "high"}) == sum(1 for _, p in sent if p == "high")
        assert total(text, "active_tasks") == active
    promtool_check(text)
    assert server.stop() == 0, server.log

    again = metrics_server(asgi=flavour == "asgi", directory=server.directory, environ=WITHOUT_TRACKER)
    text = again.scrape()
    assert total(text, "active_tasks") == active, "read from the database, not remembered"
    assert total(text, "tasks_created_total") is None, "counters start again from zero"
    assert again.stop() == 0, again.log
