"""Configuration: defaults < TOML file < APP_* environment, typed and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskman.config import ConfigError, Problem, load_config, redact
from tests.sample_plugins import GreetingSettings, SettingsPlugin


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[tuple[str, str]]:
    return [(p.key, p.source) for p in exc.value.problems]


def test_defaults() -> None:
    config = load_config(environ={}, sections={})
    assert config.environment == "development"
    assert config.database.url == "sqlite:///taskman.db"
    assert config.database.pool_size == 10
    assert config.database.max_overflow == 5
    assert config.database.echo_sql is False
    assert config.plugins.disable == ()
    assert config.sources == {}


def test_seed_environment_variables_are_parsed_by_type() -> None:
    config = load_config(
        environ={
            "APP_DATABASE__POOL_SIZE": "20",
            "APP_DATABASE__ECHO_SQL": "false",
            "APP_DATABASE__MAX_OVERFLOW": "5",
            "APP_ENVIRONMENT": "production",
            "APP_PLUGINS__DISABLE": "request_id, other ,",
            "APP_DATABASE__CONNECT_TIMEOUT": "2.5",
        },
        sections={},
    )
    assert config.database.pool_size == 20
    assert config.database.echo_sql is False
    assert config.database.max_overflow == 5
    assert config.environment == "production"
    assert config.plugins.disable == ("request_id", "other")
    assert config.database.connect_timeout == 2.5
    assert config.sources["database.pool_size"] == "env APP_DATABASE__POOL_SIZE"


@pytest.mark.parametrize("text,expected", [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)])
def test_boolean_spellings(text: str, expected: bool) -> None:
    assert load_config(environ={"APP_DATABASE__ECHO_SQL": text}, sections={}).database.echo_sql is expected


def test_file_is_read_and_env_wins(tmp_path: Path) -> None:
    file = tmp_path / "custom.toml"
    file.write_text('environment = "staging"\n[database]\npool_size = 30\nmax_overflow = 7\n')
    config = load_config(file, environ={"APP_DATABASE__POOL_SIZE": "40"}, sections={})
    assert config.environment == "staging"
    assert config.database.pool_size == 40
    assert config.database.max_overflow == 7
    assert config.sources["database.max_overflow"] == f"file {file}"
    assert config.sources["database.pool_size"] == "env APP_DATABASE__POOL_SIZE"


def test_taskman_toml_in_working_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "taskman.toml").write_text("[server]\nport = 9000\n")
    assert load_config(environ={}, sections={}).server.port == 9000


def test_config_file_from_environment(tmp_path: Path) -> None:
    file = tmp_path / "elsewhere.toml"
    file.write_text("[server]\nworkers = 3\n")
    config = load_config(environ={"APP_CONFIG_FILE": str(file)}, sections={})
    assert config.server.workers == 3
    assert config.file == file


@pytest.mark.parametrize(
    "var,value,reason",
    [
        ("APP_DATABASE__POOL_SIZE", "0", ">= 1"),
        ("APP_DATABASE__POOL_SIZE", "101", "<= 100"),
        ("APP_DATABASE__POOL_SIZE", "ten", "must be an integer"),
        ("APP_DATABASE__MAX_OVERFLOW", "51", "<= 50"),
        ("APP_DATABASE__MAX_OVERFLOW", "-1", ">= 0"),
        ("APP_DATABASE__ECHO_SQL", "maybe", "must be a boolean"),
        ("APP_ENVIRONMENT", "prod", "must be one of development, testing, staging, production"),
        ("APP_DATABASE__URL", "mysql://x", "must start with sqlite:// "),
        ("APP_SERVER__PORT", "70000", "<= 65535"),
    ],
)
def test_bad_environment_values_name_key_source_and_reason(var: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(environ={var: value}, sections={})
    (problem,) = exc.value.problems
    assert problem.source == f"env {var}"
    assert reason in problem.reason
    assert problem.key.replace(".", "__").upper() in var


def test_bad_file_values_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('[database]\npool_size = "20"\necho_sql = "no"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(file, environ={}, sections={})
    assert problems(exc) == [("database.pool_size", f"file {file}"), ("database.echo_sql", f"file {file}")]


def test_unknown_keys_and_sections_fail(tmp_path: Path) -> None:
    file = tmp_path / "typo.toml"
    file.write_text("enviroment = 'production'\n[databse]\nurl = 'x'\n[database]\npool = 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(file, environ={"APP_DATABASE__POOLSIZE": "3", "APP_NOPE": "1"}, sections={})
    found = problems(exc)
    assert ("enviroment", f"file {file}") in found
    assert ("[databse]", f"file {file}") in found
    assert ("database.pool", f"file {file}") in found
    assert ("APP_DATABASE__POOLSIZE", "environment") in found
    assert ("APP_NOPE", "environment") in found


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[database\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(broken, environ={}, sections={})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", environ={}, sections={})


def test_plugin_owns_a_validated_section(tmp_path: Path) -> None:
    file = tmp_path / "plugin.toml"
    file.write_text("[greeter]\ngreeting = 'hi'\n")
    config = load_config(
        file, environ={"APP_GREETER__REPEAT": "3", "APP_GREETER__LOUD": "true"}, extra_plugins=[SettingsPlugin()]
    )
    assert config.greeter.greeting == "hi"
    assert config.section("greeter").repeat == 3
    assert config.greeter.loud is True
    with pytest.raises(ConfigError) as exc:
        load_config(environ={"APP_GREETER__REPEAT": "9"}, extra_plugins=[SettingsPlugin()])
    assert problems(exc) == [("greeter.repeat", "env APP_GREETER__REPEAT")]


def test_section_of_a_disabled_plugin_is_ignored() -> None:
    config = load_config(
        environ={"APP_PLUGINS__DISABLE": "greeter", "APP_GREETER__REPEAT": "9"},
        overrides={"greeter": {"greeting": "x"}},
        extra_plugins=[SettingsPlugin()],
    )
    assert "greeter" not in config.sections


def test_unknown_plugin_name_in_disable_fails() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(environ={"APP_PLUGINS__DISABLE": "request_idd"})
    (problem,) = exc.value.problems
    assert (problem.key, problem.source) == ("plugins.disable", "env APP_PLUGINS__DISABLE")
    assert "request_idd" in problem.reason


def test_secrets_are_redacted_in_the_listing() -> None:
    config = load_config(environ={"APP_DATABASE__URL": "postgresql://app:s3cret@db:5432/tm"}, sections={})
    rows = {key: (value, source) for key, value, source in config.items()}
    assert rows["database.url"] == ("postgresql://app:***REDACTED***@db:5432/tm", "env APP_DATABASE__URL")
    assert "s3cret" not in repr(config.items())
    assert config.database.url.endswith("s3cret@db:5432/tm")  # the real value is intact


@pytest.mark.parametrize(
    "url,reason",
    [
        ("mysql://u:S3cret@h/db", "must start with sqlite://"),
        ("postgresql://u:S3cret@h:99999/db", "port that is not a number from 1 to 65535"),
        ("postgresql://u:S3cret@h:0/db", "port that is not a number from 1 to 65535"),
        ("postgresql://u:S3cret@h:http/db", "port that is not a number from 1 to 65535"),
        ("postgresql://u:S3cret@h/db?foo=bar", "unknown query option(s) 'foo'"),
        ("postgresql://u:S3cret@h/db?sslmode=require&sslmode=disable", "repeats the query option(s) sslmode"),
        ("postgresql://u:S3cret@h/db#frag", "fragment"),
        ("sqlite:///taskman.db?mode=ro", "takes no query options"),
    ],
)
def test_bad_database_urls_are_config_errors_that_never_show_the_password(url: str, reason: str) -> None:
    """Caught with the settings (so `taskman check` and `config` report them), not as the driver's traceback."""
    with pytest.raises(ConfigError) as exc:
        load_config(environ={"APP_DATABASE__URL": url}, sections={})
    (problem,) = exc.value.problems
    assert problem.key == "database.url" and reason in problem.reason
    assert "S3cret" not in str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///taskman.db",
        "sqlite:////abs/path.db",
        "postgresql://u:pw@h:5432/db?sslmode=require&application_name=tm&connect_timeout=3",
        "postgres://h/db",
        "postgresql:///db",
    ],
)
def test_good_database_urls_pass(url: str) -> None:
    assert load_config(environ={"APP_DATABASE__URL": url}, sections={}).database.url == url


@pytest.mark.parametrize(
    "key,reason,hidden",
    [
        ("database.url", "'mysql://u:S3cret@h/db' doesn't match", "S3cret"),
        ("ratelimit.storage_url", "must be a URL, got 'redis://:S3cret@h:99999/0'", "S3cret"),
        ("x.url", "bad: postgresql://u:pa/ss@w@rd@h/db and more", "pa/ss@w@rd"),
        ("auth.api_key", "must be a string, got 12345678", "12345678"),
        ("hello.password", "'password' must be in ('a', 'b'): 'hunter2'", "hunter2"),
        ("vault.client_secret", 'must match, got "s e c r e t"', "s e c r e t"),
    ],
)
def test_problems_redact_secrets_where_they_are_made(key: str, reason: str, hidden: str) -> None:
    problem = Problem(key, "env X", reason)
    assert hidden not in problem.reason and hidden not in str(problem)
    assert "***REDACTED***" in problem.reason
    assert hidden not in str(ConfigError([problem]))


def test_a_plugin_section_with_a_secret_in_a_bad_value_is_redacted(tmp_path: Path) -> None:
    file = tmp_path / "taskman.toml"
    file.write_text('[greeter]\ngreeting = "postgresql://me:S3cret@db/x"\nrepeat = "s3cret-token"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(file, environ={}, sections={"greeter": GreetingSettings})
    assert "S3cret" not in str(exc.value) and "greeter.repeat" in str(exc.value)


def test_the_listing_redacts_any_url_password_even_in_a_malformed_url() -> None:
    assert redact("storage_url", "redis://:pw@h:6379/0") == "redis://:***REDACTED***@h:6379/0"
    assert redact("database.url", "postgresql://u:p/w@h/db") == "postgresql://u:***REDACTED***@h/db"
    assert redact("notes", "see https://example.com/a:b") == "see https://example.com/a:b"
    assert redact("api_token", "abc") == "***REDACTED***"


def test_plugin_settings_gives_the_section_or_its_defaults() -> None:
    import attrs

    from taskman.config import plugin_settings

    @attrs.frozen
    class Greeter:
        greeting: str = "hello"

    class Plain:
        pass

    assert plugin_settings(Plain(), "greeter", Greeter) == Greeter()
    config = load_config(environ={}, sections={})
    assert plugin_settings(config, "greeter", Greeter) == Greeter()
    given = attrs.evolve(config, sections={"greeter": Greeter("hi")})
    assert plugin_settings(given, "greeter", Greeter).greeting == "hi"
