"""Configuration: defaults < TOML file < APP_* environment, typed and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskman.config import ConfigError, load_config
from tests.sample_plugins import SettingsPlugin


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
        ("APP_DATABASE__URL", "mysql://x", "must match"),
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
