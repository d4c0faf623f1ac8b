"""The auth plugin: tokens, scopes, declarations, the CLI, the production safeguard; on both flavours."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from click.testing import CliRunner
from taskman_plugins import auth as auth_plugin
from taskman_plugins.auth import AccessTable, Authenticator, Principal, TokenError, TokenStore, bearer_token, decide
from taskman_plugins.auth.access import DeclarationError, effective_scopes
from taskman_plugins.auth.tokens import TOKEN_SHAPE, digest, mint, parse_duration, parse_scopes, utcnow

import taskman
from taskman.app import SafeguardError
from taskman.cli import cli
from tests.sample_plugins import EchoPlugin
from tests.test_health import ChecksPlugin, CountingCheck

Client = Callable[..., falcon.testing.TestClient]
ENFORCED = {"APP_AUTH__ALLOW_ANONYMOUS": "false"}
TOKEN_IN_TEXT = re.compile(r"tm_[A-Za-z0-9_-]{43}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def enforced(make_client: Client) -> Callable[..., falcon.testing.TestClient]:
    """A client whose app refuses requests without a token."""

    def make(environ: dict[str, str] | None = None, **kwargs: Any) -> falcon.testing.TestClient:
        return make_client(environ={**ENFORCED, **(environ or {})}, **kwargs)

    return make


def new_token(scopes: str, name: str | None = None, expires_in: timedelta | None = None) -> str:
    token, _ = TokenStore().create(name or f"t-{scopes.replace(',', '-')}", scopes, expires_in)
    return token


# -- plain Python: tokens ----------------------------------------------------------------


def test_minted_tokens_are_random_and_well_formed() -> None:
    tokens = {mint() for _ in range(100)}
    assert len(tokens) == 100
    assert all(TOKEN_SHAPE.fullmatch(t) for t in tokens)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "00d", "30", "d", "-1d", "1y", "1.5h", "\uff15d", "+5d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(TokenError, match="positive duration"):
        parse_duration(text)


def test_durations_are_bounded_before_any_arithmetic() -> None:
    assert parse_duration("36500d") == timedelta(days=36500) == parse_duration("876000h")
    for text in ("36501d", "5215w", "500000w", "99999999999w", "9" * 5000 + "m"):
        with pytest.raises(TokenError, match="too long: at most 36500d"):
            parse_duration(text)


def test_scopes_are_checked_and_ordered() -> None:
    assert parse_scopes("write, read") == ("read", "write")
    for bad in ("", "read,root", "everything"):
        with pytest.raises(TokenError, match="scopes"):
            parse_scopes(bad)


def test_the_store_keeps_only_a_hash_and_verifies_in_full(client: falcon.testing.TestClient) -> None:
    store = TokenStore()
    token, info = store.create("ci", "read,write", timedelta(days=30))
    assert info.prefix == token[: len(info.prefix)] and info.scopes == ("read", "write")
    from taskman_plugins.auth.models import ApiToken

    row = ApiToken.get(ApiToken.name == "ci")
    assert token not in (row.token_hash, row.prefix, row.scopes) and row.token_hash == digest(token)
    assert store.verify(token) == Principal("ci", info.prefix, frozenset({"read", "write"}))
    # Same prefix, different secret: refused (the hash decides, compared in constant time).
    forged = token[: len(info.prefix)] + ("A" if token[-1] != "A" else "B") * (len(token) - len(info.prefix))
    assert store.verify(forged) is None
    assert store.verify("tm_short") is None and store.verify("") is None
    assert store.verify(token, now=utcnow() + timedelta(days=31)) is None  # expired
    with pytest.raises(TokenError, match="already exists"):
        store.create("ci", "read")
    with pytest.raises(TokenError, match="name"):
        store.create("bad name!", "read")
    assert [t.name for t in store.list()] == ["ci"]
    assert store.revoke("ci") and not store.revoke("ci")
    assert store.verify(token) is None


def test_the_authenticator_caches_lookups_and_throttles_last_used(client: falcon.testing.TestClient) -> None:
    store = TokenStore()
    token, _ = store.create("cached", "read")
    authenticator = Authenticator(store, cache_seconds=60, last_used_interval=3600)
    principal = authenticator.authenticate(token)
    assert principal is not None and principal.name == "cached"
    first_use = store.list()[0].last_used_at
    assert first_use is not None
    store.revoke("cached")
    # Cached: still valid in this process until cache_seconds pass; the last-used time is not rewritten.
    assert authenticator.authenticate(token) == principal
    uncached = Authenticator(store, cache_seconds=0, last_used_interval=3600)
    assert uncached.authenticate(token) is None
    assert uncached.cached(token) == (False, None)


def test_garbage_tokens_are_cached_as_misses(client: falcon.testing.TestClient) -> None:
    authenticator = Authenticator(TokenStore(), cache_seconds=60, last_used_interval=60)
    garbage = mint()
    assert authenticator.authenticate(garbage) is None
    assert authenticator.cached(garbage) == (True, None)


@pytest.mark.parametrize(
    "header,token",
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("Bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
    ],
)
def test_bearer_header_parsing(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


# -- plain Python: access rules ----------------------------------------------------------


def test_access_table_resolves_rules_and_fails_closed() -> None:
    routes = [
        ("/items", ["GET", "POST"]),
        ("/items/{id}", ["GET", "DELETE"]),
        ("/metrics", ["GET"]),
        ("/live", ["GET"]),
        ("/secret", ["GET"]),
    ]
    declarations = [
        (
            "p",
            {
                "/items": "by-method",
                "/items/{id}": {"GET": "read", "delete": "admin"},
                "/metrics": "metrics",
                "/live": "public",
            },
        )
    ]
    table = AccessTable.build(routes, declarations, metrics_access="token")
    assert table.requirement("/items", "GET") == "read"
    assert table.requirement("/items", "POST") == "write"
    assert table.requirement("/items/{id}", "DELETE") == "admin"
    assert table.requirement("/metrics", "GET") == "read"
    assert table.requirement("/live", "GET") == "public"
    assert table.requirement("/secret", "GET") == "admin"
    assert table.requirement("/items", "OPTIONS") == "public"  # CORS preflights carry no token
    assert table.requirement(None, "GET") == "admin"
    assert table.undeclared == [("/secret", "GET")]
    opened = AccessTable.build(routes, declarations, metrics_access="open")
    assert opened.requirement("/metrics", "GET") == "public"


def test_unknown_rules_name_the_plugin() -> None:
    with pytest.raises(DeclarationError, match=r"plugin 'p'.*'root'"):
        AccessTable.build([], [("p", {"/x": "root"})], metrics_access="token")


def test_decisions() -> None:
    reader = Principal("r", "tm_r", frozenset({"read"}))
    admin = Principal("a", "tm_a", frozenset({"admin"}))
    assert decide("public", None, None).allowed
    assert decide("optional", None, None).allowed
    assert (decide("read", None, None).status, decide("read", None, None).scope) == (401, "read")
    assert decide("read", reader, None).allowed
    assert (decide("write", reader, None).status, decide("write", reader, None).scope) == (403, "write")
    assert decide("write", admin, None).allowed  # admin may do everything
    assert decide("read", None, frozenset({"read"})).allowed
    assert decide("write", None, frozenset({"read"})).status == 401


def test_write_includes_read_and_admin_includes_both() -> None:
    writer = Principal("w", "tm_w", frozenset({"write"}))
    assert decide("read", writer, None).allowed and decide("write", writer, None).allowed
    assert decide("admin", writer, None).status == 403
    assert decide("read", None, frozenset({"write"})).allowed  # anonymous scopes follow the same model
    assert effective_scopes(["write"]) == {"read", "write"}
    assert effective_scopes(["admin"]) == {"read", "write", "admin"}
    assert effective_scopes(["read"]) == {"read"} and effective_scopes([]) == frozenset()


# -- HTTP ----------------------------------------------------------------------------------


def test_no_token_is_a_401_problem_with_a_bearer_challenge(enforced: Client) -> None:
    client = enforced()
    result = client.simulate_get("/api/v1/projects")
    assert result.status_code == 401
    assert result.headers["content-type"] == "application/problem+json"
    assert result.headers["www-authenticate"] == 'Bearer realm="taskman"'
    assert result.json["status"] == 401 and "read" in result.json["detail"]


@pytest.mark.parametrize(
    "header,error",
    [
        ("Bearer " + "tm_" + "x" * 43, "invalid_token"),
        ("Bearer nonsense", "invalid_token"),
        ("Basic YTpi", "invalid_request"),
    ],
)
def test_a_bad_token_is_a_401_naming_the_error(enforced: Client, header: str, error: str) -> None:
    result = enforced().simulate_get("/api/v1/tasks", headers={"Authorization": header})
    assert result.status_code == 401
    assert result.headers["www-authenticate"] == f'Bearer realm="taskman", error="{error}"'


def test_scopes_decide_reads_and_writes(enforced: Client) -> None:
    client = enforced()
    reader, writer, admin = new_token("read"), new_token("read,write"), new_token("admin")
    assert client.simulate_get("/api/v1/projects", headers=bearer(reader)).status_code == 200
    refused = client.simulate_post(
        "/api/v1/projects", json={"id": "P-1", "name": "x", "mission": "y", "owner": "ada"}, headers=bearer(reader)
    )
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == 'Bearer realm="taskman", error="insufficient_scope", scope="write"'
    assert "`write` scope" in refused.json["detail"]
    created = client.simulate_post(
        "/api/v1/projects", json={"id": "P-1", "name": "x", "mission": "y", "owner": "ada"}, headers=bearer(writer)
    )
    assert created.status_code == 201, created.text
    assert client.simulate_delete("/api/v1/projects/P-1", headers=bearer(admin)).status_code == 204


def write_routes(client: falcon.testing.TestClient, ids: dict[str, str]) -> list[tuple[str, str]]:
    """``(method, path)`` of every route that needs ``write``, with the ids of the records made for it."""
    table = auth_plugin.access_table(client.app.taskman, client.app.taskman.config.auth)
    routes = []
    for template, methods in table.requirements.items():
        for method, requirement in methods.items():
            if requirement == "write":
                path = template
                for placeholder, value in ids.items():
                    path = path.replace(placeholder, value)
                routes.append((method, path))
    return sorted(routes)


def test_a_write_token_may_use_every_write_route_and_read_a_read_token_none(enforced: Client) -> None:
    """``write`` includes ``read``: the record a write answers with (an empty PATCH, a replay) is no leak."""
    client = enforced()
    writer, reader = new_token("write", "writer"), new_token("read", "reader")
    body = {"id": "P-1", "name": "x", "mission": "y", "owner": "ada"}
    assert client.simulate_post("/api/v1/projects", json=body, headers=bearer(writer)).status_code == 201
    list_id = client.simulate_post("/api/v1/action-lists", json={"title": "t"}, headers=bearer(writer)).json["id"]
    ids = {"{project_id}": "P-1", "{sprint_id}": "S-1", "{task_id}": "T-1", "{list_id}": list_id}
    routes = write_routes(client, {**ids, "{index:int(min=0)}": "0"})
    assert len(routes) >= 15 and ("DELETE", "/api/v1/projects/P-1") in routes
    for method, path in routes:
        refused = client.simulate_request(method, path, json={}, headers=bearer(reader))
        assert refused.status_code == 403, (method, path)
        assert refused.headers["www-authenticate"].endswith('scope="write"')
    for method, path in routes:
        if method != "DELETE":
            answered = client.simulate_request(method, path, json={}, headers=bearer(writer))
            assert answered.status_code not in (401, 403), (method, path, answered.text)
    read = client.simulate_get("/api/v1/projects/P-1", headers=bearer(writer))
    assert read.status_code == 200 and read.json["id"] == "P-1"
    assert client.simulate_get("/api/v1/action-lists", headers=bearer(writer)).status_code == 200
    assert client.simulate_delete("/api/v1/projects/P-1", headers=bearer(writer)).status_code == 204


def test_idempotency_keys_are_scoped_to_the_token(enforced: Client) -> None:
    client = enforced()
    alice, bob = new_token("write", "alice"), new_token("write", "bob")
    key = {"Idempotency-Key": "same-key"}
    body = {"id": "P-1", "name": "x", "mission": "y", "owner": "ada"}
    first = client.simulate_post("/api/v1/projects", json=body, headers={**bearer(alice), **key})
    assert first.status_code == 201
    # bob's "same-key" is his own: his request runs (a 409 on alice's P-1), nothing of alice's is replayed.
    replay_for_bob = client.simulate_post("/api/v1/projects", json=body, headers={**bearer(bob), **key})
    assert replay_for_bob.status_code == 409 and "idempotent-replayed" not in replay_for_bob.headers
    other = client.simulate_post("/api/v1/projects", json={**body, "id": "P-2"}, headers={**bearer(bob), **key})
    assert other.status_code == 201  # not a 422 telling bob that someone used the key
    again = client.simulate_post("/api/v1/projects", json=body, headers={**bearer(alice), **key})
    assert again.headers["idempotent-replayed"] == "true" and again.json == first.json


@pytest.mark.parametrize(
    "header",
    ["Bearer " + "tm_" + "x" * 43, "Bearer nonsense", "Basic YTpi", "Bearer", "revoked", "expired"],
)
def test_a_bad_token_on_an_open_route_counts_as_no_token(enforced: Client, header: str) -> None:
    """A probe that still carries an old token must not mark the instance down; failure details stay hidden."""
    plugin = ChecksPlugin({"secret": CountingCheck(error=RuntimeError("password=hunter2 at db.internal"))})
    client = enforced(plugins=(plugin,), environ={"APP_HEALTH__SHOW_DETAILS": "token"})
    if header in ("revoked", "expired"):
        token, _ = TokenStore().create(header, "read", timedelta(minutes=1))
        from taskman_plugins.auth.models import ApiToken

        if header == "revoked":
            TokenStore().revoke(header)
        else:
            ApiToken.update(expires_at=utcnow() - timedelta(seconds=1)).where(ApiToken.name == header).execute()
        header = f"Bearer {token}"
    headers = {"Authorization": header}
    for path in ("/health/live", "/health/startup", "/api/openapi.json", "/api/docs"):
        assert client.simulate_get(path, headers=headers).status_code == 200, path
    for path in ("/health/ready", "/health"):  # optional: a token shows details, a bad one counts as none
        result = client.simulate_get(path, headers=headers)
        assert result.status_code == 503, (path, result.text)  # the failing check, not a 401
        assert "hunter2" not in result.text
    assert client.simulate_get("/api/v1/tasks", headers=headers).status_code == 401


def test_an_expired_token_is_refused(enforced: Client) -> None:
    client = enforced()
    store = TokenStore()
    token, _ = store.create("old", "read", timedelta(minutes=1))
    from taskman_plugins.auth.models import ApiToken

    ApiToken.update(expires_at=utcnow() - timedelta(seconds=1)).where(ApiToken.name == "old").execute()
    assert client.simulate_get("/api/v1/tasks", headers=bearer(token)).status_code == 401


def test_probes_docs_and_preflights_are_open(enforced: Client) -> None:
    client = enforced()
    for path in ("/health/live", "/health/startup", "/health/ready", "/health", "/api/openapi.json", "/api/docs"):
        assert client.simulate_get(path).status_code == 200, path
    assert client.simulate_options("/api/v1/tasks").status_code == 200


def test_metrics_need_a_token_unless_opened(enforced: Client) -> None:
    assert enforced().simulate_get("/metrics").status_code == 401
    assert enforced().simulate_get("/metrics", headers=bearer(new_token("read", "scraper"))).status_code == 200
    assert enforced(environ={"APP_AUTH__METRICS_ACCESS": "open"}).simulate_get("/metrics").status_code == 200


def test_readiness_details_only_for_token_holders_when_configured(enforced: Client) -> None:
    plugin = ChecksPlugin({"secret": CountingCheck(error=RuntimeError("password=hunter2 at db.internal"))})
    client = enforced(plugins=(plugin,), environ={"APP_HEALTH__SHOW_DETAILS": "token"})
    anonymous = client.simulate_get("/health/ready")
    assert anonymous.status_code == 503 and "hunter2" not in anonymous.text
    holder = client.simulate_get("/health/ready", headers=bearer(new_token("read", "ops")))
    assert "hunter2" in holder.json["checks"]["secret"]["error"]


def test_a_route_nobody_declared_needs_admin(enforced: Client) -> None:
    client = enforced(plugins=(EchoPlugin(),))
    assert client.simulate_get("/echo", headers=bearer(new_token("read,write"))).status_code == 403
    assert client.simulate_get("/echo", headers=bearer(new_token("admin"))).status_code == 200


def test_every_route_of_every_builtin_plugin_declares_its_access(make_config: Callable[..., Any]) -> None:
    config = make_config(environ=ENFORCED)
    app = taskman.create_app(config)
    table = auth_plugin.access_table(app.taskman, config.auth)
    assert table.requirements, "no routes found"
    assert table.undeclared == []


def test_anonymous_callers_get_the_configured_scopes(make_client: Client) -> None:
    client = make_client(environ={"APP_AUTH__ALLOW_ANONYMOUS": "true", "APP_AUTH__ANONYMOUS_SCOPES": "read"})
    assert client.simulate_get("/api/v1/tasks").status_code == 200
    assert (
        client.simulate_post(
            "/api/v1/projects", json={"id": "P-1", "name": "x", "mission": "y", "owner": "ada"}
        ).status_code
        == 401
    )


def test_the_token_never_reaches_the_logs(
    enforced: Client, capsys: pytest.CaptureFixture[str], fresh_logging: None
) -> None:
    client = enforced(environ={"APP_LOGGING__FORMAT": "json", "APP_LOGGING__LEVEL": "DEBUG"})
    token = new_token("read,write", "logged")
    capsys.readouterr()
    client.simulate_get("/api/v1/tasks", headers=bearer(token))
    client.simulate_get("/api/v1/tasks", headers=bearer(token[:-1] + "Z"))
    created = client.simulate_post(
        "/api/v1/projects", json={"id": "P-9", "name": "n", "mission": "m", "owner": "ada"}, headers=bearer(token)
    )
    assert created.status_code == 201
    captured = capsys.readouterr()
    assert captured.err, "nothing was logged"
    assert token not in captured.err + captured.out
    assert token[:-1] not in captured.err + captured.out


def test_disabling_the_plugin_removes_the_checks(make_client: Client) -> None:
    client = make_client(environ={**ENFORCED, "APP_PLUGINS__DISABLE": "auth"})
    assert client.simulate_get("/api/v1/tasks").status_code == 200
    assert client.simulate_get("/metrics").status_code == 200


# -- the production safeguard -------------------------------------------------------------


def test_production_refuses_to_run_without_auth_unless_told(make_config: Callable[..., Any], tmp_path: Path) -> None:
    def build(environ: dict[str, str]) -> Any:
        config = make_config(
            environ={"APP_PLUGINS__DISABLE": "auth", **environ}, overrides={"environment": "production"}
        )
        return taskman.create_app(config)

    with pytest.raises(SafeguardError, match="APP_AUTH__ALLOW_ANONYMOUS=true"):
        build({"APP_AUTH__ALLOW_ANONYMOUS": "false"})
    assert build({"APP_AUTH__ALLOW_ANONYMOUS": "true"}) is not None
    # In development nothing is asked.
    config = make_config(environ={"APP_PLUGINS__DISABLE": "auth", "APP_AUTH__ALLOW_ANONYMOUS": "false"})
    assert taskman.create_app(config) is not None


def test_the_safeguard_reads_the_config_file_too(database_url: str, tmp_path: Path) -> None:
    from taskman.config import load_config

    file = tmp_path / "taskman.toml"
    file.write_text('environment = "production"\n[plugins]\ndisable = ["auth"]\n[auth]\nallow_anonymous = true\n')
    config = load_config(file, environ={"APP_DATABASE__URL": database_url})
    assert taskman.create_app(config) is not None
    file.write_text('environment = "production"\n[plugins]\ndisable = ["auth"]\n')
    with pytest.raises(SafeguardError):
        taskman.create_app(load_config(file, environ={"APP_DATABASE__URL": database_url}))


# -- the CLI ----------------------------------------------------------------------------------


def tokens_cli(*args: str, database_url: str) -> Any:
    env = {"APP_DATABASE__URL": database_url, "APP_ENVIRONMENT": "testing"}
    return CliRunner().invoke(cli, ["tokens", *args], env=env, catch_exceptions=False)


def test_tokens_create_list_revoke(database_url: str) -> None:
    created = tokens_cli(
        "create", "--name", "ci", "--scope", "read,write", "--expires", "30d", database_url=database_url
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert TOKEN_SHAPE.fullmatch(token)
    assert "shown only now" in created.stderr and "read,write" in created.stderr
    listed = tokens_cli("list", database_url=database_url)
    assert listed.exit_code == 0 and "ci" in listed.stdout and token[:11] in listed.stdout
    assert token not in listed.stdout
    assert "never" in listed.stdout  # never used yet
    duplicate = tokens_cli("create", "--name", "ci", database_url=database_url)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    assert tokens_cli("create", "--name", "x", "--scope", "root", database_url=database_url).exit_code == 1
    assert tokens_cli("create", "--name", "x", "--expires", "soon", database_url=database_url).exit_code == 1
    assert tokens_cli("revoke", "ci", database_url=database_url).stdout.strip() == "revoked ci"
    missing = tokens_cli("revoke", "ci", database_url=database_url)
    assert missing.exit_code == 1 and "no token named 'ci'" in missing.stderr
    assert tokens_cli("list", database_url=database_url).stdout.strip() == "no tokens"


@pytest.mark.parametrize(
    "args,message",
    [
        (("--expires", "500000w"), "too long: at most 36500d"),
        (("--expires", "99999999999w"), "too long: at most 36500d"),
        (("--expires", "9" * 5000 + "d"), "too long"),
        (("--expires", "\uff15d"), "not a positive duration"),
        (("--scope", "root"), "scopes must be"),
    ],
)
def test_tokens_create_refuses_bad_options_in_one_line(database_url: str, args: tuple[str, ...], message: str) -> None:
    result = tokens_cli("create", "--name", "x", *args, database_url=database_url)
    assert result.exit_code == 1
    # (log lines of the migrations a testing environment applies may come first)
    last = result.stderr.splitlines()[-1]
    assert last.startswith("taskman: error: ") and message in last and len(last) < 200, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "url,message",
    [
        ("postgresql://u:S3cret@127.0.0.1:99999/db", "port"),
        ("postgresql://u:S3cret@127.0.0.1:5432/db?foo=bar", "unknown query option"),
        ("mysql://u:S3cret@h/db", "must start with"),
    ],
)
def test_tokens_commands_report_a_bad_database_url_in_one_line(url: str, message: str) -> None:
    for args in (("create", "--name", "x"), ("list",), ("revoke", "x")):
        result = tokens_cli(*args, database_url=url)
        assert result.exit_code == 1
        (line,) = result.stderr.splitlines()
        assert line.startswith("taskman: error: invalid configuration: database.url") and message in line
        assert "S3cret" not in result.output


@pytest.mark.empty_database
def test_tokens_refuse_pending_migrations_in_production(database_url: str) -> None:
    env = {"APP_DATABASE__URL": database_url, "APP_ENVIRONMENT": "production"}
    result = CliRunner().invoke(cli, ["tokens", "list"], env=env, catch_exceptions=False)
    assert result.exit_code == 1 and "taskman migrate" in result.stderr


def test_serve_in_development_bootstraps_one_token(
    make_config: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(environ=ENFORCED, overrides={"environment": "development"})
    development = taskman.create_app(config).taskman
    capsys.readouterr()
    auth_plugin.taskman_serve(development)
    out, err = capsys.readouterr()
    token = out.strip().splitlines()[-1]
    assert TOKEN_SHAPE.fullmatch(token) and "shown only now" in err
    auth_plugin.taskman_serve(development)  # a token exists now: nothing is created or printed
    assert capsys.readouterr().out == ""
    testing = taskman.create_app(make_config(environ=ENFORCED)).taskman
    capsys.readouterr()
    auth_plugin.taskman_serve(testing)
    assert capsys.readouterr().out == ""


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_a_fresh_development_server_prints_a_token_that_works(
    server_launcher: Any, tmp_path: Path, flavour: str
) -> None:
    env = {**ENFORCED, "APP_ENVIRONMENT": "development", "APP_DATABASE__URL": f"sqlite:///{tmp_path / 'dev.db'}"}
    server = server_launcher.start([f"--{flavour}", "--workers", "2"], pythonpath=[], env=env)
    server.wait_for_http("/health/ready", 200)
    tokens = TOKEN_IN_TEXT.findall(server.log)
    assert len(set(tokens)) == 1, server.log
    assert server.get("/api/v1/tasks").status == 401
    assert server.get("/api/v1/tasks", headers=bearer(tokens[0])).status == 200


# -- with the other plugins, real tokens ------------------------------------------------------


def test_rate_limits_follow_the_real_token_not_the_address(enforced: Client) -> None:
    client = enforced(environ={"APP_RATELIMIT__READS": "2/minute"})
    first, second = new_token("read", "first"), new_token("read", "second")
    for address in ("10.0.0.1", "10.0.0.2"):
        result = client.simulate_get("/api/v1/tasks", headers=bearer(first), remote_addr=address)
        assert result.status_code == 200
    refused = client.simulate_get("/api/v1/tasks", headers=bearer(first), remote_addr="10.0.0.3")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    # Another token, same address: its own budget.
    assert client.simulate_get("/api/v1/tasks", headers=bearer(second), remote_addr="10.0.0.1").status_code == 200


def test_authenticated_responses_are_never_stored(enforced: Client) -> None:
    client = enforced()
    token = new_token("read")
    assert client.simulate_get("/api/v1/tasks", headers=bearer(token)).headers["cache-control"] == "no-store"
    open_probe = client.simulate_get("/health/live")
    assert open_probe.status_code == 200 and "x-content-type-options" in open_probe.headers


def test_refusals_carry_cors_and_security_headers(enforced: Client) -> None:
    origin = "https://app.example"
    client = enforced(environ={"APP_CORS__ALLOW_ORIGINS": origin})
    refused = client.simulate_get("/api/v1/tasks", headers={"Origin": origin})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == origin
    assert refused.headers["x-content-type-options"] == "nosniff"
    # A preflight carries no token and is answered.
    preflight = client.simulate_options(
        "/api/v1/tasks", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == origin


def test_the_openapi_document_shows_what_each_operation_needs(enforced: Client) -> None:
    document = enforced().simulate_get("/api/openapi.json").json
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`tm_...`) from `taskman tokens create`; scopes: read, write, admin.",
    }
    paths = document["paths"]
    create, read = paths["/api/v1/tasks"]["post"], paths["/api/v1/tasks"]["get"]
    assert create["security"] == [{"bearerAuth": ["write"]}]
    assert read["security"] == [{"bearerAuth": ["read"]}]
    assert {"401", "403"} <= set(create["responses"])
    assert paths["/health/live"]["get"]["security"] == []
    assert "401" not in paths["/health/live"]["get"]["responses"]
    assert paths["/health/ready"]["get"]["security"] == [{}, {"bearerAuth": []}]
    assert "401" not in paths["/health/ready"]["get"]["responses"]  # a bad token counts as none there
    assert paths["/metrics"]["get"]["security"] == [{"bearerAuth": ["read"]}]


def test_the_openapi_document_shows_anonymous_access_where_allowed(make_client: Client) -> None:
    client = make_client(environ={"APP_AUTH__ALLOW_ANONYMOUS": "true", "APP_AUTH__ANONYMOUS_SCOPES": "read"})
    paths = client.simulate_get("/api/openapi.json").json["paths"]
    assert paths["/api/v1/tasks"]["get"]["security"] == [{}, {"bearerAuth": ["read"]}]
    assert paths["/api/v1/tasks"]["post"]["security"] == [{"bearerAuth": ["write"]}]
    disabled = make_client(environ={"APP_PLUGINS__DISABLE": "auth"}).simulate_get("/api/openapi.json").json
    assert "securitySchemes" not in disabled["components"]
    assert "security" not in disabled["paths"]["/api/v1/tasks"]["get"]


def test_a_database_outage_fails_only_the_routes_that_need_a_token(
    enforced: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peewee

    client = enforced()
    token = new_token("read", "outage")

    def unreachable(self: Any, presented: str, now: Any = None) -> Any:
        raise peewee.OperationalError("connection refused")

    monkeypatch.setattr(TokenStore, "verify", unreachable)
    # A probe that sends a token (a misconfigured checker, a person) still gets its answer.
    assert client.simulate_get("/health/ready", headers=bearer(token)).status_code == 200
    assert client.simulate_get("/health/live", headers=bearer(token)).status_code == 200
    refused = client.simulate_get("/api/v1/tasks", headers=bearer(token))
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.headers["content-type"] == "application/problem+json"
