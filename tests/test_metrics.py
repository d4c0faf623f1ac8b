"""The metrics plugin: the plain parts, /metrics on both flavours, and exact counts under real multi-worker servers.

In-process tests run in the single-process mode (no ``PROMETHEUS_MULTIPROC_DIR``);
the multiprocess bookkeeping is tested on files written as several fake
workers would, then end to end under ``taskman serve --workers 2``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import falcon
import falcon.testing
import peewee
import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families
from taskman_plugins import metrics as metrics_plugin
from taskman_plugins.metrics import MetricsState, metrics_state, multiprocess
from taskman_plugins.metrics.http import UNMATCHED_ROUTE, HttpMetrics, PathFilter, normalize_method
from taskman_plugins.metrics.multiprocess import (
    ENV_VAR,
    FilesCollector,
    WorkerProcessCollector,
    metric_files,
    parse_file,
    prepare_directory,
    reap_dead_processes,
    retire_process,
)
from taskman_plugins.metrics.registry import MetricsRegistry
from taskman_plugins.metrics.web import MetricsMiddleware

import taskman
from taskman.asgi_adapters import adapt_middleware
from taskman.config import ConfigError
from taskman.plugins import PluginError
from tests.conftest import database_for
from tests.helpers import install_fixture_dist
from tests.servers import BOOT_DEADLINE, ServerLauncher, ServerProcess

Client = Callable[..., falcon.testing.TestClient]

DURATION_COUNT = "http_server_request_duration_seconds_count"


@pytest.fixture(autouse=True)
def _single_process_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process apps use the single-process mode, whatever the environment (or an earlier test) says."""
    monkeypatch.setenv(ENV_VAR, "")  # so that teardown restores the value from before the test
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)


# -- reading a scrape -------------------------------------------------------------


def parse_scrape(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """Sum of the samples called ``name`` whose labels include ``labels``; ``None`` if there is none."""
    wanted = dict(labels or {})
    found = [v for n, lab, v in parse_scrape(text) if n == name and wanted.items() <= lab.items()]
    return sum(found) if found else None


def label_values(text: str, label: str) -> set[str]:
    return {lab[label] for _, lab, _ in parse_scrape(text) if label in lab}


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian: apt-get install prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool:\n{result.stdout}{result.stderr}"
    assert result.stdout.strip() == result.stderr.strip() == "", result.stdout + result.stderr


# -- test plugins ------------------------------------------------------------------


class Thing:
    def on_get(self, req: Any, resp: Any, id: str) -> None:
        resp.media = {"id": id}

    def on_post(self, req: Any, resp: Any, id: str) -> None:
        resp.media = {"id": id, "got": req.get_media()}
        resp.status = falcon.HTTP_201


class Boom:
    def on_get(self, req: Any, resp: Any) -> None:
        raise RuntimeError("kaput")


class InFlight:
    """Reads ``http_server_active_requests`` while it is being served."""

    def __init__(self, plugin: ThingsPlugin) -> None:
        self.plugin = plugin

    def on_get(self, req: Any, resp: Any) -> None:
        state = metrics_state(self.plugin.runtime)
        labels = {"http_request_method": "GET", "url_scheme": "http"}
        resp.media = {"active": state.metrics.sample("http_server_active_requests", labels)}


class ThingsPlugin:
    taskman_plugin_name = "things"

    def __init__(self) -> None:
        self.runtime: Any = None

    @taskman.hookimpl
    def taskman_routes(self, runtime: Any) -> list[tuple[str, object]]:
        self.runtime = runtime
        return [
            ("/things/{id}", Thing()),
            ("/boom", Boom()),
            ("/in-flight", InFlight(self)),
            ("/health/extra", Thing()),
        ]


class Tally:
    """A scrape-time collector, as a plugin would add one."""

    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> list[Any]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        self.calls += 1
        return [GaugeMetricFamily("tally_scrapes", "Scrapes seen by the tally collector.", value=self.calls)]


class DeclaringPlugin:
    """Uses the metrics plugin's ``taskman_metrics`` hook."""

    taskman_plugin_name = "declaring"

    def __init__(self) -> None:
        self.widgets: Any = None
        self.tally = Tally()
        self.seen: list[tuple[MetricsRegistry, Any]] = []

    @taskman.hookimpl
    def taskman_metrics(self, metrics: MetricsRegistry, config: Any) -> None:
        self.seen.append((metrics, config))
        self.widgets = metrics.counter("widgets_made_total", "Widgets made.", ["colour"])
        metrics.collector(self.tally)


class BrokenDeclaringPlugin:
    taskman_plugin_name = "broken_declaring"

    @taskman.hookimpl
    def taskman_metrics(self, metrics: MetricsRegistry) -> None:
        metrics.counter("http_server_active_requests", "Clashes with the HTTP metrics.")


# -- the plain parts ---------------------------------------------------------------


def test_path_filter_matches_exact_paths_and_star_prefixes() -> None:
    paths = PathFilter(["/metrics", "/health/*"])
    assert paths.excluded("/metrics")
    assert paths.excluded("/health/live")
    assert paths.excluded("/health/")
    assert not paths.excluded("/health")
    assert not paths.excluded("/metrics/x")
    assert not paths.excluded("/things/1")
    assert not PathFilter([]).excluded("/metrics")


def test_methods_outside_the_standard_set_are_other() -> None:
    assert normalize_method("GET") == "GET"
    assert normalize_method("PATCH") == "PATCH"
    assert normalize_method("PURGE") == "_OTHER"
    assert normalize_method("get") == "_OTHER"


def test_http_metrics_record_duration_sizes_and_in_flight() -> None:
    registry = MetricsRegistry()
    http = HttpMetrics(registry, duration_buckets=(0.5, 1.0), size_buckets=(10.0, 100.0))
    labels = {"http_request_method": "POST", "url_scheme": "https"}
    timer = http.begin("POST", "https")
    assert registry.sample("http_server_active_requests", labels) == 1
    http.end(timer, "/things/{id}", 201, 42, None)
    assert registry.sample("http_server_active_requests", labels) == 0
    done = {**labels, "http_route": "/things/{id}", "http_response_status_code": "201"}
    assert registry.sample(DURATION_COUNT, done) == 1
    assert registry.sample("http_server_request_body_size_bytes_sum", done) == 42
    assert registry.sample("http_server_request_body_size_bytes_bucket", {**done, "le": "10.0"}) == 0
    assert registry.sample("http_server_request_body_size_bytes_bucket", {**done, "le": "100.0"}) == 1
    assert registry.sample("http_server_response_body_size_bytes_count", done) == 0, "unknown size: not observed"

    http.end(http.begin("BREW", "http"), None, 404, 0, 0)
    lost = {"http_request_method": "_OTHER", "http_route": UNMATCHED_ROUTE, "http_response_status_code": "404"}
    assert registry.sample(DURATION_COUNT, {**lost, "url_scheme": "http"}) == 1


def test_registry_refuses_a_name_twice_and_unknown_gauge_modes() -> None:
    registry = MetricsRegistry()
    registry.counter("widgets_total", "Widgets.")
    with pytest.raises(ValueError, match="already declared"):
        registry.counter("widgets", "Widgets again.")
    with pytest.raises(ValueError, match="multiprocess_mode"):
        registry.gauge("level", "Level.", multiprocess_mode="average")


def test_settings_come_from_the_environment_parsed_by_type(make_config: Callable[..., Any]) -> None:
    config = make_config(
        environ={
            "APP_METRICS__EXCLUDE": "/internal/*,/ping",
            "APP_METRICS__DURATION_BUCKETS": "0.1, 0.5,2",
            "APP_METRICS__PROCESS_METRICS": "off",
            "APP_METRICS__PATH": "/internal/metrics",
        }
    )
    assert config.metrics.exclude == ("/internal/*", "/ping")
    assert config.metrics.duration_buckets == (0.1, 0.5, 2.0)
    assert config.metrics.process_metrics is False
    assert config.metrics.path == "/internal/metrics"
    assert config.sources["metrics.exclude"] == "env APP_METRICS__EXCLUDE"


@pytest.mark.parametrize(
    "var,value,reason",
    [
        ("APP_METRICS__DURATION_BUCKETS", "1,0.5", "strictly increasing"),
        ("APP_METRICS__SIZE_BUCKETS", "", "at least one"),
        ("APP_METRICS__EXCLUDE", "metrics", "starting with '/'"),
        ("APP_METRICS__EXCLUDE", "/a*/b", "starting with '/'"),
        ("APP_METRICS__PATH", "/metrics/*", "without '*'"),
        ("APP_METRICS__PROCESS_METRICS", "maybe", "boolean"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_key(
    make_config: Callable[..., Any], var: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(environ={var: value})
    message = str(caught.value)
    assert var in message
    assert reason in message


# -- multiprocess files --------------------------------------------------------------


@attrs.define
class FakeWorker:
    """Metrics written as worker ``pid`` would write them, into the fixture's folder.

    One process stands in for several: each fake worker has its own
    file-backed value class, put in place before it touches a metric.
    """

    pid: int
    value_class: Any
    registry: MetricsRegistry
    http: HttpMetrics
    jobs: Any
    score: Any

    def act(self) -> FakeWorker:
        values.ValueClass = self.value_class
        return self

    def serve(self, route: str, n: int) -> None:
        self.act()
        for _ in range(n):
            self.http.end(self.http.begin("GET", "http"), route, 200, 0, 10)


@pytest.fixture
def make_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeWorker]:
    """``make_worker(pid, alive=True)``: a fake worker; ``alive`` is what the reaper will think of its pid."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    monkeypatch.setenv(ENV_VAR, str(directory))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    live: set[int] = set()
    real = multiprocess.pid_alive
    monkeypatch.setattr(multiprocess, "pid_alive", lambda pid: pid in live or real(pid))

    def make(pid: int, *, alive: bool = True) -> FakeWorker:
        if alive:
            live.add(pid)
        value_class = values.ValueClass = values.MultiProcessValue(process_identifier=lambda: pid)
        registry = MetricsRegistry(directory)
        http = HttpMetrics(registry, duration_buckets=(0.1, 1.0), size_buckets=(100.0,))
        jobs = registry.counter("jobs_total", "Jobs.", ["kind"])
        score = registry.gauge("score", "Score.", ["project"], multiprocess_mode="mostrecent")
        return FakeWorker(pid, value_class, registry, http, jobs, score)

    return make


def _count(registry: MetricsRegistry, route: str) -> float | None:
    labels = {"http_route": route, "http_request_method": "GET", "url_scheme": "http"}
    return registry.sample(DURATION_COUNT, {**labels, "http_response_status_code": "200"})


ACTIVE_GET = {"http_request_method": "GET", "url_scheme": "http"}


def test_file_names_are_recognised() -> None:
    assert parse_file(Path("counter_12.db")) == parse_file(Path("counter_12.db"))
    counter = parse_file(Path("counter_12.db"))
    assert counter is not None and (counter.kind, counter.mode, counter.pid) == ("counter", "", 12)
    gauge = parse_file(Path("gauge_livesum_7.db"))
    assert gauge is not None and (gauge.prefix, gauge.pid, gauge.mergeable) == ("gauge_livesum", 7, False)
    merged = parse_file(Path("gauge_mostrecent_merged.db"))
    assert merged is not None and (merged.prefix, merged.pid, merged.mergeable) == ("gauge_mostrecent", None, True)
    assert parse_file(Path("counter_x.db")) is None
    assert parse_file(Path("gauge_12.db")) is None
    assert parse_file(Path(".lock")) is None


def test_a_scrape_adds_up_every_workers_files(make_worker: Callable[..., FakeWorker]) -> None:
    one, two = make_worker(1001), make_worker(1002)
    one.serve("/a", 3)
    two.serve("/a", 4)
    two.serve("/b", 1)
    one.act().jobs.labels("x").inc(2)
    two.act().jobs.labels("x").inc(5)
    assert _count(one.registry, "/a") == 7
    assert _count(two.registry, "/b") == 1
    assert two.registry.sample("jobs_total", {"kind": "x"}) == 7


def test_a_retired_worker_keeps_its_counts_and_leaves_no_files(make_worker: Callable[..., FakeWorker]) -> None:
    one, two = make_worker(1001), make_worker(1002)
    directory = one.registry.directory
    assert directory is not None
    one.serve("/a", 3)
    two.serve("/a", 4)
    one.act().jobs.labels("x").inc(2)
    one.score.labels("p").set(0.25)
    one.http.begin("GET", "http")  # left in flight: a live gauge of a gone process means nothing
    assert two.registry.sample("http_server_active_requests", ACTIVE_GET) == 1

    retire_process(directory, 1001)

    assert {f.pid for f in metric_files(directory)} == {1002, None}
    assert _count(two.registry, "/a") == 7
    assert two.registry.sample("jobs_total", {"kind": "x"}) == 2
    assert two.registry.sample("score", {"project": "p"}) == 0.25
    assert two.registry.sample("http_server_active_requests", ACTIVE_GET) == 0
    body, _ = two.registry.render()
    promtool_check(body.decode())


def test_worker_churn_never_loses_counts_and_keeps_the_folder_bounded(
    make_worker: Callable[..., FakeWorker],
) -> None:
    survivor = make_worker(2000)
    directory = survivor.registry.directory
    assert directory is not None
    survivor.serve("/a", 1)
    expected = 1
    for pid in range(2001, 2031):
        worker = make_worker(pid)
        worker.serve("/a", pid % 3 + 1)
        worker.act().jobs.labels("y").inc()
        expected += pid % 3 + 1
        retire_process(directory, pid)
        assert _count(survivor.registry, "/a") == expected, "a retired worker's counts stay"
        assert len(list(directory.glob("*.db"))) <= 6, sorted(p.name for p in directory.glob("*.db"))
    assert survivor.registry.sample("jobs_total", {"kind": "y"}) == 30


def test_the_most_recent_gauge_value_wins_across_retired_workers(
    make_worker: Callable[..., FakeWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = make_worker(3001), make_worker(3002), make_worker(3003)
    clock = itertools.chain([100.0, 300.0, 200.0], itertools.repeat(50.0))
    monkeypatch.setattr("prometheus_client.metrics.time.time", lambda: next(clock))
    first.act().score.labels("p").set(1.0)  # t=100
    second.act().score.labels("p").set(2.0)  # t=300: the latest
    third.act().score.labels("p").set(3.0)  # t=200
    directory = first.registry.directory
    assert directory is not None
    retire_process(directory, 3002)
    retire_process(directory, 3001)
    assert third.registry.sample("score", {"project": "p"}) == 2.0


def test_dead_workers_are_reaped_and_live_ones_left_alone(make_worker: Callable[..., FakeWorker]) -> None:
    one, two = make_worker(4001), make_worker(4002)
    directory = one.registry.directory
    assert directory is not None
    one.serve("/a", 2)
    two.serve("/a", 5)
    assert reap_dead_processes(directory, alive=lambda pid: True) == []
    assert reap_dead_processes(directory, alive=lambda pid: pid != 4001) == [4001]
    assert {f.pid for f in metric_files(directory)} == {4002, None}
    assert _count(two.registry, "/a") == 7
    assert reap_dead_processes(directory, alive=lambda pid: pid != 4001) == []


def test_a_scrape_reaps_workers_that_were_killed(make_worker: Callable[..., FakeWorker], tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # a pid that no longer exists
    dead, alive = make_worker(dead_pid, alive=False), make_worker(os.getpid())
    dead.serve("/a", 4)
    alive.serve("/a", 1)
    directory = alive.registry.directory
    assert directory is not None
    assert any(f.pid == dead_pid for f in metric_files(directory))
    assert _count(alive.registry, "/a") == 5  # the scrape retired the dead worker's files...
    assert not any(f.pid == dead_pid for f in metric_files(directory))  # ...which are gone
    assert _count(alive.registry, "/a") == 5


def test_prepare_directory_creates_or_empties_the_folder(tmp_path: Path) -> None:
    fresh = prepare_directory(tmp_path / "new" / "dir")
    assert fresh.is_dir() and fresh.is_absolute()
    old = tmp_path / "old"
    old.mkdir()
    for name in ("counter_1.db", "histogram_merged.db", ".counter_merged.9.tmp", "notes.txt"):
        (old / name).write_bytes(b"x")
    prepare_directory(old)
    assert sorted(p.name for p in old.iterdir()) == [".lock", "notes.txt"]


def test_taskman_serve_empties_and_exports_the_folder(
    make_config: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = tmp_path / "configured"
    configured.mkdir()
    (configured / "histogram_merged.db").write_bytes(b"\0" * 8)
    config = make_config(overrides={"metrics": {"multiprocess_dir": str(configured)}})
    metrics_plugin.taskman_serve(config, 2)
    assert os.environ[ENV_VAR] == str(configured)
    assert not list(configured.glob("*.db"))

    from_env = tmp_path / "from-env"
    monkeypatch.setenv(ENV_VAR, str(from_env))
    metrics_plugin.taskman_serve(make_config(), 2)
    assert from_env.is_dir() and os.environ[ENV_VAR] == str(from_env)

    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    metrics_plugin.taskman_serve(make_config(), 2)
    private = Path(os.environ[ENV_VAR])
    assert private.parent == tmp_path / "tmp" and private.name.startswith("taskman-metrics-")
    assert private.is_dir()


def test_process_metrics_cover_each_live_worker_by_pid(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        for pid in (os.getpid(), sleeper.pid, int(gone.stdout)):
            (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        metrics = {m.name: m for m in WorkerProcessCollector(tmp_path).collect()}
        assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"} <= metrics.keys()
        pids = {s.labels["pid"] for s in metrics["process_resident_memory_bytes"].samples}
        assert pids == {str(os.getpid()), str(sleeper.pid)}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_files_collector_needs_no_describe_and_reads_an_empty_folder(tmp_path: Path) -> None:
    assert list(FilesCollector(tmp_path).collect()) == []


# -- /metrics on both flavours ------------------------------------------------------


def test_metrics_endpoint_serves_the_prometheus_text_format(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    client.simulate_get("/things/1")
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert result.headers["cache-control"] == "no-store"
    text = result.text
    for name, kind in [
        ("http_server_request_duration_seconds", "histogram"),
        ("http_server_active_requests", "gauge"),
        ("http_server_request_body_size_bytes", "histogram"),
        ("http_server_response_body_size_bytes", "histogram"),
        ("taskman_workers", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in text
    assert total(text, "taskman_workers") == 1


def test_openmetrics_when_the_scraper_asks_for_it(make_client: Client) -> None:
    client = make_client()
    result = client.simulate_get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert result.headers["content-type"].startswith("application/openmetrics-text")
    assert result.text.rstrip().endswith("# EOF")


def test_a_real_scrape_passes_promtool(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    client.simulate_get("/things/1")
    client.simulate_post("/things/2", json={"a": 1})
    client.simulate_get("/nowhere")
    client.simulate_get("/boom")
    client.app.taskman.fire_event("task.created", {"priority": "high"})
    text = client.simulate_get("/metrics").text
    assert total(text, DURATION_COUNT) == 4
    promtool_check(text)


def test_routes_are_labelled_by_template_and_unmatched_paths_share_one_label(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    for path in ("/things/1", "/things/2", "/things/3"):
        assert client.simulate_get(path).status_code == 200
    for path in ("/no/such/path", "/another/secret-123"):
        assert client.simulate_get(path).status_code == 404
    client.simulate_delete("/things/9")  # 405 on a matched route
    text = client.simulate_get("/metrics").text
    ok = {"http_route": "/things/{id}", "http_request_method": "GET", "http_response_status_code": "200"}
    assert total(text, DURATION_COUNT, {**ok, "url_scheme": "http"}) == 3
    lost = {"http_route": UNMATCHED_ROUTE, "http_response_status_code": "404"}
    assert total(text, DURATION_COUNT, lost) == 2
    assert total(text, DURATION_COUNT, {"http_route": "/things/{id}", "http_response_status_code": "405"}) == 1
    assert label_values(text, "http_route") == {"/things/{id}", UNMATCHED_ROUTE}
    for raw in ("/things/1", "/no/such/path", "secret-123"):
        assert raw not in text


def test_scrapes_and_health_probes_are_excluded_by_default(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    client.simulate_get("/metrics")
    client.simulate_get("/health/extra")
    client.simulate_get("/health/live")
    client.simulate_get("/things/1")
    text = client.simulate_get("/metrics").text
    assert label_values(text, "http_route") == {"/things/{id}"}
    assert total(text, DURATION_COUNT) == 1


def test_exclusions_are_configurable(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),), environ={"APP_METRICS__EXCLUDE": "/things/*"})
    client.simulate_get("/things/1")
    client.simulate_get("/health/extra")
    client.simulate_get("/metrics")
    text = client.simulate_get("/metrics").text
    assert total(text, DURATION_COUNT, {"http_route": "/metrics"}) == 1
    assert total(text, DURATION_COUNT, {"http_route": "/health/extra"}) == 1
    assert total(text, DURATION_COUNT, {"http_route": "/things/{id}"}) is None


def test_the_scrape_path_is_configurable(make_client: Client) -> None:
    client = make_client(overrides={"metrics": {"path": "/internal/metrics"}})
    assert client.simulate_get("/internal/metrics").status_code == 200
    assert client.simulate_get("/metrics").status_code == 404


def test_request_and_response_body_sizes(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    body = json.dumps({"title": "x" * 300}).encode()
    result = client.simulate_post("/things/7", body=body, headers={"Content-Type": "application/json"})
    assert result.status_code == 201
    get = client.simulate_get("/things/8")
    text = client.simulate_get("/metrics").text
    post = {"http_route": "/things/{id}", "http_request_method": "POST"}
    assert total(text, "http_server_request_body_size_bytes_sum", post) == len(body)
    assert total(text, "http_server_response_body_size_bytes_sum", post) == len(result.content)
    assert total(text, "http_server_response_body_size_bytes_bucket", {**post, "le": "256.0"}) == 0
    assert total(text, "http_server_response_body_size_bytes_bucket", {**post, "le": "1024.0"}) == 1
    got = {"http_route": "/things/{id}", "http_request_method": "GET"}
    assert total(text, "http_server_request_body_size_bytes_sum", got) == 0
    assert total(text, "http_server_response_body_size_bytes_sum", got) == len(get.content)
    client.simulate_head("/things/8")  # no body goes out, whatever the status
    text = client.simulate_get("/metrics").text
    assert total(text, "http_server_response_body_size_bytes_sum", {"http_request_method": "HEAD"}) == 0


def test_failures_are_counted_with_their_status_and_leave_nothing_in_flight(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    assert client.simulate_get("/boom").status_code == 500
    bad_json = client.simulate_post("/things/1", body="{bad", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    text = client.simulate_get("/metrics").text
    assert total(text, DURATION_COUNT, {"http_route": "/boom", "http_response_status_code": "500"}) == 1
    assert total(text, DURATION_COUNT, {"http_route": "/things/{id}", "http_response_status_code": "400"}) == 1
    assert total(text, "http_server_active_requests") == 0


def test_requests_in_flight_are_counted_while_they_run(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),))
    assert client.simulate_get("/in-flight").json == {"active": 1.0}
    text = client.simulate_get("/metrics").text
    assert total(text, "http_server_active_requests", {"http_request_method": "GET"}) == 0


def test_process_metrics_outside_taskman_serve(make_client: Client) -> None:
    client = make_client()
    state: MetricsState = metrics_state(client.app.taskman)
    assert not state.metrics.multiprocess, "no PROMETHEUS_MULTIPROC_DIR: a registry of the app's own"
    text = client.simulate_get("/metrics").text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        value = total(text, name)
        assert value is not None and value > 0, name
    assert "pid=" not in text
    quiet = make_client(environ={"APP_METRICS__PROCESS_METRICS": "false"}).simulate_get("/metrics").text
    assert total(quiet, "process_cpu_seconds_total") is None


def test_each_app_counts_from_zero_outside_taskman_serve(make_client: Client) -> None:
    first = make_client(plugins=(ThingsPlugin(),))
    first.simulate_get("/things/1")
    second = make_client(plugins=(ThingsPlugin(),))
    second.simulate_get("/things/1")
    second.simulate_get("/things/2")
    assert total(first.simulate_get("/metrics").text, DURATION_COUNT) == 1
    assert total(second.simulate_get("/metrics").text, DURATION_COUNT) == 2


def test_multiprocess_mode_in_one_process_keeps_counts_across_an_app_restart(
    make_client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a uvicorn worker does in-process: files while serving, merged at shut-down, new files after."""
    directory = prepare_directory(tmp_path / "multiproc")
    monkeypatch.setenv(ENV_VAR, str(directory))
    first = make_client(plugins=(ThingsPlugin(),))
    assert metrics_state(first.app.taskman).metrics.multiprocess
    for i in range(3):
        first.simulate_get(f"/things/{i}")
    text = first.simulate_get("/metrics").text
    assert total(text, DURATION_COUNT) == 3
    assert total(text, "process_cpu_seconds_total", {"pid": str(os.getpid())})
    assert any(f.pid == os.getpid() for f in metric_files(directory))
    taskman.stop(first.app)
    assert {f.pid for f in metric_files(directory)} == {None}, "shut-down folded this process's files"

    second = make_client(plugins=(ThingsPlugin(),))
    second.simulate_get("/things/9")
    second.simulate_get("/things/10")
    text = second.simulate_get("/metrics").text
    assert total(text, DURATION_COUNT) == 5
    assert total(text, "taskman_workers") == 1
    promtool_check(text)


def test_the_middleware_has_native_methods_for_both_flavours(make_config: Callable[..., Any]) -> None:
    state = metrics_state(taskman.create_app(make_config()).taskman)
    middleware = MetricsMiddleware(state.http, state.paths)
    assert adapt_middleware(middleware) is middleware, "ASGI uses its *_async methods: no thread-pool hop"
    for name in ("process_request", "process_response"):
        assert callable(getattr(middleware, name)) and callable(getattr(middleware, f"{name}_async"))


def test_plugins_declare_metrics_and_collectors_through_taskman_metrics(make_client: Client) -> None:
    plugin = DeclaringPlugin()
    client = make_client(plugins=(plugin,))
    assert len(plugin.seen) == 1
    metrics, config = plugin.seen[0]
    assert metrics is metrics_state(client.app.taskman).metrics
    assert config is client.app.taskman.config
    plugin.widgets.labels("red").inc(3)
    text = client.simulate_get("/metrics").text
    assert total(text, "widgets_made_total", {"colour": "red"}) == 3
    assert total(text, "tally_scrapes") == 1
    assert total(client.simulate_get("/metrics").text, "tally_scrapes") == 2
    promtool_check(text)


def test_a_failing_taskman_metrics_hook_stops_the_app_build_naming_its_plugin(
    asgi: bool, make_config: Callable[..., Any]
) -> None:
    plugins = (BrokenDeclaringPlugin(),)
    config = make_config(plugins=plugins)
    with pytest.raises(PluginError, match=r"plugin 'broken_declaring'.*taskman_metrics.*already declared"):
        taskman.create_app(config, asgi=asgi, plugins=plugins)


def test_disabling_metrics_removes_the_endpoint_and_nothing_else(make_client: Client) -> None:
    client = make_client(plugins=(ThingsPlugin(),), environ={"APP_PLUGINS__DISABLE": "metrics"})
    assert client.simulate_get("/metrics").status_code == 404
    assert client.simulate_get("/things/1").json == {"id": "1"}
    assert client.simulate_get("/boom").status_code == 500
    client.app.taskman.fire_event("task.created", {"priority": "high"})  # business_metrics stays quiet
    assert "metrics" not in client.app.taskman.plugins.names
    assert "business_metrics" in client.app.taskman.plugins.names


# -- real servers: taskman serve --workers 2 -----------------------------------------


@attrs.define
class MetricsServer(ServerProcess):
    directory: Path

    def scrape(self) -> str:
        reply = self.get("/metrics")
        assert reply.status == 200, reply
        return reply.body.decode()

    def wait_ready(self) -> None:
        def answers() -> bool:
            try:
                return self.get("/metrics").status == 200
            except OSError:
                return False

        self.wait_until("GET /metrics", answers)

    def probe(self, count: int, concurrency: int = 8) -> list[int]:
        """``count`` counted requests, ``concurrency`` at a time; the pids that served them."""
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            replies = list(pool.map(lambda i: self.get(f"/probe/{i}"), range(count)))
        assert all(r.status == 200 for r in replies), replies
        return [r.json()["pid"] for r in replies]

    def probe_until_served_by(self, pids: set[int], *, at_least: int = 20) -> int:
        """Send probes until every pid in ``pids`` served one; return how many were sent."""
        sent, seen = 0, set()
        end = time.monotonic() + BOOT_DEADLINE
        while sent < at_least or not pids <= seen:
            if time.monotonic() > end:
                pytest.fail(f"workers {pids - seen} served none of {sent} requests:\n{self.log}")
            seen.update(self.probe(10))
            sent += 10
        return sent

    def files(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("*.db"))


def probe_count(text: str) -> float:
    return total(text, DURATION_COUNT, {"http_route": "/probe/{item}"}) or 0.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def probe_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return [install_fixture_dist("taskman-metrics-probe", tmp_path_factory.mktemp("metrics-dists") / "probe")]


@pytest.fixture
def task_table(database_url: str) -> Iterator[peewee.Database]:
    """The ``task`` table the tracker plugin will own, in the test database."""
    db = database_for(database_url)

    class Task(peewee.Model):
        status = peewee.TextField(null=True)
        priority = peewee.TextField(null=True)

        class Meta:
            table_name = "task"

    Task.bind(db)
    db.create_tables([Task])
    db.close_all()
    yield db
    db.close_all()


@pytest.fixture
def metrics_server(
    probe_pythonpath: list[Path], database_url: str, tmp_path: Path, server_launcher: ServerLauncher
) -> Callable[..., MetricsServer]:
    """Start ``taskman serve --workers 2`` with a multiprocess folder of its own."""

    def start(*, asgi: bool, directory: Path | None = None, environ: Mapping[str, str] | None = None) -> MetricsServer:
        folder = directory or tmp_path / f"multiproc-{len(server_launcher.started)}"
        server = server_launcher.start(
            ["--asgi" if asgi else "--wsgi", "--workers", "2"],
            pythonpath=probe_pythonpath,
            env={
                "APP_ENVIRONMENT": "testing",
                "APP_DATABASE__URL": database_url,
                "APP_METRICS__MULTIPROCESS_DIR": str(folder),
                **(environ or {}),
            },
            factory=lambda proc, port, log: MetricsServer(proc, port, log, folder),
        )
        server.wait_ready()
        server.wait_until("two workers", lambda: len(server.workers()) == 2)
        return server

    return start


def assert_only_live_workers_own_files(server: MetricsServer) -> None:
    owners = {f.pid for f in metric_files(server.directory)} - {None}
    dead = {pid for pid in owners if pid is not None and not alive(pid)}
    assert not dead, f"files of dead workers {dead} remain: {server.files()}"
    assert owners <= server.workers(), f"{owners} are not workers of {server.proc.pid}: {server.files()}"


def replace_worker(server: MetricsServer, victim: int, sig: signal.Signals) -> int:
    """Send ``sig`` to worker ``victim``, wait until it has exited and the server started another; return its pid."""
    others = server.workers() - {victim}
    os.kill(victim, sig)
    gone = victim
    server.wait_until(f"worker {gone} to exit", lambda: gone not in server.workers() and not alive(gone))
    server.wait_until("a replacement worker", lambda: len(server.workers() - others) == 1)
    (new,) = server.workers() - others
    return new


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_counts_are_exact_across_two_workers(metrics_server: Callable[..., MetricsServer], flavour: str) -> None:
    server = metrics_server(asgi=flavour == "asgi")
    workers = server.workers()
    assert len(workers) == 2, workers
    sent = server.probe_until_served_by(workers)
    # Every scrape, whichever worker serves it, sees every request exactly once.
    for _ in range(6):
        text = server.scrape()
        assert probe_count(text) == sent
        assert total(text, "taskman_workers") == 2
    pids = label_values(text, "pid")
    assert {str(pid) for pid in workers} <= pids, "process metrics of each worker, by pid"
    assert total(text, "process_cpu_seconds_total", {"pid": str(min(workers))})
    assert total(text, "http_server_active_requests") == 0
    promtool_check(text)
    assert server.stop() == 0, server.log
    files = server.files()
    assert "histogram_merged.db" in files and all(name.endswith("_merged.db") for name in files), (
        f"every worker folded its files when it stopped: {files}"
    )
    assert "Traceback" not in server.log


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_worker_restarts_keep_counts_and_the_folder_bounded(
    metrics_server: Callable[..., MetricsServer], flavour: str
) -> None:
    server = metrics_server(asgi=flavour == "asgi")
    sent = server.probe_until_served_by(server.workers())
    last = sent
    for round_, sig in enumerate([signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]):
        victim = min(server.workers()) if round_ % 2 else max(server.workers())
        new = replace_worker(server, victim, sig)
        sent += server.probe_until_served_by({new}, at_least=10)
        for _ in range(3):
            count = probe_count(server.scrape())
            assert count == sent, f"after {sig.name} to worker {victim}: {count} != {sent}"
            assert count >= last, "counts never go backwards"
            last = count
        assert_only_live_workers_own_files(server)
        # Per kind of metric file (counter, gauge_livesum, histogram...): two live workers' plus one merged.
        files = server.files()
        kinds = {name.rsplit("_", 1)[0] for name in files}
        assert len(files) <= len(kinds) * (2 + 1), files
    assert server.stop() == 0, server.log


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_the_folder_is_emptied_when_the_server_starts_again(
    metrics_server: Callable[..., MetricsServer], flavour: str, tmp_path: Path
) -> None:
    directory = tmp_path / "shared-multiproc"
    first = metrics_server(asgi=flavour == "asgi", directory=directory)
    first.probe(12)
    assert probe_count(first.scrape()) == 12
    assert first.stop() == 0, first.log
    assert "histogram_merged.db" in first.files()
    (directory / "counter_999999.db").write_bytes(b"\0" * 8)  # a stale file from some crashed run

    second = metrics_server(asgi=flavour == "asgi", directory=directory)
    text = second.scrape()
    assert probe_count(text) == 0, "a new server counts from zero"
    assert "counter_999999.db" not in second.files()
    assert "histogram_merged.db" not in second.files()
    second.probe(3)
    assert probe_count(second.scrape()) == 3
    assert second.stop() == 0, second.log


@pytest.mark.servers
def test_a_private_folder_is_used_and_removed_without_configuration(
    metrics_server: Callable[..., MetricsServer], tmp_path: Path
) -> None:
    server = metrics_server(asgi=True, environ={"APP_METRICS__MULTIPROCESS_DIR": "", "TMPDIR": str(tmp_path)})
    sent = server.probe_until_served_by(server.workers())
    assert probe_count(server.scrape()) == sent
    (private,) = tmp_path.glob("taskman-metrics-*")
    assert any(private.glob("histogram_*.db"))
    assert server.stop() == 0, server.log
    assert not private.exists(), "the serve parent removes its private folder"
