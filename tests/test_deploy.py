"""The deployment kit in deploy/: each file checked by the real tool where there is one, and against the app.

promtool checks the Prometheus files and the dashboard's queries; every
metric and label they use is looked up in a real scrape; the Kubernetes
settings go through ``load_config``; gunicorn loads its config file; the
gunicorn config and the uvicorn script serve the app for real; the
Dockerfile's build stage is replayed to build a wheel.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import falcon.testing
import pytest
import yaml
from gunicorn.app.base import Application
from prometheus_client import mmap_dict
from prometheus_client.parser import text_string_to_metric_families

from taskman.config import CORE_SECTIONS, ENV_NESTING, ENV_PREFIX, ROOT, Config, load_config
from taskman.gunicorn_worker import ThreadWorker
from taskman.plugins import Plugins
from tests.helpers import free_port
from tests.servers import ServerLauncher, ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"


def kit_files() -> list[Path]:
    """The kit's own files (not the bytecode Python leaves next to gunicorn.conf.py when it loads it)."""
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
UVICORN_SCRIPT = DEPLOY / "uvicorn.sh"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "taskman.json"
KUBERNETES = DEPLOY / "kubernetes"
DOCS = REPO_ROOT / "docs" / "deploy.md"
BIN = Path(sys.executable).parent

# prometheus-client's file format is unannotated: reach it through ``Any``.
MmapedDict: Any = mmap_dict.MmapedDict

#: Labels Prometheus adds to every series it scrapes, and the series it makes up for each target.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES = frozenset({"up"})

#: Plugins built alongside this kit, with the keys their briefs name.  Until such a plugin declares
#: its section, a setting of it is checked against this list; once it does, ``load_config`` decides.
PENDING_KEYS: dict[str, frozenset[str]] = {
    "auth": frozenset({"allow_anonymous"}),
    "ratelimit": frozenset({"reads", "writes", "storage_url", "storage_failure"}),
    "cors": frozenset({"allow_origins"}),
    "security_headers": frozenset({"hsts_max_age"}),
    "compression": frozenset({"min_size"}),
    "limits": frozenset({"max_body_bytes", "responder_timeout"}),
}


# -- reading the kit ------------------------------------------------------------------------


def kubernetes_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return documents


def manifest(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        d for d in kubernetes_documents() if d["kind"] == kind and name in (None, d.get("metadata", {}).get("name"))
    ]
    return found


def app_container() -> dict[str, Any]:
    (container,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def configmap_settings() -> dict[str, str]:
    return {key: str(value) for key, value in manifest("ConfigMap")["data"].items()}


def secret_settings() -> dict[str, str]:
    return dict(manifest("Secret")["stringData"])


def deployment_environ() -> dict[str, str]:
    """What the app container's environment holds: the ConfigMap, then the Secret's placeholders."""
    return {**configmap_settings(), **secret_settings()}


def pre_stop_seconds(container: Mapping[str, Any]) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


@attrs.frozen
class Instruction:
    keyword: str
    arguments: str
    stage: int  # 0 for the first FROM's stage


def dockerfile_instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    stage = -1
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        stage += keyword.upper() == "FROM"
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
        pending = ""
    return instructions


@attrs.frozen
class Copy:
    sources: tuple[str, ...]
    destination: str
    stage: int


def context_copies() -> list[Copy]:
    """The COPY instructions that read the build context (not those copying from another stage)."""
    copies = []
    for instruction in dockerfile_instructions():
        if instruction.keyword != "COPY":
            continue
        words = shlex.split(instruction.arguments)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        *sources, destination = [w for w in words if not w.startswith("--")]
        copies.append(Copy(tuple(sources), destination, instruction.stage))
    return copies


def json_instruction(keyword: str) -> list[str]:
    (instruction,) = [i for i in dockerfile_instructions() if i.keyword == keyword]
    return list(json.loads(instruction.arguments))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (``**`` crosses folders, ``*`` does not)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(relative: str, ignore_lines: Iterable[str]) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its folders, decides; ``!`` keeps."""
    rules = []
    for raw in ignore_lines:
        line = raw.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for keep, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            included = keep
    return included


# -- PromQL, just enough to find metric and label names -----------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][\w:]*)?\s*\{(?P<matchers>[^}]*)\}")
_MATCHER = re.compile(r'(?P<label>[A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    }
)


@attrs.frozen
class Query:
    """The metric names of a PromQL expression, the label names each selector matches on, and grouping labels."""

    metrics: frozenset[str]
    selector_labels: tuple[tuple[str, frozenset[str]], ...]
    grouping_labels: frozenset[str]


def parse_query(expr: str) -> Query:
    selectors = []
    for match in _SELECTOR.finditer(expr):
        labels = frozenset(m["label"] for m in _MATCHER.finditer(match["matchers"]))
        selectors.append((match["name"] or "", labels))
    grouping = frozenset(
        label.strip() for g in _GROUPING.finditer(expr) for label in g["labels"].split(",") if label.strip()
    )
    bare = _STRING.sub('""', expr)
    bare = _SELECTOR.sub(lambda m: f" {m['name'] or ''} ", bare)
    bare = _GROUPING.sub(" ", _RANGE.sub(" ", bare))
    metrics = frozenset(name for name in _IDENTIFIER.findall(bare) if name.lower() not in _KEYWORDS)
    return Query(metrics, tuple(selectors), grouping)


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as plain PromQL: Grafana's variables replaced by values Prometheus accepts."""
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$job", "taskman")


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())

    def walk(panels: Iterable[Mapping[str, Any]]) -> Iterator[str]:
        for panel in panels:
            yield from (t["expr"] for t in panel.get("targets", []))
            yield from walk(panel.get("panels", []))

    queries = list(walk(dashboard["panels"]))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
        match = re.fullmatch(r"label_values\((?P<metric>[\w:]+)\s*,\s*(?P<label>\w+)\)", text)
        if match:
            queries.append(f"count by ({match['label']}) ({match['metric']})")
    return queries


def alert_queries() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


# -- settings -------------------------------------------------------------------------------


def split_setting(var: str) -> tuple[str, str]:
    parts = var[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
    return (ROOT, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def known_settings() -> dict[str, frozenset[str]]:
    """Every section of the core and of the installed plugins, with its keys."""
    sections = {**CORE_SECTIONS, **Plugins.discover().settings()}
    return {name: frozenset(f.name for f in attrs.fields(cls)) for name, cls in sections.items()}


def unknown_settings(variables: Iterable[str]) -> list[str]:
    known = known_settings()
    unknown = []
    for var in sorted(set(variables)):
        section, key = split_setting(var)
        keys = known.get(section, PENDING_KEYS.get(section, frozenset()))
        if key not in keys:
            unknown.append(var)
    return unknown


def load_pending_aware(environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    """``load_config`` on ``environ``, minus the settings of plugins that do not declare their section yet.

    Those are returned, after checking their keys against :data:`PENDING_KEYS`.
    """
    declared = set(known_settings())
    pending = []
    for var in environ:
        section, key = split_setting(var)
        if section not in declared and section in PENDING_KEYS:
            assert key in PENDING_KEYS[section], f"{var}: {section} has no key {key!r}"
            pending.append(var)
    config = load_config(environ={k: v for k, v in environ.items() if k not in pending})
    return config, sorted(pending)


# -- Prometheus ----------------------------------------------------------------------------


@pytest.fixture
def promtool() -> Callable[..., subprocess.CompletedProcess[str]]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (apt-get install prometheus, or a Prometheus release)")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)

    return run


def test_promtool_accepts_the_alerting_rules(promtool: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_accepts_the_scrape_config(
    promtool: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    # promtool checks that the token file exists: point a copy at a placeholder, the rest unchanged.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/etc/prometheus/secrets/taskman/token"
    token = tmp_path / "token"
    token.write_text("placeholder\n")
    job["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout  # rule_files was followed
    syntax = promtool("check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


def test_the_dashboard_queries_are_valid_promql(
    promtool: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    queries = dashboard_queries()
    rules = [{"record": f"dashboard:query_{n}", "expr": grafana_to_promql(q)} for n, q in enumerate(queries)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    query = parse_query(
        "histogram_quantile(0.95, sum by (http_route, le) (rate(http_server_request_duration_seconds_bucket"
        '{job="$job", http_route!~"/health.*"}[$__rate_interval]))) / on (job) group_left max(up) > bool 1'
    )
    assert query.metrics == {"http_server_request_duration_seconds_bucket", "up"}
    assert query.selector_labels == (("http_server_request_duration_seconds_bucket", frozenset({"job", "http_route"})),)
    assert query.grouping_labels == {"http_route", "le", "job"}


def _tracker_writes(client: falcon.testing.TestClient) -> None:
    """A project, a sprint, a task taken to done, the sprint closed: every business event fires."""
    steps: list[tuple[str, dict[str, Any] | None]] = [
        ("/projects", {"id": "P-1", "name": "Apollo", "mission": "Land", "owner": "ann"}),
        (
            "/sprints",
            {"id": "S-1", "project_id": "P-1", "name": "S-1", "start_date": "2026-11-02", "end_date": "2026-11-13"},
        ),
        ("/tasks", {"id": "T-1", "title": "Land", "project_id": "P-1", "sprint_id": "S-1", "estimate_points": 3}),
        ("/sprints/S-1/start", None),
        ("/tasks/T-1/status", {"status": "ready"}),
        ("/tasks/T-1/status", {"status": "in_progress"}),
        ("/tasks/T-1/status", {"status": "done"}),
        ("/sprints/S-1/close", {"carry_over": "backlog"}),
    ]
    for path, body in steps:
        result = client.simulate_post(f"/api/v1{path}", json=body)
        assert result.status_code in (200, 201), f"POST {path}: {result.text}"


@pytest.fixture
def scrape(make_client: Callable[..., falcon.testing.TestClient], clock: Any) -> dict[str, frozenset[str]]:
    """Sample names of a real scrape, with their label names, from an app configured as the ConfigMap says.

    auth is off here: the scrape and the writes would need tokens, and no metric depends on it.
    """
    settings = configmap_settings()
    disable = ",".join(n for n in [*settings["APP_PLUGINS__DISABLE"].split(","), "auth"] if n)
    client = make_client(
        environ={"APP_PLUGINS__DISABLE": disable, "APP_METRICS__EXCLUDE": settings["APP_METRICS__EXCLUDE"]}
    )
    _tracker_writes(client)
    assert client.simulate_get("/api/v1/tasks").status_code == 200
    assert client.simulate_get("/health/ready").status_code == 200
    result = client.simulate_get("/metrics")
    assert result.status_code == 200, result.text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(result.text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in samples.items()}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_and_label_queried_is_in_a_real_scrape(source: str, scrape: dict[str, frozenset[str]]) -> None:
    queries = dashboard_queries() if source == "dashboard" else alert_queries()
    used: set[str] = set()
    for expr in queries:
        query = parse_query(expr)
        unknown = sorted(query.metrics - scrape.keys() - PROMETHEUS_SERIES)
        assert not unknown, f"{expr}\nnot in the scrape: {unknown}"
        for name, labels in query.selector_labels:
            available = scrape.get(name, frozenset()) | TARGET_LABELS
            assert labels <= available, f"{expr}\n{name} has no label {sorted(labels - available)}"
        available = frozenset().union(*(scrape.get(m, frozenset()) for m in query.metrics)) | TARGET_LABELS
        assert query.grouping_labels <= available, f"{expr}\nno label {sorted(query.grouping_labels - available)}"
        used |= query.metrics
    expected = {"http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket"}
    if source == "dashboard":
        expected |= {
            "http_server_active_requests",
            "tasks_created_total",
            "tasks_completed_total",
            "task_status_transitions_total",
            "task_duration_seconds_bucket",
            "active_tasks",
            "sprint_velocity",
            "project_health_score",
        }
    assert expected <= used


def test_the_configmap_counts_readiness_probes_in_the_http_metrics(
    make_client: Callable[..., falcon.testing.TestClient],
) -> None:
    # The TaskmanNotReady alert reads /health/ready in the HTTP metrics, which leave it out by default.
    def ready_counted(environ: dict[str, str]) -> bool:
        client = make_client(environ={"APP_PLUGINS__DISABLE": "auth", **environ})
        client.simulate_get("/health/ready")
        return 'http_route="/health/ready"' in client.simulate_get("/metrics").text

    assert ready_counted({"APP_METRICS__EXCLUDE": configmap_settings()["APP_METRICS__EXCLUDE"]})
    assert not ready_counted({})


# -- Kubernetes ---------------------------------------------------------------------------


def test_the_kubernetes_manifests_parse_and_kustomize_lists_them() -> None:
    documents = kubernetes_documents()
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["ConfigMap", "Deployment", "Kustomization", "Namespace", "Secret", "Service", "Service"]
    for document in documents:
        if document["kind"] != "Kustomization":
            assert document["apiVersion"] and document["metadata"]["name"]
    kustomization = manifest("Kustomization")
    for resource in kustomization["resources"]:
        assert (KUBERNETES / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]  # a placeholder must never be applied
    assert kustomization["namespace"] == manifest("Namespace")["metadata"]["name"]


def test_the_probe_paths_are_routes_of_the_app(make_client: Callable[..., falcon.testing.TestClient]) -> None:
    container = app_container()
    paths = {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"/health/startup", "/health/live", "/health/ready"}
    client = make_client()
    for path in sorted(paths):
        result = client.simulate_get(path)
        assert result.status_code == 200, f"{path}: {result.text}"


def test_every_setting_in_the_configmap_and_the_secret_is_accepted() -> None:
    environ = deployment_environ()
    assert all(var.startswith(ENV_PREFIX) for var in environ), "only APP_* settings belong here"
    config, pending = load_pending_aware(environ)
    assert config.environment == "production"
    assert config.database.url.startswith("postgresql://")
    assert config.server.host == "0.0.0.0"
    assert "tracing" in config.plugins.disable
    # The settings of plugins that do not declare their section yet were checked by name only.
    assert all(split_setting(var)[0] in PENDING_KEYS for var in pending)


def test_a_bad_value_in_the_configmap_would_stop_start_up() -> None:
    from taskman.config import ConfigError

    environ = {**deployment_environ(), "APP_SERVER__GRACEFUL_TIMEOUT": "forever"}
    with pytest.raises(ConfigError, match=r"server\.graceful_timeout"):
        load_pending_aware(environ)


def test_the_grace_period_outlasts_the_pre_stop_sleep_and_the_graceful_timeout() -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    graceful_timeout = int(configmap_settings()["APP_SERVER__GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop_seconds(app_container()) + graceful_timeout


def test_the_deployment_is_wired_to_its_configmap_secret_volumes_and_services() -> None:
    deployment = manifest("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    volumes = {v["name"] for v in pod["volumes"]}
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["envFrom"] == [{"configMapRef": {"name": manifest("ConfigMap")["metadata"]["name"]}}]
        for env in container["env"]:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == manifest("Secret")["metadata"]["name"]
            assert ref["key"] in secret_settings() and ref["key"] == env["name"]
        assert {m["name"] for m in container["volumeMounts"]} <= volumes
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = app_container()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert configmap_settings()["APP_METRICS__MULTIPROCESS_DIR"] in mounts  # writable, and not shared between pods
    assert "/tmp" in mounts
    assert container["resources"]["requests"] and container["resources"]["limits"]
    (port,) = container["ports"]
    assert port["containerPort"] == int(configmap_settings()["APP_SERVER__PORT"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    for service in (d for d in kubernetes_documents() if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]


def test_prometheus_finds_the_pods_through_the_headless_service() -> None:
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    service = manifest("Service", "taskman-metrics")
    namespace = manifest("Kustomization")["namespace"]
    assert discovery["names"] == [f"taskman-metrics.{namespace}.svc.cluster.local"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True  # an unready pod is still scraped
    assert discovery["port"] == app_container()["ports"][0]["containerPort"]
    assert job["metrics_path"] == "/metrics"
    assert job["job_name"] == "taskman"  # the job the alerts and the dashboard select


def _console_script(name: str) -> importlib.metadata.EntryPoint:
    (script,) = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == name]
    return script


def test_the_pods_run_console_scripts_and_files_the_image_ships() -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    assert migrate["command"] == ["taskman", "migrate"]
    assert _console_script("taskman").dist is not None
    assert _console_script("taskman").dist.name == "taskman"  # type: ignore[union-attr]
    command = app_container()["command"]
    assert command[:2] == ["gunicorn", "--config"]
    assert _console_script("gunicorn").value.startswith("gunicorn.")
    shipped = {c.destination: c.sources for c in context_copies()}
    assert shipped[command[2]] == ("deploy/gunicorn.conf.py",)
    module, _, attribute = command[3].partition(":")
    assert (module, attribute) == ("taskman.wsgi", "app") and importlib.util.find_spec(module) is not None


# -- gunicorn -----------------------------------------------------------------------------


class ConfigFile(Application):  # type: ignore[misc]
    """gunicorn's own loading of a config file, without a command line or an app."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__()

    def load_config(self) -> None:
        self.load_config_from_file(str(self.path))

    def load(self) -> None:
        raise AssertionError("only the configuration is loaded")


def gunicorn_config(monkeypatch: pytest.MonkeyPatch, **environ: str) -> Any:
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    return ConfigFile(GUNICORN_CONF).cfg


def config_module() -> Any:
    """deploy/gunicorn.conf.py as a module, for its plain functions."""
    spec = importlib.util.spec_from_file_location("taskman_gunicorn_conf", GUNICORN_CONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_gunicorn_check(environ: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "gunicorn"), "--check-config", "--config", str(GUNICORN_CONF), "taskman.wsgi:app"]
    env = {**os.environ, **environ}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_gunicorn_check_config_accepts_the_config(tmp_path: Path) -> None:
    result = run_gunicorn_check({"APP_DATABASE__URL": f"sqlite:///{tmp_path / 'check.db'}"}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_server_setting_stops_gunicorn_with_one_line(tmp_path: Path) -> None:
    environ = {"APP_DATABASE__URL": f"sqlite:///{tmp_path / 'check.db'}", "APP_SERVER__WORKERS": "0"}
    result = run_gunicorn_check(environ, tmp_path)
    assert result.returncode != 0
    assert "taskman: error: invalid configuration: server.workers (from env APP_SERVER__WORKERS)" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_takes_the_server_settings_and_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = gunicorn_config(
        monkeypatch,
        APP_SERVER__HOST="0.0.0.0",
        APP_SERVER__PORT="9123",
        APP_SERVER__WORKERS="3",
        APP_SERVER__GRACEFUL_TIMEOUT="17",
        APP_SERVER__THREADS="6",
        APP_SERVER__KEEPALIVE="9",
        APP_SERVER__FORWARDED_ALLOW_IPS="10.0.0.0/8,192.0.2.7",
    )
    assert cfg.bind == ["0.0.0.0:9123"]
    assert cfg.workers == 3
    assert cfg.graceful_timeout == 17
    assert issubclass(cfg.worker_class, ThreadWorker)
    assert (cfg.threads, cfg.keepalive, cfg.timeout) == (6, 9, 60)
    assert cfg.forwarded_allow_ips == ["10.0.0.0/8", "192.0.2.7"]
    # The limits plugin checks targets up to 8192 and headers up to 16384 itself: gunicorn lets them through.
    assert cfg.limit_request_line == 0  # above gunicorn's ceiling: the worker bounds the whole head instead
    assert cfg.worker_class.head_budget >= 8192 + 16384
    assert cfg.limit_request_field_size > 16384
    assert cfg.limit_request_fields == 100
    assert cfg.accesslog is None
    assert cfg.proc_name == "taskman"


def test_gunicorn_runs_what_taskman_serve_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One function decides gunicorn's settings for the deploy kit and for `taskman serve --wsgi`."""
    from taskman.servers import gunicorn_settings, server_options

    environ = {"APP_SERVER__WORKER_CLASS": "sync", "APP_LIMITS__MAX_URL_LENGTH": "2000"}
    cfg = gunicorn_config(monkeypatch, **environ)
    config = load_config()
    expected = gunicorn_settings(config.server, server_options(Plugins.discover(), config, "wsgi"))
    for name, value in expected.items():
        if name == "worker_class":
            assert cfg.worker_class.__mro__[1] is value.__mro__[1]
        elif name == "forwarded_allow_ips":
            assert cfg.forwarded_allow_ips == []
        else:
            assert getattr(cfg, name) == value, name
    assert (cfg.threads, cfg.limit_request_line) == (1, 2000 + 64)


def test_too_many_threads_for_the_database_pool_stops_gunicorn_with_one_line(tmp_path: Path) -> None:
    environ = {
        "APP_DATABASE__URL": f"sqlite:///{tmp_path / 'check.db'}",
        "APP_SERVER__THREADS": "40",
        "APP_DATABASE__POOL_SIZE": "10",
    }
    result = run_gunicorn_check(environ, tmp_path)
    assert result.returncode != 0
    assert "taskman: error: invalid configuration: server.threads (from env APP_SERVER__THREADS): 40 threads" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_gunicorn_workers_default_to_the_cpus_available(monkeypatch: pytest.MonkeyPatch) -> None:
    module = config_module()
    assert gunicorn_config(monkeypatch).workers == module.default_workers(module.available_cpus())


def test_the_cpu_count_follows_a_cgroup_quota(tmp_path: Path) -> None:
    module = config_module()
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert module.available_cpus(tmp_path / "absent") == affinity
    cpu_max.write_text("max 100000\n")
    assert module.available_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU still gets one
    assert module.available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{(affinity + 4) * 100000} 100000\n")  # a quota above the CPUs there are
    assert module.available_cpus(cpu_max) == affinity
    assert [module.default_workers(n) for n in (1, 2, 3, 16)] == [3, 5, 7, 8]


def test_on_starting_runs_the_plugins_serve_hooks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale = folder / "counter_12345.db"
    environ = {
        "APP_ENVIRONMENT": "testing",
        "APP_DATABASE__URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "APP_METRICS__MULTIPROCESS_DIR": str(folder),
    }
    stale.write_bytes(b"left by a previous run")
    gunicorn_config(monkeypatch, **environ).on_starting(SimpleNamespace(num_workers=2))
    assert not stale.exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    stale.write_bytes(b"left by a previous run")
    gunicorn_config(monkeypatch, APP_PLUGINS__DISABLE="metrics").on_starting(SimpleNamespace(num_workers=2))
    assert stale.exists()  # the metrics plugin is off: nobody touches its folder
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_child_exit_folds_a_killed_worker_s_metrics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    dead_pid = 4_000_000  # above any pid_max: a worker that is gone
    key = mmap_dict.mmap_key("jobs", "jobs_total", [], [], "Jobs done.")
    values = MmapedDict(str(folder / f"counter_{dead_pid}.db"))
    values.write_value(key, 7.0, 0.0)
    values.close()
    cfg = gunicorn_config(monkeypatch, APP_DATABASE__URL=f"sqlite:///{tmp_path / 'exit.db'}")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    cfg.child_exit(SimpleNamespace(), SimpleNamespace(pid=dead_pid))
    assert not (folder / f"counter_{dead_pid}.db").exists()
    merged = MmapedDict.read_all_values_from_file(str(folder / "counter_merged.db"))
    assert [(k, v) for k, v, _, _ in merged] == [(key, 7.0)]


# -- real servers ---------------------------------------------------------------------------


@pytest.fixture
def launch(server_launcher: ServerLauncher) -> Callable[[list[str], Mapping[str, str]], ServerProcess]:
    """Start a server command on a free port (``APP_SERVER__PORT``), with this environment's scripts first on PATH."""

    def start(command: list[str], environ: Mapping[str, str]) -> ServerProcess:
        port = free_port()
        env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "APP_SERVER__HOST": "127.0.0.1",
            "APP_SERVER__PORT": str(port),
            **environ,
        }
        return server_launcher.launch(command, port, env=env)

    return start


def worker_files(folder: Path) -> list[Path]:
    """Metric files owned by a process (not the merged ones)."""
    return [p for p in folder.glob("*.db") if re.search(r"_\d+\.db$", p.name)]


@pytest.mark.servers
def test_gunicorn_serves_taskman_with_the_config(
    launch: Callable[[list[str], Mapping[str, str]], ServerProcess], database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by a previous run")
    server = launch(
        [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "taskman.wsgi:app"],
        {
            "APP_DATABASE__URL": database_url,
            "APP_SERVER__WORKERS": "2",
            "APP_METRICS__MULTIPROCESS_DIR": str(folder),
            "APP_PLUGINS__DISABLE": "auth",  # the scrape below needs no token
        },
    )
    server.wait_for_http("/health/ready", 200)
    assert not (folder / "counter_1.db").exists()  # on_starting emptied the folder
    server.wait_until(
        "two workers writing metric files", lambda: len({p.name.rsplit("_", 1)[1] for p in worker_files(folder)}) == 2
    )

    for _ in range(6):
        assert server.get("/api/v1/projects").status == 200
    scrape = server.get("/metrics").body.decode()
    counted = re.search(
        r'http_server_request_duration_seconds_count\{[^}]*http_route="/api/v1/projects"[^}]*\} (\S+)', scrape
    )
    assert counted is not None and float(counted[1]) == 6.0, scrape

    too_many = {f"X-Extra-{n}": "1" for n in range(120)}  # limit_request_fields = 100
    refused = server.get("/health/live", headers=too_many)
    assert refused.status == 431 and refused.headers["content-type"] == "application/problem+json"
    assert server.get("/health/live", headers=dict(list(too_many.items())[:80])).status == 200

    assert server.stop(signal.SIGTERM) == 0
    assert worker_files(folder) == []  # each worker folded its files into the merged ones
    assert (folder / "histogram_merged.db").exists()


def _raw_request_head(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(4096):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        return received


@pytest.mark.servers
def test_the_uvicorn_script_serves_taskman_with_its_limits(
    launch: Callable[[list[str], Mapping[str, str]], ServerProcess], database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by a previous run")
    server = launch(
        ["sh", str(UVICORN_SCRIPT)],
        {
            "APP_DATABASE__URL": database_url,
            "APP_METRICS__MULTIPROCESS_DIR": str(folder),
            "UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE": "4096",
        },
    )
    server.wait_for_http("/health/ready", 200)
    assert not (folder / "counter_1.db").exists()
    assert worker_files(folder)  # the worker writes to the shared folder

    start = b"GET /health/live HTTP/1.1\r\nHost: taskman\r\nConnection: close\r\nX-Padding: "
    # A request head still incomplete beyond the limit is refused (a problem); a smaller one completes normally.
    refused = _raw_request_head(server.port, start + b"a" * 6000)
    assert refused.startswith(b"HTTP/1.1 431 ") and b"application/problem+json" in refused
    assert _raw_request_head(server.port, start + b"a" * 3000 + b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")

    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn alone re-raises the signal it handled
    assert worker_files(folder) == []


# -- Dockerfile -----------------------------------------------------------------------------


def test_the_dockerfile_copies_sources_that_exist_and_are_in_the_build_context() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    sources = [s for c in context_copies() for s in c.sources]
    assert {"setup.cfg", "taskman", "plugins", "deploy/gunicorn.conf.py", "deploy/uvicorn.sh"} <= set(sources)
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert in_build_context(source, ignore), f"{source} is left out by {DOCKERIGNORE.name}"
    for left_out in ("tests/conftest.py", ".git/HEAD", "taskman.db", "taskman/__pycache__/app.cpython-312.pyc"):
        assert not in_build_context(left_out, ignore), left_out


def replay_copy(copy: Copy, root: Path, ignore: list[str]) -> None:
    """Do what a COPY instruction does, from the build context (the repository less what the ignore file drops)."""

    def left_out(folder: str, names: list[str]) -> list[str]:
        relative = Path(folder).relative_to(REPO_ROOT)
        return [n for n in names if not in_build_context((relative / n).as_posix(), ignore)]

    into_folder = copy.destination.endswith("/") or copy.destination == "."
    for item in copy.sources:
        origin = REPO_ROOT / item
        target = root / (Path(item).name if into_folder else copy.destination)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=left_out)
        else:
            shutil.copy(origin, target)


def test_the_dockerfile_build_stage_makes_the_wheel(tmp_path: Path) -> None:
    # The build stage replayed: its COPY instructions from the build context, then `pip wheel` (offline here).
    ignore = DOCKERIGNORE.read_text().splitlines()
    (build_wheels,) = [i.arguments for i in dockerfile_instructions() if i.stage == 0 and i.keyword == "RUN"]
    assert build_wheels.startswith("pip wheel") and build_wheels.endswith('".[postgres,redis]"')
    source = tmp_path / "src"
    source.mkdir()
    for copy in (c for c in context_copies() if c.stage == 0):
        replay_copy(copy, source, ignore)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    result = subprocess.run(
        [*command, "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("taskman-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"taskman/wsgi.py", "taskman/asgi.py", "taskman_plugins/metrics/multiprocess.py"} <= names
    assert any(n.startswith("taskman_plugins/tracker/migrations/") for n in names)
    assert not any("__pycache__" in n for n in names)


def test_the_image_runs_taskman_serve_as_a_non_root_user_on_the_exposed_port() -> None:
    command = json_instruction("CMD")
    assert command[:2] == ["taskman", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    script = _console_script(command[0])
    assert script.dist is not None and script.dist.name == "taskman"
    assert script.value == "taskman.cli:main"
    instructions = dockerfile_instructions()
    (user,) = [i.arguments for i in instructions if i.keyword == "USER"]
    uid = int(user.split(":")[0])
    assert uid != 0
    assert uid == manifest("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    (expose,) = [i.arguments for i in instructions if i.keyword == "EXPOSE"]
    env = " ".join(i.arguments for i in instructions if i.keyword == "ENV")
    assert f"APP_SERVER__PORT={expose}" in env
    assert int(expose) == app_container()["ports"][0]["containerPort"]
    froms = [i.arguments for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:${PYTHON_VERSION}-slim") for f in froms)
    (version,) = [i.arguments for i in instructions if i.keyword == "ARG"]
    assert version == "PYTHON_VERSION=3.12"
    (healthcheck,) = [i.arguments for i in instructions if i.keyword == "HEALTHCHECK"]
    program, flag, code = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert (program, flag) == ("python", "-c") and "/health/live" in code
    compile(code, "HEALTHCHECK", "exec")
    installs = [i.arguments for i in instructions if i.keyword == "RUN" and "pip install" in i.arguments]
    assert any('"taskman[postgres,redis]"' in run for run in installs)


# -- docs -----------------------------------------------------------------------------------


def test_every_app_setting_named_in_the_kit_and_its_docs_exists() -> None:
    texts = [DOCS.read_text(), *(p.read_text() for p in kit_files())]
    names = {m for text in texts for m in re.findall(r"\bAPP_[A-Z][A-Z0-9_]*[A-Z0-9]\b", text)}
    assert {"APP_SERVER__WORKERS", "APP_PLUGINS__DISABLE", "APP_DATABASE__URL"} <= names
    assert unknown_settings(names - {"APP_CONFIG_FILE"}) == []


def test_the_docs_explain_every_file_of_the_kit() -> None:
    text = DOCS.read_text()
    for path in kit_files():
        assert f"`{path.relative_to(REPO_ROOT)}`" in text, path
    for step in ("preStop", "SIGTERM", "503", "graceful", "APP_PLUGINS__DISABLE", "PROMETHEUS_MULTIPROC_DIR"):
        assert step in text, step
