"""Third-party plugins installed as real distributions, found through the ``taskman.plugins`` entry points.

The fixture distributions under ``tests/fixtures`` are pip-installed into
temporary target folders (never into the test environment itself), made
visible in-process with ``monkeypatch.syspath_prepend`` and to the
``taskman`` command through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from taskman.errors import PROBLEM_CONTENT_TYPE
from taskman.plugins import PluginError, Plugins
from tests.helpers import (
    FIXTURES,
    REPO_ROOT,
    free_port,
    install_fixture_dist,
    one_error_line,
    plugins_json,
    run_taskman,
)

Client = Callable[..., falcon.testing.TestClient]

BROKEN_CAUSE = "RuntimeError: the broken plugin could not find its configuration"


# -- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed ``taskman-hello`` distribution."""
    return install_fixture_dist("taskman-hello", tmp_path_factory.mktemp("dists") / "hello")


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed ``taskman-broken`` distribution."""
    return install_fixture_dist("taskman-broken", tmp_path_factory.mktemp("dists") / "broken")


def _on_path(site: Path, monkeypatch: pytest.MonkeyPatch, modules: Sequence[str]) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(site))
    yield site
    for module in modules:  # keep the module out of later tests that do not see its distribution
        sys.modules.pop(module, None)


@pytest.fixture
def hello_installed(hello_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from _on_path(hello_site, monkeypatch, ["hello_taskman"])


@pytest.fixture
def broken_installed(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from _on_path(broken_site, monkeypatch, ["taskman_broken"])


# -- the hello plugin, in-process on both flavours ---------------------------


def test_hello_plugin_is_discovered_and_serves(hello_installed: Path, make_client: Client) -> None:
    client = make_client()
    registry = client.app.taskman.plugins
    assert "hello" in registry.names
    assert registry.distribution_of("hello") == "taskman-hello"
    import hello_taskman

    assert Path(hello_taskman.__file__).parent == hello_installed, "loaded from the installed distribution"

    result = client.simulate_get("/hello/world")
    assert result.status_code == 200
    assert result.json == {"message": "Hello, world!"}
    assert client.simulate_get("/hello/Ada%20Lovelace").json == {"message": "Hello, Ada Lovelace!"}


def test_hello_plugin_disabled_by_env_answers_404(hello_installed: Path, make_client: Client) -> None:
    client = make_client(environ={"APP_PLUGINS__DISABLE": "hello"})
    registry = client.app.taskman.plugins
    assert "hello" not in registry.names
    assert {i.name: i.enabled for i in registry.infos()}["hello"] is False

    result = client.simulate_get("/hello/world")
    assert result.status_code == 404
    assert result.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert result.json["status"] == 404
    assert result.json["instance"] == "/hello/world"


# -- the hello plugin through the taskman command ---------------------------


def test_cli_plugins_lists_hello(hello_site: Path, tmp_path: Path) -> None:
    rows = plugins_json(run_taskman(["plugins", "--json"], cwd=tmp_path, pythonpath=[hello_site]))
    assert rows["hello"] == {
        "name": "hello",
        "distribution": "taskman-hello",
        "version": "1.0.0",
        "enabled": True,
        "hooks": ["taskman_access", "taskman_openapi", "taskman_routes", "taskman_settings"],
        "error": None,
    }
    assert rows["request_id"]["distribution"] == "taskman"  # the built-ins are still there

    plain = run_taskman(["plugins"], cwd=tmp_path, pythonpath=[hello_site])
    assert plain.returncode == 0, plain.stderr
    (line,) = [row for row in plain.stdout.splitlines() if row.split()[0] == "hello"]
    assert line.split() == [
        "hello",
        "taskman-hello",
        "1.0.0",
        "enabled",
        "taskman_access,",
        "taskman_openapi,",
        "taskman_routes,",
        "taskman_settings",
    ]


def test_cli_routes_shows_hello(hello_site: Path, tmp_path: Path) -> None:
    result = run_taskman(["routes"], cwd=tmp_path, pythonpath=[hello_site])
    assert result.returncode == 0, result.stderr
    (line,) = [row for row in result.stdout.splitlines() if row.startswith("/hello/")]
    assert line.split() == ["/hello/{name}", "GET", "hello"]


def test_cli_plugins_shows_hello_disabled(hello_site: Path, tmp_path: Path) -> None:
    result = run_taskman(
        ["plugins", "--json"], cwd=tmp_path, pythonpath=[hello_site], env={"APP_PLUGINS__DISABLE": "hello"}
    )
    rows = plugins_json(result)
    assert rows["hello"]["enabled"] is False
    assert rows["hello"]["distribution"] == "taskman-hello"
    assert rows["hello"]["hooks"] == []
    assert rows["request_id"]["enabled"] is True

    routes = run_taskman(["routes"], cwd=tmp_path, pythonpath=[hello_site], env={"APP_PLUGINS__DISABLE": "hello"})
    assert routes.returncode == 0, routes.stderr
    assert "/hello/" not in routes.stdout


def test_unknown_plugin_in_disable_list_is_one_error_line(hello_site: Path, tmp_path: Path) -> None:
    result = run_taskman(
        ["plugins"], cwd=tmp_path, pythonpath=[hello_site], env={"APP_PLUGINS__DISABLE": "hello,no_such_plugin"}
    )
    line = one_error_line(result)
    assert "no_such_plugin" in line
    assert "APP_PLUGINS__DISABLE" in line
    assert result.stdout == ""


# -- the README's plugin example is the fixture ------------------------------


def _writing_a_plugin_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Writing a plugin\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README.md has a '## Writing a plugin' section"
    return match.group(1)


def _fenced(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.M | re.S)


def test_readme_plugin_example_is_the_hello_fixture() -> None:
    section = _writing_a_plugin_section()
    (python_block,) = _fenced(section, "python")
    assert python_block == (FIXTURES / "taskman-hello" / "hello_taskman.py").read_text(encoding="utf-8")

    (toml_block,) = _fenced(section, "toml")
    documented = tomllib.loads(toml_block)["project"]["entry-points"]
    assert documented == {"taskman.plugins": {"hello": "hello_taskman"}}
    fixture = tomllib.loads((FIXTURES / "taskman-hello" / "pyproject.toml").read_text(encoding="utf-8"))
    for group, entries in documented.items():
        assert fixture["project"]["entry-points"][group] == entries


# -- a plugin that raises on import ------------------------------------------


def test_broken_plugin_stops_the_app_naming_it(broken_installed: Path, make_config: Callable[..., Any]) -> None:
    with pytest.raises(PluginError) as failure:
        make_config()
    error = failure.value
    assert (error.plugin, error.distribution) == ("broken", "taskman-broken")
    assert isinstance(error.cause, RuntimeError)
    assert str(error) == f"plugin 'broken' (distribution taskman-broken) failed: {BROKEN_CAUSE}"


def test_disabled_broken_plugin_is_never_imported(broken_installed: Path, make_client: Client) -> None:
    sys.modules.pop("taskman_broken", None)
    client = make_client(environ={"APP_PLUGINS__DISABLE": "broken"})
    assert "taskman_broken" not in sys.modules
    assert "broken" not in client.app.taskman.plugins.names
    assert client.simulate_get("/nothing-here").status_code == 404
    infos = {i.name: i for i in Plugins.discover(["broken"]).infos()}
    assert (infos["broken"].distribution, infos["broken"].enabled) == ("taskman-broken", False)
    assert "taskman_broken" not in sys.modules


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["plugins"], id="plugins"),
        pytest.param(["serve", "--port", "{port}"], id="serve"),
        pytest.param(["serve", "--wsgi", "--port", "{port}"], id="serve-wsgi"),
    ],
)
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_broken_plugin_is_one_error_line(
    broken_site: Path, tmp_path: Path, database_url: str, args: list[str], debug: bool
) -> None:
    args = [a.format(port=free_port()) for a in args]
    if debug:
        args = [*args, "--debug"]
    result = run_taskman(
        args, cwd=tmp_path, pythonpath=[broken_site], env={"APP_DATABASE__URL": database_url, "PYTHONUNBUFFERED": "1"}
    )
    assert result.returncode != 0, result
    assert "serving" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("taskman: error: ")]
    assert error_lines == [f"taskman: error: plugin 'broken' (distribution taskman-broken) failed: {BROKEN_CAUSE}"], (
        result.stderr
    )
    if debug:
        assert "Traceback (most recent call last):" in result.stderr
        assert result.stderr.rstrip("\n").endswith(error_lines[0]), "the one-line summary comes last"
    else:
        one_error_line(result)
        assert "Traceback" not in result.stderr


def test_debug_before_the_subcommand_also_shows_the_traceback(broken_site: Path, tmp_path: Path) -> None:
    result = run_taskman(["--debug", "plugins"], cwd=tmp_path, pythonpath=[broken_site])
    assert result.returncode != 0
    assert "Traceback (most recent call last):" in result.stderr
    assert result.stderr.splitlines()[-1].endswith(BROKEN_CAUSE)


def test_disabled_broken_plugin_lets_the_cli_run(broken_site: Path, tmp_path: Path) -> None:
    env = {"APP_PLUGINS__DISABLE": "broken"}
    rows = plugins_json(run_taskman(["plugins", "--json"], cwd=tmp_path, pythonpath=[broken_site], env=env))
    assert rows["broken"] == {
        "name": "broken",
        "distribution": "taskman-broken",
        "version": "0.0.1",
        "enabled": False,
        "hooks": [],
        "error": None,
    }
    routes = run_taskman(["routes"], cwd=tmp_path, pythonpath=[broken_site], env=env)
    assert routes.returncode == 0, routes.stderr
    assert routes.stderr == ""


def test_taskman_plugins_lists_every_plugin_when_one_is_broken(broken_site: Path, tmp_path: Path) -> None:
    result = run_taskman(["plugins", "--json"], cwd=tmp_path, pythonpath=[broken_site])
    assert result.returncode != 0, "a broken plugin still fails the command"
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["broken"]["error"] == BROKEN_CAUSE and rows["broken"]["enabled"] is True
    assert rows["request_id"]["error"] is None and "taskman_middleware" in rows["request_id"]["hooks"]
    plain = run_taskman(["plugins"], cwd=tmp_path, pythonpath=[broken_site])
    (line,) = [row for row in plain.stdout.splitlines() if row.split()[0] == "broken"]
    assert line.split()[3] == "broken" and line.endswith(BROKEN_CAUSE)
