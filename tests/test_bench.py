"""The pure parts of the benchmark suite (bench/): parsing, statistics, case selection.  No servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from taskman_plugins.ratelimit import parse_rate  # type: ignore[import-not-found,import-untyped,unused-ignore]

from bench import run
from bench.cases import BENCH_RATE, Case, Request, against, builtin_cases, disabling, runnable, select
from bench.load import LoadError, LoadResult, parse_wrk, percentile, to_ms, wrk_script
from bench.stats import alternating, median, median_ratio, round_ratios, summarize

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:8000/alive
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  345.00us   5.00ms   90.00%
    Req/Sec     4.00k   200.00     4.50k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.30ms
     90%    1.50ms
     99%    2.80ms
  12034 requests in 3.01s, 1.50MB read
  Socket errors: connect 1, read 7, write 2, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:   3998.01
Transfer/sec:    500.00KB
"""

DEFAULTS = ["health", "logging", "metrics"]


def result(rps: float, p50: float = 1.0, p99: float = 2.0, errors: int = 0) -> LoadResult:
    return LoadResult(requests=int(rps), duration_s=1.0, rps=rps, p50_ms=p50, p99_ms=p99, errors=errors, tool="wrk")


# -- wrk output ---------------------------------------------------------------------


def test_wrk_output_is_read_with_units_and_errors() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed.requests == 12034
    assert parsed.duration_s == pytest.approx(3.01)
    assert parsed.rps == pytest.approx(3998.01)
    assert parsed.p50_ms == pytest.approx(0.812)
    assert parsed.p99_ms == pytest.approx(2.8)
    # Read errors are connections the server closed (gunicorn's sync worker): not failures.
    assert parsed.errors == 5 + 1 + 2 + 3


def test_wrk_output_without_errors_or_latency_distribution() -> None:
    clean = WRK_OUTPUT.replace("  Socket errors: connect 1, read 7, write 2, timeout 3\n", "").replace(
        "  Non-2xx or 3xx responses: 5\n", ""
    )
    assert parse_wrk(clean).errors == 0
    with pytest.raises(LoadError, match="unreadable"):
        parse_wrk(clean.replace("     99%    2.80ms\n", ""))


@pytest.mark.parametrize(
    ("value", "unit", "ms"), [("250", "us", 0.25), ("1.5", "ms", 1.5), ("2", "s", 2000.0), ("1", "m", 60000.0)]
)
def test_durations_convert_to_milliseconds(value: str, unit: str, ms: float) -> None:
    assert to_ms(value, unit) == pytest.approx(ms)


def test_wrk_script_only_when_the_request_needs_one() -> None:
    assert wrk_script(Request("/alive")) is None
    script = wrk_script(
        Request("/api/v1/tasks", method="POST", body='{"title": "]]"}', headers=(("Content-Type", "application/json"),))
    )
    assert script is not None
    assert "wrk.method = [[POST]]" in script
    assert 'wrk.body = [=[{"title": "]]"}]=]' in script  # the long bracket outlives "]]" in the body
    assert "wrk.headers[ [[Content-Type]] ] = [[application/json]]" in script  # "[[[" would start a long string


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


# -- statistics ---------------------------------------------------------------------


def test_ratios_are_taken_within_each_round_then_the_median() -> None:
    rounds = [
        {"bare": result(1000), "default": result(900)},
        {"bare": result(500), "default": result(400)},  # a noisy round slows both sides
        {"bare": result(1000), "default": result(850)},
        {"default": result(10)},  # the floor was not measured: no ratio from this round
    ]
    assert round_ratios(rounds, "default", "bare") == pytest.approx([0.9, 0.8, 0.85])
    assert median_ratio(rounds, "default", "bare") == pytest.approx(0.85)
    assert median_ratio(rounds, "default", "core") is None


def test_summary_takes_medians_and_sums_counts() -> None:
    summary = summarize([result(100, 1.0, 5.0), result(300, 3.0, 9.0, errors=2), result(200, 2.0, 7.0)])
    assert (summary.rps, summary.p50_ms, summary.p99_ms) == (200, 2.0, 7.0)
    assert summary.requests == 600 and summary.errors == 2 and summary.rounds == 3
    assert median([4.0, 1.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_rounds_alternate_their_order() -> None:
    assert alternating(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert alternating(["a", "b", "c"], 1) == ["c", "b", "a"]


# -- cases --------------------------------------------------------------------------


def test_builtin_cases_cover_the_floor_core_default_and_each_plugin_alone() -> None:
    cases = {c.name: c for c in builtin_cases(DEFAULTS, [*DEFAULTS, "third_party"])}
    assert cases["bare"].floor is None and cases["bare"].app == "bare"
    assert set(cases["core"].disable) == {*DEFAULTS, "third_party"}
    assert cases["default"].request.path == "/health/live"
    assert cases["default"].disable == ("third_party",)  # the default set: installed extras are off
    assert set(cases["only-logging"].disable) == {"health", "metrics", "third_party"}
    assert cases["only-logging"].also_vs == "core"


def test_selection_adds_the_references_a_case_is_measured_against() -> None:
    cases = builtin_cases(DEFAULTS)
    assert [c.name for c in select(cases, ["only-metrics"])] == ["bare", "core", "only-metrics"]
    assert {c.name for c in select(cases, ["only-*"])} == {
        "bare",
        "core",
        "only-health",
        "only-logging",
        "only-metrics",
    }
    assert select(cases, None) == cases
    with pytest.raises(ValueError, match="unknown case"):
        select(cases, ["nope"])


def test_cases_for_plugins_not_installed_are_skipped_with_a_note() -> None:
    later = Case("tracker-get", "GET a task", "database", "taskman", Request("/api/v1/tasks/1"), requires=("tracker",))
    on_postgres = Case("pg", "PostgreSQL", "database", "taskman", Request("/x"), database="postgresql")
    plugins = [c for c in builtin_cases(DEFAULTS) if c.group != "database"]
    kept, notes = runnable([*plugins, later, on_postgres], DEFAULTS, postgres=False)
    assert "tracker-get" not in {c.name for c in kept} and "pg" not in {c.name for c in kept}
    assert notes == ["tracker-get: skipped, plugin(s) tracker not installed", "pg: skipped, needs --postgres-url"]


def test_a_fixed_plugin_set_and_another_version_are_case_variants() -> None:
    cases = disabling(select(builtin_cases(DEFAULTS), ["default"]), ["metrics"])
    assert "metrics" in next(c for c in cases if c.name == "default").disable
    copies = against(cases, "HEAD", "/tmp/ref", ["logging"])
    assert [c.name for c in copies] == ["core@HEAD", "default@HEAD"]  # the bare floor is not taskman
    default = copies[1]
    assert default.pythonpath == ("/tmp/ref",) and default.floor == "bare" and default.also_vs == "core@HEAD"
    assert {"metrics", "logging"} <= set(default.disable)


# -- reporting ------------------------------------------------------------------------


def test_targets_and_comparison_read_the_report() -> None:
    rounds = [{"bare": result(1000), "core": result(980), "default": result(900)}]
    flavour_run = run.FlavourRun("wsgi", rounds, {"bare": 25.0, "core": 36.0, "default": 90.0})
    reports = [run.case_report(case, flavour_run) for case in select(builtin_cases(DEFAULTS), ["default"])]
    outcome = {
        "options": {"flavours": ["wsgi"]},
        "cases": reports,
        "logging": {"line_us": 12.0},
        "startup": {"wsgi": {"median": 2.0, "runs": [2.0]}},
    }
    met = {check["target"]: check["met"] for check in run.targets(outcome)}
    assert met["wsgi default/bare rps >= 0.85"] is True
    assert met["wsgi core/bare rps >= 0.97"] is True
    assert met["wsgi default peak RSS per worker <= 80 MB"] is False
    assert met["logging+redaction per request line <= 50 us"] is True
    assert met["taskman serve --wsgi to 200 on /health/startup <= 1.5 s"] is False
    assert "0.900" in run.table(reports)
    earlier = json.loads(json.dumps({**outcome, "started_at": "then"}))
    earlier["cases"][2]["vs_floor"]["median"] = 0.8
    assert "0.800 -> 0.900 (+0.100)" in run.compare(outcome, earlier)


# -- database cases (tracker and the raw-driver floor) ----------------------------------


def test_database_cases_on_each_database_measure_against_a_raw_driver_floor_of_their_own() -> None:
    cases = {c.name: c for c in builtin_cases([*DEFAULTS, "tracker"], [*DEFAULTS, "tracker", "third_party"])}
    for suffix, database in (("sqlite", "sqlite"), ("postgres", "postgresql")):
        for kind, floor_name in (("get", "pk"), ("post", "post"), ("list", "list")):
            floor = cases[f"rawdb-{floor_name}-{suffix}"]
            assert floor.app == "rawdb" and floor.floor is None and floor.database == database
            case = cases[f"tracker-{kind}-{suffix}"]
            assert case.app == "taskman" and case.floor == floor.name and case.database == database
            assert case.request == floor.request  # the same request, answered by each
            assert case.requires == ("tracker",) and case.setup == "bench.seed:tasks"
            assert case.disable == ("third_party",)  # the default set, as in case "default"
        assert cases[f"tracker-get-{suffix}"].request.path == "/api/v1/tasks/T-5000"
        assert cases[f"tracker-get-{suffix}"].also_vs is None
        assert (
            cases[f"tracker-post-{suffix}"].also_vs
            == cases[f"tracker-list-{suffix}"].also_vs
            == f"tracker-get-{suffix}"
        )
    assert cases["tracker-list-sqlite"].request.path == "/api/v1/tasks?project_id=P-1&status=ready&limit=50"


def test_database_cases_are_picked_by_pattern_or_group_and_postgres_needs_a_url() -> None:
    cases = builtin_cases(DEFAULTS, [*DEFAULTS, "tracker"])
    by_pattern = {c.name for c in select(cases, ["tracker-get-*"])}
    assert by_pattern == {"tracker-get-sqlite", "tracker-get-postgres", "rawdb-pk-sqlite", "rawdb-pk-postgres"}
    assert {c.name for c in select(cases, ["tracker-post-sqlite"])} == {
        "tracker-post-sqlite",
        "rawdb-post-sqlite",
        "tracker-get-sqlite",
    }
    by_group = select(cases, ["database"])
    assert len(by_group) == 12 and {c.group for c in by_group} == {"database"}
    assert select(cases, ["tracker-*", "rawdb-*"]) == by_group
    kept, notes = runnable(by_group, [*DEFAULTS, "tracker"], postgres=False)
    assert {c.database for c in kept} == {"sqlite"} and len(notes) == 6
    _, notes = runnable(by_group, DEFAULTS, postgres=True)
    assert notes[0] == "rawdb-pk-sqlite: skipped, plugin(s) tracker not installed"


def test_a_post_gets_a_fresh_id_per_request() -> None:
    post = next(c for c in builtin_cases(DEFAULTS) if c.name == "tracker-post-sqlite").request
    assert post.method == "POST" and post.expect_status == 201 and post.fresh is not None
    created = post.with_fresh("abc-1")
    assert created.fresh is None and json.loads(created.body or "")["id"] == "T-abc-1"
    assert Request("/alive").with_fresh("x") == Request("/alive")
    script = wrk_script(post, "run1")
    assert script is not None and post.fresh not in script
    assert "local prefix = [[run1]]" in script and "function request()" in script and "function setup(thread)" in script
    assert '[[{"id": "T-]] .. fresh .. [[", "title"' in script
    assert "return wrk.format(nil, [[/api/v1/tasks]], nil, " in script


def test_seed_rows_fill_every_request_of_the_cases() -> None:
    from bench import seed

    rows = list(seed.task_rows(700))
    assert all(len(row) == len(seed.TASK_COLUMNS) for row in rows)
    status, project = seed.TASK_COLUMNS.index("status"), seed.TASK_COLUMNS.index("project_id")
    assert {row[status] for row in rows} == set(seed.STATUSES)
    assert sum(1 for row in rows if row[project] == "P-1" and row[status] == "ready") >= 50
    labels = seed.TASK_COLUMNS.index("labels")
    assert sum(1 for row in rows if row[labels] != "[]") == len(list(seed.label_rows(700)))
    assert json.loads(rows[2][labels]) == ["frontend"] and json.loads(rows[5][labels]) == ["backend"]  # T-3, T-6
    assert seed.insert_sql("t", ("a", "b"), "%s") == "INSERT INTO t (a, b) VALUES (%s, %s)"
    assert seed.GET_TASK == "T-5000"


def test_the_raw_floor_selects_one_row_per_thread_connection_as_json(tmp_path: pytest.TempPathFactory) -> None:
    import datetime
    import sqlite3

    from bench import rawdb

    path = f"{tmp_path}/raw.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE task (id TEXT PRIMARY KEY, title TEXT, version INTEGER)")
        conn.execute("INSERT INTO task VALUES ('T-1', 'one', 1)")
    db = rawdb.selector(f"sqlite:///{path}")
    assert db.fetch("T-1") == {"id": "T-1", "title": "one", "version": 1}
    assert db.fetch("T-2") is None
    assert rawdb.sqlite_file("sqlite:////abs/x.db") == "/abs/x.db" and rawdb.sqlite_file("sqlite:///x.db") == "x.db"
    at = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert json.loads(rawdb.row_json({"at": at, "n": None})) == {"at": "2026-01-02T03:04:05", "n": None}
    with pytest.raises(ValueError):
        rawdb.selector("mysql://x")


def test_the_raw_floors_insert_a_task_with_its_links_and_page_the_list_as_the_tracker_does(tmp_path: Path) -> None:
    import base64
    import sqlite3

    from bench import rawdb

    path = f"{tmp_path}/raw.db"
    with sqlite3.connect(path) as conn:
        columns = ", ".join(f"{name} TEXT" for name in rawdb.TASK_FIELDS if name != "id")
        conn.execute(f"CREATE TABLE task (id TEXT PRIMARY KEY, {columns})")
        conn.execute("CREATE TABLE task_label (task_id TEXT, label TEXT)")
        conn.execute("CREATE TABLE task_assignee (task_id TEXT, assignee TEXT)")
    db = rawdb.selector(f"sqlite:///{path}")
    created = db.create({"id": "T-1", "title": "one", "project_id": "P-1", "labels": ["a"], "assignees": ["b", "c"]})
    assert list(created) == list(rawdb.TASK_FIELDS)
    assert created["status"] == "new" and created["priority"] == "p2" and created["labels"] == ["a"]
    assert created["created_at"].endswith("Z") and created["version"] == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM task_assignee WHERE task_id = 'T-1'").fetchone() == (2,)
    with pytest.raises(sqlite3.IntegrityError):  # one transaction: nothing of a failed create stays
        db.create({"id": "T-1", "title": "again", "project_id": "P-1"})
    for n in range(2, 4):
        db.create({"id": f"T-{n}", "title": str(n), "project_id": "P-1"})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE task SET status = 'ready'")
    items, cursor = db.page("P-1", "ready", 2)
    assert [item["id"] for item in items] == ["T-1", "T-2"] and items[0]["assignees"] == ["b", "c"]
    assert cursor is not None and json.loads(base64.urlsafe_b64decode(cursor + "=="))[1][1] == "T-2"
    assert db.page("P-1", "ready", 3)[1] is None


def test_scratch_database_and_database_targets() -> None:
    url = "postgresql://postgres:pw@127.0.0.1:54329/taskman_test?sslmode=disable"
    assert run.scratch_url(url, "bench_1") == "postgresql://postgres:pw@127.0.0.1:54329/bench_1?sslmode=disable"
    assert run.scratch_name().startswith("taskman_bench_")
    rounds = [{"rawdb-pk-sqlite": result(1000), "tracker-get-sqlite": result(750)}]
    flavour_run = run.FlavourRun("asgi", rounds, {})
    cases = builtin_cases(DEFAULTS, [*DEFAULTS, "tracker"])
    reports = [run.case_report(c, flavour_run) for c in select(cases, ["tracker-get-sqlite"])]
    met = {c["target"]: c["met"] for c in run.targets({"options": {"flavours": ["asgi"]}, "cases": reports})}
    assert met["asgi tracker-get-sqlite/rawdb-pk-sqlite rps >= 0.7"] is True
    assert met["asgi tracker-get-postgres/rawdb-pk-postgres rps >= 0.7"] is None


def test_the_alive_routes_are_open_with_auth_enforced(make_client: object) -> None:
    """The bench's load sends no token: its plugin declares its routes public, as any plugin author would."""
    from bench import alive_plugin

    client = make_client(plugins=(alive_plugin,), environ={"APP_AUTH__ALLOW_ANONYMOUS": "false"})  # type: ignore[operator]
    assert client.simulate_get("/alive").status_code == 200
    assert client.simulate_get("/alive/threaded").status_code == 200


def test_every_case_runs_the_rate_limiter_at_a_rate_one_client_never_reaches(tmp_path: Path) -> None:
    cases = builtin_cases(["auth", "ratelimit", "request_id"])
    assert "only-ratelimit" in {case.name for case in cases}
    default = next(case for case in cases if case.name == "default")
    env = run.case_env(default, run.base_env(tmp_path, "sqlite:///x.db"), tmp_path)
    assert "ratelimit" not in env["APP_PLUGINS__DISABLE"].split(",")
    assert env["APP_RATELIMIT__READS"] == env["APP_RATELIMIT__WRITES"] == BENCH_RATE
    # The load sends no token: its calls spend the anonymous budgets.
    assert env["APP_RATELIMIT__ANONYMOUS_READS"] == env["APP_RATELIMIT__ANONYMOUS_WRITES"] == BENCH_RATE
    assert parse_rate(BENCH_RATE).amount >= 1_000_000  # a million requests an hour: more than any round sends


def test_the_rate_limiter_micro_benchmark_reports_growth_and_clients() -> None:
    from bench import ratelimit

    assert ratelimit.window_cost(10, number=20, repeat=1) > 0
    assert ratelimit.clients_cost("memory://", number=20, repeat=1) > 0
    outcome = {
        "options": {"flavours": []},
        "cases": [],
        "ratelimit": {"window_us": {"10": 5.0, "100000": 6.0}, "window_growth": 1.2},
    }
    met = {check["target"]: check["met"] for check in run.targets(outcome)}
    assert met["rate limit decision with 100,000 hits in the window <= 1.5x with 10"] is True
