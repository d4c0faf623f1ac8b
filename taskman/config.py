"""Settings: attrs classes filled from defaults < TOML file < ``APP_*`` environment.

The core owns the top-level keys and the ``database``, ``plugins`` and
``server`` sections; every plugin may own one more section through the
``taskman_settings`` hook.  Values are parsed by the type annotation of the
attrs field they land in, then checked by that field's validators, so an
error names the key, where the value came from and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union
from urllib.parse import parse_qsl, urlsplit

import attrs
from attrs import validators as v

ENV_PREFIX = "APP_"
ENV_NESTING = "__"
CONFIG_FILE_ENV = "APP_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "taskman.toml"
ROOT = ""  # the section name of the top-level keys

T = TypeVar("T")

Environment = Literal["development", "testing", "staging", "production"]


def setting(default: Any, help: str, validator: Any = None) -> Any:
    """One key of a settings section: its default, the help ``taskman config`` shows, its attrs validators."""
    return attrs.field(default=default, validator=validator, metadata={"help": help})


_field = setting

#: Where :func:`settings_section` records a settings class's section name.
SECTION_ATTRIBUTE = "__taskman_section__"


def settings_section(name: str) -> Callable[[type[T]], type[T]]:
    """Declare an attrs class as the config section ``[name]``; return it from ``taskman_settings``.

    The name is written once: ``runtime.settings(MySettings)`` finds the
    section by the class, and a class no plugin declared is an error.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"settings section name {name!r} must be lower_snake_case")

    def declare(cls: type[T]) -> type[T]:
        declared: type[T] = cls
        if not attrs.has(cls):
            raise TypeError(f"{cls.__name__} must be an attrs class to be a settings section")
        setattr(declared, SECTION_ATTRIBUTE, name)
        return declared

    return declare


def section_name(cls: type) -> str | None:
    """The section a settings class was declared for, if any."""
    name = cls.__dict__.get(SECTION_ATTRIBUTE)
    return name if isinstance(name, str) else None


class UnknownSettingsError(LookupError):
    """A settings lookup for a class that is not an enabled plugin's declared section."""


@attrs.frozen
class AppSettings:
    """Top-level keys (``APP_ENVIRONMENT``, ``APP_APP_NAME``, ``APP_DEBUG``)."""

    environment: Environment = _field(
        "development",
        "development, testing, staging or production; picks safe defaults",
        v.in_(typing.get_args(Environment)),
    )
    app_name: str = _field("taskman", "name reported in logs and problem types", v.min_len(1))
    debug: bool = _field(False, "show full tracebacks for start-up errors", v.instance_of(bool))


def database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the database URL (None when it can); never repeats the URL, which may hold a password.

    Checked with the settings, so ``taskman check`` and ``taskman config``
    report it, and no bad URL reaches the driver to fail with a traceback.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in ("sqlite", "postgres", "postgresql"):
        return "must start with sqlite:// (sqlite:///path/to.db) or postgresql:// (postgresql://user@host:port/name)"
    if scheme == "sqlite":
        return "a sqlite URL takes no query options (?...)" if "?" in url else None
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number from 0 to 65535
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if port == 0:
        return "has a port that is not a number from 1 to 65535"
    if parts.fragment:
        return "must not have a fragment (#...)"
    options = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in options]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return f"repeats the query option(s) {', '.join(repeated)}"
    unknown = [name for name in names if not _libpq_knows(name)]
    if unknown:
        return f"has unknown query option(s) {', '.join(map(repr, unknown))}; use libpq connection parameters"
    return None


def _libpq_knows(option: str) -> bool:
    """Whether libpq takes ``option`` as a connection parameter (its own parser decides; no connection is made)."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import make_conninfo
    except ImportError:  # pragma: no cover - without psycopg, connecting fails with the driver's own error
        return True
    try:
        make_conninfo("", **{option: "1"})
    except ProgrammingError:
        return False
    return True


def _database_url(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    problem = database_url_problem(value)
    if problem:
        raise ValueError(problem)


@attrs.frozen
class DatabaseSettings:
    """The ``[database]`` section."""

    url: str = _field(
        "sqlite:///taskman.db",
        "sqlite:///relative.db, sqlite:////abs.db or postgresql://user:pw@host/db",
        _database_url,
    )
    pool_size: int = _field(10, "connections kept open per process (1-100)", [v.ge(1), v.le(100)])
    max_overflow: int = _field(
        5, "extra connections allowed under load, closed when returned (0-50)", [v.ge(0), v.le(50)]
    )
    echo_sql: bool = _field(False, "log every SQL statement (never in production)", v.instance_of(bool))
    connect_timeout: float = _field(5.0, "seconds to wait for a new connection", [v.gt(0), v.le(300)])
    pool_timeout: float = _field(5.0, "seconds a request waits for a free pooled connection", [v.gt(0), v.le(300)])
    statement_timeout_ms: int = _field(30000, "PostgreSQL statement timeout, 0 for none", [v.ge(0), v.le(3_600_000)])
    busy_timeout_ms: int = _field(5000, "SQLite busy timeout", [v.ge(0), v.le(600_000)])
    retry_after: int = _field(
        5, "Retry-After seconds sent with 503 when the database is unavailable", [v.ge(1), v.le(3600)]
    )


@attrs.frozen
class PluginSettings:
    """The ``[plugins]`` section."""

    disable: tuple[str, ...] = _field((), "names of plugins to switch off")
    directory: str | None = _field(
        None, "a folder whose *.py files load as plugins, unpackaged (development; taskman serve --plugins-dir)"
    )


def _check_proxy_addresses(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    for entry in value:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry)
        except ValueError:
            raise ValueError(f"entries must be IP addresses, networks (10.0.0.0/8) or '*', got {entry!r}") from None


@attrs.frozen
class ServerSettings:
    """The ``[server]`` section, read by ``taskman serve``."""

    host: str = _field("127.0.0.1", "interface to bind", v.min_len(1))
    port: int = _field(8000, "TCP port", [v.ge(1), v.le(65535)])
    workers: int = _field(1, "worker processes", [v.ge(1), v.le(64)])
    flavour: Literal["asgi", "wsgi"] = _field("asgi", "asgi (uvicorn) or wsgi (gunicorn)", v.in_(("asgi", "wsgi")))
    graceful_timeout: int = _field(30, "seconds in-flight requests get after SIGTERM", [v.ge(1), v.le(600)])
    worker_class: Literal["gthread", "sync"] = _field(
        "gthread",
        "WSGI worker model: gthread (threads, keep-alive, idle connections wait off-thread) or sync",
        v.in_(("gthread", "sync")),
    )
    threads: int = _field(
        8, "threads per worker running sync code (gthread workers; the ASGI thread pool)", [v.ge(1), v.le(256)]
    )
    keepalive: int = _field(
        5, "seconds a connection may stay idle before its first request and between requests", [v.ge(1), v.le(300)]
    )
    send_timeout: float = _field(
        30.0, "seconds a client may take to receive a response before the WSGI worker drops it", [v.gt(0), v.le(3600)]
    )
    forwarded_allow_ips: tuple[str, ...] = _field(
        (),
        "proxies (addresses or networks) whose X-Forwarded-For and -Proto the servers trust; none by default",
        _check_proxy_addresses,
    )


CORE_SECTIONS: dict[str, type] = {
    ROOT: AppSettings,
    "database": DatabaseSettings,
    "plugins": PluginSettings,
    "server": ServerSettings,
}


@attrs.frozen
class Problem:
    """One bad setting.  The reason is redacted as the problem is made: whoever prints it (the one-line
    error, ``--debug``'s traceback, a log) never shows a URL's password or a secret-looking key's value."""

    key: str
    source: str
    reason: str

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "reason", redact_reason(self.key, self.reason))

    def __str__(self) -> str:
        return f"{self.key} (from {self.source}): {self.reason}"


class ConfigError(Exception):
    """Configuration that cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@attrs.frozen
class Config:
    """The effective configuration handed to every hook.

    Plugin sections are reachable as attributes (``config.hello.greeting``)
    or with :meth:`section`.
    """

    app: AppSettings
    database: DatabaseSettings
    plugins: PluginSettings
    server: ServerSettings
    sections: Mapping[str, Any] = attrs.field(factory=dict)
    sources: Mapping[str, str] = attrs.field(factory=dict)
    file: Path | None = None
    #: Raw, unvalidated values given for the sections of disabled plugins (``{section: {key: value}}``).
    disabled_sections: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    def disabled_flag(self, section: str, key: str) -> bool:
        """A boolean given for a disabled plugin's section (false when absent or not a boolean)."""
        value = self.disabled_sections.get(section, {}).get(key)
        try:
            return bool(coerce(value, bool, from_env=isinstance(value, str)))
        except ValueError:
            return False

    @property
    def environment(self) -> str:
        return self.app.environment

    @property
    def app_name(self) -> str:
        return self.app.app_name

    @property
    def debug(self) -> bool:
        return self.app.debug

    def section(self, name: str) -> Any:
        return self.sections[name]

    def settings(self, settings_class: type[T]) -> T:
        """The effective values of a declared settings section (see :func:`settings_section`)."""
        name = section_name(settings_class)
        if name is None:
            raise UnknownSettingsError(f"{settings_class.__name__} is not declared with taskman.settings_section")
        value = self.sections.get(name)
        if not isinstance(value, settings_class):
            raise UnknownSettingsError(
                f"no settings section [{name}] ({settings_class.__name__}) in this config: "
                "its plugin is disabled or not installed"
            )
        return value

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "sections")[name]
        except KeyError:
            raise AttributeError(name) from None

    def items(self) -> list[tuple[str, Any, str]]:
        """Every effective value as ``(dotted_key, value, source)``, secrets redacted."""
        rows = []
        all_sections: dict[str, Any] = {
            ROOT: self.app,
            "database": self.database,
            "plugins": self.plugins,
            "server": self.server,
            **self.sections,
        }
        for section, settings in all_sections.items():
            for field in attrs.fields(type(settings)):
                key = dotted(section, field.name)
                value = redact(field.name, getattr(settings, field.name))
                rows.append((key, value, self.sources.get(key, "default")))
        return rows


def plugin_settings(config: Any, section: str, settings_type: type[T]) -> T:
    """A plugin's settings section, or its defaults when ``config`` has none (the plugin was off when it was built)."""
    value = getattr(config, "sections", {}).get(section)
    return value if isinstance(value, settings_type) else settings_type()


def dotted(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def env_name(section: str, name: str) -> str:
    parts = [section, name] if section else [name]
    return ENV_PREFIX + ENV_NESTING.join(p.upper() for p in parts)


_SECRET_KEY = re.compile(r"(password|passwd|pwd|secret|token|api_?key|private_?key|credential)", re.I)
REDACTED = "***REDACTED***"
# scheme://user:PASSWORD@host: the password runs to the last "@" of the word, so one holding "/", "@" or
# a quote (not percent-encoded, as people do write them) is hidden whole; a word without "@" has none.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<password>\S+?)(?=@[^\s@]*(?:\s|$))"
)
# What a message shows of a value: a quoted string, or what follows "got ".
_SHOWN_VALUE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|(?<=got )\S+")


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)


def redact_reason(key: str, reason: str) -> str:
    """A config problem's reason, safe to print: URL passwords hidden; for a secret-looking key, every value shown."""
    reason = redact_text(reason)
    if _SECRET_KEY.search(key):
        reason = _SHOWN_VALUE.sub(REDACTED, reason)
    return reason


def redact(key: str, value: Any) -> Any:
    """Hide secrets: values of secret-looking keys and passwords inside URLs."""
    if _SECRET_KEY.search(key) and value:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


# -- parsing ----------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, *, from_env: bool) -> Any:
    """Turn ``value`` into ``tp``; strings from the environment are parsed, file values checked."""
    tp, optional = _strip_optional(tp)
    if optional and (value is None or (from_env and value == "")):
        return None
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (tuple, list, frozenset, set) or tp in (tuple, list):
        item_type = (typing.get_args(tp) or (str,))[0]
        if from_env and isinstance(value, str):
            items: list[Any] = [s.strip() for s in value.split(",") if s.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError(f"must be a list, got {value!r}")
        converted = [coerce(item, item_type, from_env=from_env) for item in items]
        return tuple(converted) if origin in (tuple, None) else (origin or list)(converted)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"must be a string, got {value!r}")
    return value  # a type we do not know how to parse: the field's validators decide


def _run_validators(field: attrs.Attribute, value: Any) -> None:  # type: ignore[type-arg]
    validator = field.validator
    if validator is None:
        return
    validator(None, field, value)


def _reason(exc: Exception) -> str:
    if len(exc.args) > 1:
        return str(exc.args[0])  # attrs validators put the message first, then context
    return str(exc)


# -- sources ----------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([Problem("config file", str(path), "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("config file", str(path), f"invalid TOML: {exc}")]) from None


def find_config_file(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    if path:
        return Path(path)
    if environ.get(CONFIG_FILE_ENV):
        return Path(environ[CONFIG_FILE_ENV])
    default = Path.cwd() / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def _known_sections(extra: Mapping[str, type]) -> dict[str, type]:
    sections = dict(CORE_SECTIONS)
    for name, cls in extra.items():
        if name in sections:
            raise ConfigError([Problem(f"[{name}]", "plugin settings", "section name already taken")])
        if not attrs.has(cls):
            raise ConfigError([Problem(f"[{name}]", "plugin settings", f"{cls!r} is not an attrs class")])
        sections[name] = cls
    return sections


def build_config(
    *,
    file: Path | None,
    file_data: Mapping[str, Any],
    environ: Mapping[str, str],
    sections: Mapping[str, type],
    overrides: Mapping[str, Any] | None = None,
    ignored: Iterable[str] = (),
) -> Config:
    """Merge the sources and validate every value against its section's attrs class."""
    known = _known_sections(sections)
    fields = {name: {f.name: f for f in attrs.fields(attrs.resolve_types(cls))} for name, cls in known.items()}
    # raw[section][key] = (value, source, from_env)
    raw: dict[str, dict[str, tuple[Any, str, bool]]] = {name: {} for name in known}
    problems: list[Problem] = []
    ignored = frozenset(ignored)  # sections of disabled plugins: accepted, unused (kept raw for safeguards)
    ignored_values: dict[str, dict[str, Any]] = {}

    def take(data: Mapping[str, Any], source: str) -> None:
        for key, value in data.items():
            if isinstance(value, Mapping):
                if key in ignored and key not in known:
                    ignored_values.setdefault(key, {}).update(value)
                    continue
                if key not in known or key == ROOT:
                    problems.append(Problem(f"[{key}]", source, "unknown section"))
                    continue
                for sub_key, sub_value in value.items():
                    if sub_key not in fields[key]:
                        problems.append(Problem(dotted(key, sub_key), source, "unknown key"))
                    else:
                        raw[key][sub_key] = (sub_value, source, False)
            elif key in fields[ROOT]:
                raw[ROOT][key] = (value, source, False)
            else:
                problems.append(Problem(key, source, "unknown key"))

    if file is not None:
        take(file_data, f"file {file}")
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_FILE_ENV:
            continue
        path = var[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        source = f"env {var}"
        if len(path) == 1 and path[0] in fields[ROOT]:
            raw[ROOT][path[0]] = (value, source, True)
        elif len(path) == 2 and path[0] in fields and path[0] != ROOT and path[1] in fields[path[0]]:
            raw[path[0]][path[1]] = (value, source, True)
        elif len(path) >= 2 and path[0] in ignored and path[0] not in known:
            ignored_values.setdefault(path[0], {})[ENV_NESTING.join(path[1:])] = value
        else:
            problems.append(Problem(var, "environment", "unknown setting"))
    if overrides:
        take(overrides, "override")

    built: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, cls in known.items():
        values: dict[str, Any] = {}
        for name, (value, source, from_env) in raw[section].items():
            field = fields[section][name]
            key = dotted(section, name)
            try:
                parsed = coerce(value, field.type, from_env=from_env)
                _run_validators(field, parsed)
            except (TypeError, ValueError) as exc:
                problems.append(Problem(key, source, _reason(exc)))
                continue
            values[name] = parsed
            sources[key] = source
        try:
            built[section] = cls(**values)
        except (TypeError, ValueError) as exc:
            where = ", ".join(sorted({sources[dotted(section, n)] for n in values})) or "defaults"
            problems.append(Problem(f"[{section or 'root'}]", where, _reason(exc)))
    if problems:
        raise ConfigError(problems)
    return Config(
        app=built.pop(ROOT),
        database=built.pop("database"),
        plugins=built.pop("plugins"),
        server=built.pop("server"),
        sections=built,
        sources=sources,
        file=file,
        disabled_sections=ignored_values,
    )


def _plugins_key(
    key: str,
    tp: Any,
    file: Path | None,
    data: Mapping[str, Any],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
) -> tuple[Any, str]:
    """Read a ``[plugins]`` key before anything else: it decides which plugins get imported."""
    candidates: list[tuple[Any, str, bool]] = []
    section = data.get("plugins")
    if isinstance(section, Mapping) and key in section:
        candidates.append((section[key], f"file {file}", False))
    var = env_name("plugins", key)
    if var in environ:
        candidates.append((environ[var], f"env {var}", True))
    section = (overrides or {}).get("plugins")
    if isinstance(section, Mapping) and key in section:
        candidates.append((section[key], "override", False))
    if not candidates:
        return None, "default"
    value, source, from_env = candidates[-1]
    try:
        return coerce(value, tp, from_env=from_env), source
    except ValueError as exc:
        raise ConfigError([Problem(f"plugins.{key}", source, str(exc))]) from None


def plugin_selection(
    file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[tuple[str, ...], str | None]:
    """``(plugins.disable, plugins.directory)`` alone: what a listing needs when a plugin cannot load."""
    environ = os.environ if environ is None else environ
    path = find_config_file(file, environ)
    data = read_toml(path) if path is not None else {}
    disable, _ = _plugins_key("disable", tuple[str, ...], path, data, environ, None)
    folder, _ = _plugins_key("directory", str | None, path, data, environ, None)
    return disable or (), folder


def load_config(
    file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    extra_plugins: Iterable[object] = (),
    sections: Mapping[str, type] | None = None,
) -> Config:
    """Load the effective configuration.

    ``file`` defaults to ``$APP_CONFIG_FILE`` or ``./taskman.toml`` when it
    exists; ``environ`` to ``os.environ``.  The settings sections are those
    of the enabled plugins (``extra_plugins`` included) unless ``sections``
    is given; the sections of disabled plugins are ignored.  ``overrides`` is
    a nested mapping applied last, handy in tests.
    """
    from taskman.plugins import Plugins, UnknownPluginError

    environ = os.environ if environ is None else environ
    path = find_config_file(file, environ)
    data = read_toml(path) if path is not None else {}
    disable, disable_source = _plugins_key("disable", tuple[str, ...], path, data, environ, overrides)
    disable = disable or ()
    folder, folder_source = _plugins_key("directory", str | None, path, data, environ, overrides)
    if folder and not Path(folder).is_dir():
        raise ConfigError([Problem("plugins.directory", folder_source, f"no such folder: {folder}")])
    if sections is None:
        try:
            sections = Plugins.discover(disable, extra_plugins, folder).settings()
        except UnknownPluginError as exc:
            raise ConfigError([Problem("plugins.disable", disable_source, str(exc))]) from None
    return build_config(
        file=path, file_data=data, environ=environ, sections=sections, overrides=overrides, ignored=disable
    )
