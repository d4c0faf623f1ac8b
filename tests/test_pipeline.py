"""The request pipeline: order by stage (never by name), compiled once per app, and what it guarantees."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from click.testing import CliRunner

import taskman
from taskman import hookimpl
from taskman.cli import cli
from taskman.pipeline import STAGES, Pipeline, PipelineError, staged
from taskman.plugins import PluginError

Client = Callable[..., falcon.testing.TestClient]
ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """Middleware that says in ``X-Ran`` whether its ``process_request`` ran (falcon runs all ``process_response``)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def process_request(self, req: Any, resp: Any) -> None:
        req.context.setdefault("ran", []).append(self.label)

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        ran = self.label in req.context.get("ran", [])
        resp.append_header("X-Ran", f"{self.label}:{'ran' if ran else 'skipped'}")


def plugin_of(name: str, *components: object) -> Any:
    class Contributor:
        taskman_plugin_name = name

        @hookimpl
        def taskman_middleware(self) -> list[object]:
            return list(components)

    return Contributor()


# -- ordering, plain -----------------------------------------------------------------------------


def test_stages_decide_the_order_not_names() -> None:
    pipeline = Pipeline.compile(
        [
            ("aaa", staged(Recorder("shape"), "shape")),
            ("zzz", staged(Recorder("observe"), "observe")),
            ("mmm", Recorder("undeclared")),
            ("bbb", staged(Recorder("edge"), "edge")),
        ]
    )
    assert [(s.plugin, s.stage) for s in pipeline.steps] == [
        ("zzz", "observe"),
        ("bbb", "edge"),
        ("mmm", "handle"),
        ("aaa", "shape"),
    ]
    assert [s.declared for s in pipeline.steps] == [True, True, False, True]


def test_before_and_after_order_a_stage() -> None:
    steps = Pipeline.compile(
        [
            ("alpha", staged(Recorder("a"), "observe", after=("omega",))),
            ("beta", staged(Recorder("b"), "observe")),
            ("omega", staged(Recorder("o"), "observe", before=("*",))),
        ]
    ).steps
    assert [s.plugin for s in steps] == ["omega", "alpha", "beta"]


def test_a_cycle_and_an_unknown_stage_are_errors_naming_plugins() -> None:
    with pytest.raises(PipelineError, match="cycle") as cycle:
        Pipeline.compile(
            [
                ("one", staged(Recorder("1"), "admit", before=("two",))),
                ("two", staged(Recorder("2"), "admit", before=("one",))),
            ]
        )
    assert cycle.value.plugin in ("one", "two")
    odd = Recorder("x")
    odd.taskman_stage = "somewhere"  # type: ignore[attr-defined]
    with pytest.raises(PipelineError, match="unknown stage 'somewhere'"):
        Pipeline.compile([("odd", odd)])
    with pytest.raises(ValueError, match="unknown pipeline stage"):
        staged(Recorder("y"), "nowhere")


def test_a_bad_declaration_stops_the_build_naming_the_plugin(make_config: Callable[..., Any]) -> None:
    odd = Recorder("x")
    odd.taskman_stage = "somewhere"  # type: ignore[attr-defined]
    plugin = plugin_of("odd_stage", odd)
    with pytest.raises(PluginError, match=r"plugin 'odd_stage'.*taskman_middleware.*unknown stage"):
        taskman.create_app(make_config(plugins=(plugin,)), plugins=(plugin,))


# -- the default chain, as documented ----------------------------------------------------------------


def documented_chain() -> list[tuple[str, str, str]]:
    text = (ROOT / "docs" / "pipeline.md").read_text()
    table = text.split("<!-- pipeline: the default chain -->", 1)[1].split("<!-- end of pipeline -->", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in table.strip().splitlines()[2:]]
    return [(stage, plugin, middleware) for stage, plugin, middleware in rows]


def test_the_docs_show_the_real_default_chain(make_config: Callable[..., Any], asgi: bool) -> None:
    runtime = taskman.create_app(make_config(), asgi=asgi).taskman
    rows = runtime.pipeline.describe(asgi=asgi)
    assert [(r["stage"], r["plugin"], r["middleware"]) for r in rows] == documented_chain()
    if asgi:
        # Every built-in step runs natively under ASGI: none costs a thread-pool hop.
        assert {how for r in rows for how in r["methods"].values()} == {"async"}
    assert [stage for stage in STAGES if stage in {r["stage"] for r in rows}] == [
        "observe",
        "edge",
        "identify",
        "admit",
        "authorize",
        "shape",
    ]


def test_taskman_middleware_prints_the_chain(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["middleware", "--json", "--wsgi"], env={"APP_DATABASE__URL": database_url})
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["stage"], r["plugin"], r["middleware"]) for r in rows] == documented_chain()
    plain = CliRunner().invoke(cli, ["middleware", "--asgi"], env={"APP_DATABASE__URL": database_url})
    assert plain.exit_code == 0
    assert re.search(r"^observe\s+request_id\s+RequestIdMiddleware\s+process_request \(async\)", plain.stdout, re.M)


# -- outcomes over HTTP, both flavours ----------------------------------------------------------------


def test_a_third_party_step_runs_where_its_stage_says(make_client: Client) -> None:
    plugin = plugin_of("aaa_observer", staged(Recorder("observer"), "observe", after=("request_id",)))
    client = make_client(plugins=(plugin,))
    result = client.simulate_get("/api/v1/projects", headers={"Accept-Encoding": "gzip"})
    assert result.status_code == 200
    assert result.headers["x-ran"] == "observer:ran"


def test_a_request_refused_at_the_edge_never_reaches_identification(make_client: Client) -> None:
    spy = staged(Recorder("identify"), "identify")
    client = make_client(plugins=(plugin_of("spy", spy),), environ={"APP_LIMITS__MAX_BODY_BYTES": "1024"})
    result = client.simulate_post(
        "/api/v1/projects",
        body=b"x" * 4096,
        headers={"Authorization": "Bearer tm_" + "x" * 43, "Content-Type": "application/json"},
    )
    assert result.status_code == 413
    assert result.headers["x-request-id"], "whoever refuses, the response carries the request id"
    assert result.headers["x-ran"] == "identify:skipped"


def test_refused_authentications_are_counted_then_refused_before_any_lookup(make_client: Client) -> None:
    client = make_client(
        environ={
            "APP_AUTH__ALLOW_ANONYMOUS": "false",
            "APP_RATELIMIT__ANONYMOUS_READS": "100/minute",
            "APP_RATELIMIT__AUTH_FAILURES": "3/minute",
        }
    )
    bad = {"Authorization": "Bearer tm_" + "y" * 43}
    first = client.simulate_get("/api/v1/projects", headers=bad)
    assert first.status_code == 401
    assert first.headers["ratelimit-limit"] == "100", "the 401 passed the rate limiter"
    assert int(first.headers["ratelimit-remaining"]) == 99
    assert [client.simulate_get("/api/v1/projects", headers=bad).status_code for _ in range(2)] == [401, 401]
    refused = client.simulate_get("/api/v1/projects", headers=bad)
    assert refused.status_code == 429 and "refused authentications" in refused.json["detail"]
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-request-id"]
    # Requests without credentials from the same address still go on (their own budget).
    assert client.simulate_get("/health/live").status_code == 200


def test_metrics_see_the_response_as_sent(make_client: Client) -> None:
    client = make_client(environ={"APP_COMPRESSION__MIN_SIZE": "10"})
    for n in range(30):
        client.simulate_post("/api/v1/projects", json={"id": f"P-{n}", "name": "n" * 50, "mission": "m", "owner": "o"})
    listed = client.simulate_get("/api/v1/projects", headers={"Accept-Encoding": "gzip"})
    assert listed.headers.get("content-encoding") == "gzip"
    sent = len(listed.content)
    assert len(gzip.decompress(listed.content)) > sent
    text = client.simulate_get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("http_server_response_body_size_bytes_sum")
        and 'http_request_method="GET"' in line
        and 'http_route="/api/v1/projects"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == sent
