"""The redaction plugin: no secret reaches a rendered log line, innocent values stay readable."""

from __future__ import annotations

import io
import string
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from taskman_plugins.logging.pipeline import configure_logging
from taskman_plugins.redaction import REDACTED, RedactionSettings, Redactor
from taskman_plugins.redaction.redactor import key_segments

from taskman.config import ConfigError, load_config
from tests.logcapture import Lines, LogProbe, events, json_lines

Client = Callable[..., falcon.testing.TestClient]

pytestmark = pytest.mark.usefixtures("fresh_logging")


def render(fields: dict[str, Any], redactor: Redactor | None = None) -> str:
    """One line through the real pipeline and JSON renderer, as the logging plugin sets it up."""
    out = io.StringIO()
    configure_logging(
        format="json",
        static={"app_name": "taskman", "environment": "production"},
        processors=[redactor or Redactor()],
        stream=out,
    )
    structlog.get_logger("test").info("event_under_test", **fields)
    return out.getvalue()


# -- keys ----------------------------------------------------------------------------


SENSITIVE = [
    "password",
    "PASSWORD",
    "passwd",
    "pwd",
    "db_password",
    "dbPassword",
    "secret",
    "client_secret",
    "clientSecret",
    "token",
    "access_token",
    "refreshToken",
    "tokens",
    "api_key",
    "apiKey",
    "ApiKey",
    "APIKey",
    "API-KEY",
    "API_KEY",
    "apikey",
    "api_keys",
    "auth",
    "Authorization",
    "HTTP_AUTHORIZATION",
    "proxy-authorization",
    "X-Auth-Token",
    "x_auth_token",
    "credential",
    "credentials",
    "awsCredentials",
    "private_key",
    "privateKey",
    "PRIVATE-KEY",
    "privatekey",
    "access_key",
    "accessKey",
    "AWS_ACCESS_KEY_ID",
    "Cookie",
    "Set-Cookie",
]

INNOCENT = [
    "author",
    "Author",
    "authored_by",
    "authoredBy",
    "tokenizer",
    "tokenizerName",
    "secretary",
    "passage",
    "keyboard",
    "monkey",
    "key_count",  # "key" alone is not a term: api_key, private_key and access_key are
    "page",
    "user",
    "path",
]


@pytest.mark.parametrize("key", SENSITIVE)
def test_sensitive_keys_in_any_spelling(key: str) -> None:
    assert Redactor().is_sensitive(key)


@pytest.mark.parametrize("key", INNOCENT)
def test_innocent_keys_that_merely_contain_a_fragment(key: str) -> None:
    assert not Redactor().is_sensitive(key)


def test_keys_split_on_separators_and_camel_case() -> None:
    assert key_segments("X-Auth-Token") == ("x", "auth", "token")
    assert key_segments("APIKey") == ("api", "key")
    assert key_segments("accessKey") == ("access", "key")
    assert key_segments("HTTP_AUTHORIZATION") == ("http", "authorization")
    assert key_segments("password2") == ("password", "2")


TERMS = [
    ("password",),
    ("passwd",),
    ("pwd",),
    ("secret",),
    ("token",),
    ("api", "key"),
    ("apikey",),
    ("auth",),
    ("authorization",),
    ("credential",),
    ("private", "key"),
    ("access", "key"),
]
WORDS = ["db", "x", "user", "client", "http", "new", "old", "id", "value", "hash", "2"]


def _spell(words: list[str], style: str) -> str:
    if style == "snake":
        return "_".join(words)
    if style == "kebab":
        return "-".join(words)
    if style == "upper":
        return "_".join(w.upper() for w in words)
    if style == "header":
        return "-".join(w.capitalize() for w in words)
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    return "".join(w.capitalize() for w in words)  # pascal


@st.composite
def sensitive_keys(draw: st.DrawFn) -> str:
    """A sensitive term, maybe between other words, in one of the usual spellings."""
    term = list(draw(st.sampled_from(TERMS)))
    before = draw(st.lists(st.sampled_from(WORDS), max_size=2))
    after = draw(st.lists(st.sampled_from(WORDS), max_size=2))
    style = draw(st.sampled_from(["snake", "kebab", "upper", "header", "camel", "pascal"]))
    return _spell([*before, *term, *after], style)


@given(sensitive_keys())
def test_every_spelling_of_a_sensitive_term_is_sensitive(key: str) -> None:
    assert Redactor().is_sensitive(key), key


# -- values: the property ----------------------------------------------------------------

SECRET_ALPHABET = string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_`{|}~ "
secrets = st.text(alphabet=SECRET_ALPHABET, min_size=4, max_size=24).map(lambda s: f"S3CR3T{s}")
innocent_keys = st.sampled_from(INNOCENT)
innocent_values = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12).map(
    lambda s: f"visible{s}"
)


@st.composite
def buried_secret(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """Fields with one secret under a sensitive key at a random depth, among innocent siblings."""
    secret = draw(secrets)
    visible = draw(innocent_values)
    value: Any = draw(
        st.sampled_from([secret, [secret], (1, secret), {"inner": secret}, {"deeper": [{"x": secret}]}, {secret}])
    )
    node: Any = {draw(sensitive_keys()): value, draw(innocent_keys): visible}
    for kind in draw(st.lists(st.sampled_from(["dict", "list", "tuple"]), max_size=8)):
        if kind == "dict":
            node = {draw(innocent_keys): node, "n": 1}
        elif kind == "list":
            node = [draw(st.integers(-5, 5)), node]
        else:
            node = ("x", node, None)
    fields = node if isinstance(node, dict) else {"payload": node}
    return fields, secret, visible


@settings(max_examples=200, deadline=None)
@given(buried_secret())
def test_no_value_under_a_sensitive_key_is_ever_rendered(case: tuple[dict[str, Any], str, str]) -> None:
    fields, secret, visible = case
    rendered = render(fields)
    (line,) = json_lines(rendered)
    assert secret not in rendered
    assert REDACTED in rendered
    assert visible in rendered, "innocent keys stay readable"
    assert line["event"] == "event_under_test"


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(innocent_keys, innocent_values, min_size=1, max_size=6))
def test_innocent_values_are_rendered_as_logged(fields: dict[str, str]) -> None:
    (line,) = json_lines(render(fields))
    assert {key: line[key] for key in fields} == fields


def test_the_logged_objects_are_not_modified() -> None:
    headers = {"Authorization": "Bearer abc", "Accept": "text/plain"}
    nested = {"items": [{"password": "pw"}], "pair": ("token", {"apiKey": "k"})}
    render({"headers": headers, "nested": nested})
    assert headers == {"Authorization": "Bearer abc", "Accept": "text/plain"}
    assert nested == {"items": [{"password": "pw"}], "pair": ("token", {"apiKey": "k"})}


def test_every_kind_of_value_under_a_sensitive_key_is_replaced_but_none() -> None:
    redactor = Redactor()
    data = {"token": 12345, "secret": {"a": 1}, "password": None, "pwd": ["x"], "auth": True}
    assert redactor.redact(data) == {
        "token": REDACTED,
        "secret": REDACTED,
        "password": None,
        "pwd": REDACTED,
        "auth": REDACTED,
    }


def test_very_deep_or_cyclic_values_are_cut_off() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    deep: Any = "postgresql://u:pw@h/db"
    for _ in range(100):
        deep = [deep]
    rendered = render({"cyclic": cyclic, "deep": deep})
    assert "pw@" not in rendered and REDACTED in rendered


# -- secrets inside strings -------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("postgresql://user:secret@db.internal:5432/app", "postgresql://user:***REDACTED***@db.internal:5432/app"),
        ("redis://:pw@cache/0", "redis://:***REDACTED***@cache/0"),
        ("https://u:p@ss@host/x", "https://u:***REDACTED***@host/x"),
        ("https://example.com/a?email=a@b.c", "https://example.com/a?email=a@b.c"),
        ("/tasks?token=abc123&page=2", "/tasks?token=***REDACTED***&page=2"),
        ("/search?q=x&api_key=k1&author=ada", "/search?q=x&api_key=***REDACTED***&author=ada"),
        ("next=/login?access_token=t1", "next=/login?access_token=***REDACTED***"),
        ("Authorization: Bearer eyJhbGciOi.x.y\nAccept: */*", "Authorization: ***REDACTED***\nAccept: */*"),
        ("Cookie: session=abc; theme=dark", "Cookie: ***REDACTED***"),
        ("set-cookie: sid=1; HttpOnly", "set-cookie: ***REDACTED***"),
        ("retrying with Bearer abc.def-ghi==", "retrying with Bearer ***REDACTED***"),
        ("RuntimeError: password=hunter2 at /srv", "RuntimeError: password=***REDACTED*** at /srv"),
        ('{"password": "p\\"w", "user": "bob"}', '{"password": "***REDACTED***", "user": "bob"}'),
        ("Settings(secret='a b', name='x')", "Settings(secret='***REDACTED***', name='x')"),
        ("db=postgresql://app:pw@db/app", "db=postgresql://app:***REDACTED***@db/app"),
        ("author=ada&tokenizer=bpe&page=2", "author=ada&tokenizer=bpe&page=2"),
        ("nothing to hide here: 12:30", "nothing to hide here: 12:30"),
    ],
)
def test_secrets_inside_strings_are_masked(text: str, expected: str) -> None:
    assert Redactor().scrub(text) == expected


def test_strings_are_scrubbed_at_any_depth() -> None:
    redacted = Redactor().redact({"calls": [("GET", "/x?token=t&page=1"), {"dsn": "postgresql://a:b@h/d"}]})
    assert redacted == {
        "calls": [("GET", "/x?token=***REDACTED***&page=1"), {"dsn": "postgresql://a:***REDACTED***@h/d"}]
    }


# -- configuration -----------------------------------------------------------------------


def test_extra_keys_come_from_the_environment() -> None:
    config = load_config(environ={"APP_REDACTION__EXTRA_KEYS": "ssn, card_number"})
    assert config.redaction == RedactionSettings(extra_keys=("ssn", "card_number"))
    redactor = Redactor(config.redaction.extra_keys)
    assert redactor.is_sensitive("SSN") and redactor.is_sensitive("cardNumber") and redactor.is_sensitive("cardnumber")
    assert not Redactor().is_sensitive("ssn")


def test_an_extra_key_without_letters_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"redaction\.extra_keys \(from env APP_REDACTION__EXTRA_KEYS\)"):
        load_config(environ={"APP_REDACTION__EXTRA_KEYS": "ssn,--"})


def test_redactors_with_the_same_terms_are_equal() -> None:
    assert Redactor(["ssn"]) == Redactor(["ssn"]) != Redactor()
    assert hash(Redactor(["ssn"])) == hash(Redactor(["ssn"]))


# -- in the app, both flavours --------------------------------------------------------------


def test_secrets_logged_while_serving_are_masked(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),))
    logs()
    client.simulate_get("/secrets", query_string="token=qs-secret&page=2", headers={"X-Request-ID": "rid-s"})
    client.simulate_get("/failing", headers={"X-Request-ID": "rid-f"})
    lines = logs()
    text = repr(lines)
    for secret in ("hunter2", "abc.def.ghi", "qs-secret", "s3cr3t-pw", "k-123456789"):
        assert secret not in text, secret
    (logged,) = events(lines, "secrets_logged")
    assert logged["password"] == REDACTED
    assert logged["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert logged["url"].endswith("?token=***REDACTED***&page=2")
    assert logged["author"] == "Ada Lovelace"
    (dsn,) = events(lines, "dsn postgresql://app:***REDACTED***@db/app")
    assert dsn["api_key"] == REDACTED and dsn["request_id"] == "rid-s"
    (failed,) = events(lines, "request_failed")
    assert "password=***REDACTED*** while failing" in failed["exception"]


def test_extra_keys_apply_to_the_app(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_REDACTION__EXTRA_KEYS": "author"})
    logs()
    client.simulate_get("/secrets")
    (logged,) = events(logs(), "secrets_logged")
    assert logged["author"] == REDACTED


def test_disabling_redaction_removes_exactly_that(make_client: Client, logs: Lines) -> None:
    client = make_client(plugins=(LogProbe(),), environ={"APP_PLUGINS__DISABLE": "redaction"})
    logs()
    result = client.simulate_get("/secrets", query_string="token=qs-secret", headers={"X-Request-ID": "rid-plain"})
    assert result.status_code == 200 and result.headers["x-request-id"] == "rid-plain"
    lines = logs()
    (logged,) = events(lines, "secrets_logged")
    assert logged["password"] == "hunter2-value"
    assert logged["headers"]["Authorization"] == "Bearer abc.def.ghi"
    assert logged["url"].endswith("?token=qs-secret")
    assert events(lines, "dsn postgresql://app:s3cr3t-pw@db/app")
    (access,) = events(lines, "request_completed")
    assert access["request_id"] == "rid-plain" and access["status_code"] == 200


def test_clean_texts_are_remembered_and_texts_with_secrets_never() -> None:
    redactor = Redactor()
    clean = {"event": "request_completed", "path": "/tasks/42", "user_agent": "curl/8.5"}
    dirty = {"event": "x", "url": "https://app:pw@db/app?token=t0k3n"}
    for _ in range(2):  # the second pass answers clean texts from memory: same result
        assert redactor(None, "info", dict(clean)) == clean
        assert redactor(None, "info", dict(dirty))["url"] == "https://app:***REDACTED***@db/app?token=***REDACTED***"
    assert "/tasks/42" in redactor._clean and not any("pw" in text for text in redactor._clean)


def test_the_memory_of_clean_texts_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskman_plugins.redaction import redactor as module

    monkeypatch.setattr(module, "_CLEAN_LIMIT", 3)
    redactor = Redactor()
    for n in range(10):
        redactor(None, "info", {"path": f"/tasks/{n}"})
        assert len(redactor._clean) <= 3
    redactor(None, "info", {"path": "x" * (module._CLEAN_MAX_LENGTH + 1)})
    assert "x" * (module._CLEAN_MAX_LENGTH + 1) not in redactor._clean
