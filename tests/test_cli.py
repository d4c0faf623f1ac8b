"""The ``taskman`` command, run in-process through click's runner and once for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskman.cli import EXIT_CONFIG, EXIT_DATABASE, EXIT_MIGRATIONS, cli
from tests.test_migrations import ADD_DONE, CREATE_NOTES

NOTES_PLUGIN = '''
from pathlib import Path

import click

from taskman import hookimpl


class Notes:
    def on_get(self, req, resp):
        resp.media = []


@hookimpl
def taskman_migrations():
    return Path(__file__).parent / "notes_migrations"


@hookimpl
def taskman_routes(config):
    return [("/notes", Notes())]


@hookimpl
def taskman_serve(config, workers):
    Path(config.database.url.rsplit("/", 1)[0].replace("sqlite:///", "")).joinpath("served").write_text(str(workers))


@hookimpl
def taskman_cli(group):
    @group.command("notes-hello")
    @click.argument("name")
    def notes_hello(name):
        """Say hello from the notes plugin."""
        click.echo(f"notes says hello to {name}")
'''


@pytest.fixture
def notes_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution (module + dist-info) with migrations and a subcommand."""
    site = tmp_path / "site"
    (site / "notes_migrations").mkdir(parents=True)
    (site / "taskman_notes.py").write_text(NOTES_PLUGIN)
    (site / "notes_migrations" / "0001_create_notes.py").write_text(CREATE_NOTES)
    (site / "notes_migrations" / "0002_add_done.py").write_text(ADD_DONE)
    dist_info = site / "taskman_notes-2.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: taskman-notes\nVersion: 2.0\n")
    (dist_info / "entry_points.txt").write_text("[taskman.plugins]\nnotes = taskman_notes\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def run(*args: str, env: dict[str, str] | None = None, database_url: str | None = None) -> Result:
    environment = dict(env or {})
    if database_url:
        environment.setdefault("APP_DATABASE__URL", database_url)
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


def test_plugins_json_lists_builtins_with_hooks() -> None:
    result = run("plugins", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["request_id"]["distribution"] == "taskman"
    assert rows["request_id"]["enabled"] is True
    assert rows["request_id"]["hooks"] == ["taskman_middleware"]


def test_plugins_shows_disabled_ones() -> None:
    result = run("plugins", env={"APP_PLUGINS__DISABLE": "request_id"})
    assert result.exit_code == 0
    assert "disabled" in result.stdout.splitlines()[0] or "disabled" in result.stdout


def test_config_shows_values_with_sources_and_hides_secrets() -> None:
    result = run("config", "--json", env={"APP_DATABASE__URL": "postgresql://u:hunter2@h/db"})
    assert result.exit_code == 0
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    assert rows["database.url"]["value"] == "postgresql://u:***REDACTED***@h/db"
    assert rows["database.url"]["source"] == "env APP_DATABASE__URL"
    assert rows["database.pool_size"]["source"] == "default"
    assert "hunter2" not in result.stdout


def test_config_file_option(tmp_path: Path) -> None:
    file = tmp_path / "my.toml"
    file.write_text("[server]\nport = 9123\n")
    for args in (("--config", str(file), "config"), ("config", "--config", str(file))):
        result = run(*args)
        assert result.exit_code == 0, result.stderr
        assert "9123" in result.stdout and f"file {file}" in result.stdout


def test_bad_config_is_one_line_and_non_zero() -> None:
    result = run("config", env={"APP_DATABASE__POOL_SIZE": "500"})
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("taskman: error: invalid configuration: database.pool_size")
    assert "APP_DATABASE__POOL_SIZE" in lines[0]


def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "config", env={"APP_DATABASE__POOL_SIZE": "500"})
    assert result.exit_code != 0
    assert "Traceback" in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"APP_DATABASE__URL": "mysql://u:S3cret@h/db"},
        {"APP_DATABASE__URL": "postgresql://u:S3cret@127.0.0.1:99999/db"},
        {"APP_DATABASE__URL": "postgresql://u:S3cret@127.0.0.1:5432/db?foo=bar"},
        {"APP_RATELIMIT__STORAGE_URL": "redis://u:S3cret@h:99999/0"},
    ],
)
@pytest.mark.parametrize("command", ["config", "check", "migrate", "routes", "serve"])
def test_bad_urls_are_one_line_without_the_password_even_with_debug(env: dict[str, str], command: str) -> None:
    result = run(command, env=env)
    assert result.exit_code in (1, EXIT_CONFIG)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("taskman: error: invalid configuration: ")
    assert "S3cret" not in result.output
    debug = run("--debug", command, env=env)
    assert "Traceback" in debug.stderr and "S3cret" not in debug.output


def test_check_passes_on_a_healthy_setup(database_url: str) -> None:
    assert run("migrate", database_url=database_url).exit_code == 0  # the built-in tracker's tables
    result = run("check", database_url=database_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["config: ok", "database: ok", "migrations: ok"]


def test_check_exit_codes_say_what_failed(database_url: str, notes_plugin: Path) -> None:
    assert run("check", env={"APP_ENVIRONMENT": "nope"}).exit_code == EXIT_CONFIG
    unreachable = run(
        "check", env={"APP_DATABASE__URL": "postgresql://x@127.0.0.1:1/x", "APP_DATABASE__CONNECT_TIMEOUT": "1"}
    )
    assert unreachable.exit_code == EXIT_DATABASE
    assert "database unavailable" in unreachable.stderr
    pending = run("check", database_url=database_url)
    assert pending.exit_code == EXIT_MIGRATIONS
    assert "notes:0001_create_notes" in pending.stderr


@pytest.mark.empty_database
def test_migrate_apply_status_rollback(database_url: str, notes_plugin: Path) -> None:
    env = {"APP_PLUGINS__DISABLE": "tracker,auth,events,webhooks"}  # the notes plugin's migrations alone
    status = run("migrate", "status", database_url=database_url, env=env)
    assert "notes:0001_create_notes" in status.stdout and "pending" in status.stdout
    applied = run("migrate", database_url=database_url, env=env)
    assert applied.stdout.splitlines() == ["applied notes:0001_create_notes", "applied notes:0002_add_done"]
    assert run("migrate", "apply", database_url=database_url, env=env).stdout.strip() == "nothing to apply"
    assert "pending" not in run("migrate", "status", database_url=database_url, env=env).stdout
    rolled_back = run("migrate", "rollback", database_url=database_url, env=env)
    assert rolled_back.stdout.strip() == "rolled back notes:0002_add_done"
    assert run("check", database_url=database_url, env=env).exit_code == EXIT_MIGRATIONS


def test_routes_lists_plugin_routes(notes_plugin: Path) -> None:
    result = run("routes")
    assert result.exit_code == 0
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("/notes")]
    assert line.split() == ["/notes", "GET", "notes"]


def test_plugins_add_subcommands(notes_plugin: Path) -> None:
    result = run("notes-hello", "ada")
    assert result.exit_code == 0
    assert result.stdout == "notes says hello to ada\n"
    assert "notes-hello" in run("--help").stdout
    assert run("notes-hello", "ada", env={"APP_PLUGINS__DISABLE": "notes"}).exit_code != 0


@pytest.mark.empty_database
def test_serve_refuses_pending_migrations_in_production(database_url: str, notes_plugin: Path) -> None:
    result = run("serve", env={"APP_ENVIRONMENT": "production"}, database_url=database_url)
    assert result.exit_code != 0
    # (the app is built first: its warnings, such as the notes route's undeclared access, may come before)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("taskman: error:")]
    # Every pending migration is named (the built-in plugins' list grows: the notes plugin's two are fixed).
    assert "(auth:0001_tokens, events:0001_outbox, notes:0001_create_notes, notes:0002_add_done, tracker:" in line
    assert "migration(s) pending" in line and line.rstrip().endswith("before starting in this environment")
    assert "taskman migrate" in line


def test_serve_prepares_plugins_before_starting_the_server(
    tmp_path: Path, notes_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[str, int, int]] = []

    def fake_uvicorn(host: str, port: int, workers: int, config: Any) -> None:
        assert (tmp_path / "served").read_text() == "3"  # taskman_serve ran first
        started.append((host, port, workers))

    monkeypatch.setattr("taskman.servers.serve_uvicorn", fake_uvicorn)
    result = run("serve", "--port", "8123", "--workers", "3", database_url=f"sqlite:///{tmp_path}/db.sqlite")
    assert result.exit_code == 0, result.stderr
    assert started == [("127.0.0.1", 8123, 3)]


def test_check_and_serve_refuse_more_threads_than_database_connections(database_url: str) -> None:
    environ = {"APP_SERVER__THREADS": "40", "APP_DATABASE__POOL_SIZE": "10"}
    for command in (["check"], ["serve", "--wsgi"], ["serve", "--asgi"]):
        result = run(*command, env=environ, database_url=database_url)
        assert result.exit_code == (3 if command == ["check"] else 1), result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(
            "taskman: error: invalid configuration: server.threads (from env APP_SERVER__THREADS): 40 threads"
        ), line


def test_the_installed_command_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "taskman"), "plugins", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names: list[Any] = [row["name"] for row in json.loads(result.stdout)]
    assert "request_id" in names


def test_uvicorn_listeners_are_tcp_sockets_so_connections_get_nodelay() -> None:
    """uvicorn's pre-bound listener says proto 0; asyncio then never sets TCP_NODELAY (+40 ms per keep-alive reply)."""
    import socket

    import uvicorn.config

    from taskman.servers import bind_tcp_sockets_as_tcp

    bind_tcp_sockets_as_tcp()
    bind_tcp_sockets_as_tcp()  # idempotent: wrapped once
    sock = uvicorn.config.Config("taskman.asgi:app", host="127.0.0.1", port=0).bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_config_after_a_plugin_subcommand_is_the_config_it_uses(tmp_path: Path) -> None:
    database = tmp_path / "from-the-file.db"
    config_file = tmp_path / "other.toml"
    config_file.write_text(f'environment = "testing"\n[database]\nurl = "sqlite:///{database}"\n')
    result = run("tokens", "create", "--name", "ci", "--config", str(config_file))
    assert result.exit_code == 0, result.stderr
    assert database.exists(), "the token went to the database the file names"
    listed = run("tokens", "list", "--config", str(config_file))
    assert listed.exit_code == 0 and "ci" in listed.stdout
