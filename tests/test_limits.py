"""The limits plugin: body size (413), request target (414) and header (431) limits, and the time limit (503)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import attrs
import falcon
import falcon.asgi.stream
import falcon.testing
import pytest
from taskman_plugins import limits
from taskman_plugins.limits import (
    BodyTooLarge,
    LimitedInput,
    LimitedReceive,
    LimitsSettings,
    ResponderTimeout,
    Watchdog,
    parse_content_length,
    time_limit,
    watchdog,
)
from taskman_plugins.limits.sizes import (
    READ_BLOCK,
    asgi_target_length,
    header_bytes,
    wsgi_header_bytes,
    wsgi_target_length,
)
from taskman_plugins.limits.watchdog import interrupt

from taskman import hookimpl
from taskman.config import ConfigError
from taskman.db import database, release_connection
from taskman.errors import PROBLEM_CONTENT_TYPE

Client = Callable[..., falcon.testing.TestClient]

MiB = 1_048_576

#: Seconds a test responder keeps looping when nothing stops it: far above every time limit the tests set.
UNSTOPPED = 10.0


def busy_for(seconds: float) -> str:
    """Run Python bytecode (no C call that blocks) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "finished"


def sleep_in_steps(seconds: float) -> str:
    """Sleep in 10 ms steps: an asynchronous exception lands between two steps."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    return "finished"


# -- the plain size checks -------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [(None, None), ("", None), ("0", 0), ("42", 42), (" 7 ", 7)])
def test_content_length_is_parsed(value: str | None, expected: int | None) -> None:
    assert parse_content_length(value) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "+5", "1_000", "5, 5", "1.5", "٣", "0x10", "9" * 5000])
def test_a_malformed_content_length_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_content_length(value)


@pytest.mark.parametrize(
    "environ,expected",
    [
        ({"RAW_URI": "/a%20b?x=1", "PATH_INFO": "/a b", "QUERY_STRING": "x=1"}, len("/a%20b?x=1")),
        ({"RAW_URI": "/a%20b", "PATH_INFO": "/a b", "QUERY_STRING": "x=1"}, len("/a%20b?x=1")),
        ({"REQUEST_URI": "/abc", "PATH_INFO": "/abc", "QUERY_STRING": ""}, 4),
        ({"SCRIPT_NAME": "/app", "PATH_INFO": "/abc", "QUERY_STRING": "q=2"}, len("/app/abc?q=2")),
        ({"PATH_INFO": "/abc"}, 4),
    ],
)
def test_the_wsgi_request_target_is_measured_as_sent(environ: dict[str, str], expected: int) -> None:
    assert wsgi_target_length(environ) == expected


def test_the_asgi_request_target_is_measured_as_sent() -> None:
    assert asgi_target_length({"raw_path": b"/a%20b", "path": "/a b", "query_string": b"x=1"}) == len("/a%20b?x=1")
    assert asgi_target_length({"path": "/é", "query_string": b""}) == len("/é".encode())


def test_header_bytes_count_names_and_values_as_the_app_sees_them() -> None:
    environ = {
        "HTTP_X_REQUEST_ID": "abc",
        "HTTP_HOST": "h",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "12",
        "PATH_INFO": "/not-a-header",
    }
    expected = len("X-Request-ID") + 3 + len("Host") + 1 + len("Content-Type") + 10 + len("Content-Length") + 2
    assert wsgi_header_bytes(environ) == expected
    assert header_bytes({b"x-request-id": b"abc", b"host": b"h"}) == len("x-request-id") + 3 + 4 + 1
    assert header_bytes({"x-request-id": "abc"}) == len("x-request-id") + 3


class CountingReader(io.BytesIO):
    """A request body that counts the bytes pulled from it."""

    pulled = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.pulled += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.pulled += len(data)
        return data


def test_limited_input_passes_a_body_within_the_limit() -> None:
    body = b"line one\nline two\n" + b"x" * 982
    assert LimitedInput(CountingReader(body), len(body)).read() == body
    assert LimitedInput(CountingReader(body), len(body)).read(5) == b"line "
    assert list(LimitedInput(CountingReader(body), len(body)))[:2] == [b"line one\n", b"line two\n"]
    assert LimitedInput(CountingReader(body), len(body)).readlines(1) == [b"line one\n"]


@pytest.mark.parametrize(
    "read",
    [
        lambda stream: stream.read(),
        lambda stream: stream.read(None),
        lambda stream: [stream.read(300) for _ in range(10)],
        lambda stream: list(stream),
        lambda stream: stream.readlines(),
    ],
    ids=["read", "read-none", "read-size", "iterate", "readlines"],
)
def test_limited_input_stops_one_byte_past_the_limit(read: Callable[[LimitedInput], Any]) -> None:
    source = CountingReader(b"y" * (5 * READ_BLOCK))
    stream = LimitedInput(source, 1000)
    with pytest.raises(BodyTooLarge) as exc:
        read(stream)
    assert exc.value.limit == 1000
    assert source.pulled == 1001
    with pytest.raises(BodyTooLarge):  # and it stays refused
        stream.read(10)
    assert source.pulled == 1001


def test_limited_input_raises_what_the_caller_asks_for() -> None:
    stream = LimitedInput(io.BytesIO(b"z" * 20), 10, lambda limit: falcon.HTTPContentTooLarge())
    with pytest.raises(falcon.HTTPContentTooLarge):
        stream.read()


class Events:
    """An ASGI receive callable that hands out body events and counts the bytes it gave."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.events = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
        ]
        self.pulled = 0

    async def __call__(self) -> dict[str, Any]:
        if not self.events:
            return {"type": "http.disconnect"}
        event = self.events.pop(0)
        self.pulled += len(event["body"])
        return event


def test_limited_receive_passes_a_body_within_the_limit() -> None:
    events = Events([b"a" * 400, b"b" * 400, b"c" * 200])
    stream = falcon.asgi.stream.BoundedStream(LimitedReceive(events, 1000))
    assert asyncio.run(stream.readall()) == b"a" * 400 + b"b" * 400 + b"c" * 200


@pytest.mark.parametrize("read", ["readall", "read", "iterate"])
def test_limited_receive_stops_at_the_event_past_the_limit(read: str) -> None:
    events = Events([b"x" * 400] * 100)
    stream = falcon.asgi.stream.BoundedStream(LimitedReceive(events, 1000))

    async def consume() -> None:
        if read == "readall":
            await stream.readall()
        elif read == "read":
            await stream.read()
        else:
            async for _ in stream:
                pass

    with pytest.raises(BodyTooLarge):
        asyncio.run(consume())
    assert events.pulled == 1200  # three events of 400: the third crosses the limit


def test_limited_receive_counts_what_came_before_it() -> None:
    events = Events([b"x" * 300])
    with pytest.raises(BodyTooLarge):
        asyncio.run(LimitedReceive(events, 1000, already=800)())


# -- the watchdog ----------------------------------------------------------------------


@pytest.fixture
def guard() -> Watchdog:
    return Watchdog(name="test-watchdog")


def test_the_watchdog_thread_starts_on_first_use(guard: Watchdog) -> None:
    assert not guard.running
    assert guard.call(5, lambda: "ok") == "ok"
    assert guard.running


@pytest.mark.parametrize("work", [busy_for, sleep_in_steps])
def test_a_call_past_its_deadline_is_interrupted(guard: Watchdog, work: Callable[[float], str]) -> None:
    started = time.monotonic()
    with pytest.raises(ResponderTimeout):
        guard.call(0.1, work, UNSTOPPED)
    assert time.monotonic() - started < UNSTOPPED
    assert guard.pending() == 0


def test_a_call_within_its_deadline_returns_and_its_errors_pass_through(guard: Watchdog) -> None:
    assert guard.call(5, busy_for, 0.01) == "finished"
    with pytest.raises(KeyError):
        guard.call(5, {}.__getitem__, "missing")
    assert guard.pending() == 0
    assert not guard.watching()


def test_the_exception_is_not_caught_by_except_exception(guard: Watchdog) -> None:
    swallowed: list[BaseException] = []

    def careless() -> None:
        try:
            sleep_in_steps(UNSTOPPED)
        except Exception as exc:  # what a responder might do
            swallowed.append(exc)

    with pytest.raises(ResponderTimeout):
        guard.call(0.05, careless)
    assert swallowed == []


def test_no_exception_ever_escapes_a_finished_call(guard: Watchdog) -> None:
    """Many calls that end right at their deadline: whatever the race, nothing surfaces after ``call``."""
    outcomes = {"returned": 0, "timed_out": 0}
    for _ in range(3000):
        try:
            guard.call(0.0005, busy_for, 0.0005)
            outcomes["returned"] += 1
        except ResponderTimeout:
            outcomes["timed_out"] += 1
        # A late exception would surface in this bytecode, outside any call.
        total = 0
        for step in range(200):
            total += step
    busy_for(0.05)  # long after the last deadline: still nothing
    assert outcomes["returned"] + outcomes["timed_out"] == 3000
    assert outcomes["timed_out"] > 0  # the race was really run
    assert guard.pending() == 0


def test_a_deadline_firing_while_the_call_disarms_surfaces_from_the_call_only(guard: Watchdog) -> None:
    """The worst moment, made certain: the watchdog fires once ``func`` has returned, before ``call`` disarms."""
    caller = threading.get_ident()
    returned = threading.Event()

    def fire_like_the_watchdog() -> None:
        returned.wait()
        with guard._lock:
            time.sleep(0.05)  # meanwhile the caller leaves func and waits for the lock to disarm
            deadline = guard._deadlines[caller]
            deadline.fired = True
            interrupt(caller, ResponderTimeout)

    def func() -> str:
        returned.set()
        time.sleep(0.01)  # in C: the other thread takes the lock first
        return "value"

    firing = threading.Thread(target=fire_like_the_watchdog)
    firing.start()
    with pytest.raises(ResponderTimeout):
        guard.call(UNSTOPPED, func)
    firing.join()
    busy_for(0.05)  # nothing surfaces afterwards
    assert guard.pending() == 0
    with pytest.raises(ResponderTimeout):  # and the thread's next call is watched again
        guard.call(0.05, sleep_in_steps, UNSTOPPED)


def test_other_threads_are_unaffected(guard: Watchdog) -> None:
    results: dict[str, Any] = {}

    def patient() -> None:
        results["patient"] = guard.call(UNSTOPPED, busy_for, 0.3)

    def helper() -> None:
        results["helper"] = busy_for(0.3)

    spawned = threading.Thread(target=helper)

    def hasty() -> None:
        spawned.start()  # a thread started by the call that times out
        sleep_in_steps(UNSTOPPED)

    other = threading.Thread(target=patient)
    other.start()
    with pytest.raises(ResponderTimeout):
        guard.call(0.05, hasty)
    other.join()
    spawned.join()
    assert results == {"patient": "finished", "helper": "finished"}


def test_a_nested_call_runs_under_the_outer_deadline(guard: Watchdog) -> None:
    watched: list[bool] = []

    def outer() -> str:
        inner = guard.call(UNSTOPPED, lambda: watched.append(guard.watching()) or "inner")
        watched.append(guard.watching())  # the inner call did not take the outer deadline away
        return inner + "+" + guard.call(UNSTOPPED, sleep_in_steps, UNSTOPPED)

    with pytest.raises(ResponderTimeout):
        guard.call(0.1, outer)
    assert watched == [True, True]
    assert guard.pending() == 0


def test_a_forked_child_gets_a_watchdog_of_its_own(guard: Watchdog) -> None:
    guard.call(5, lambda: None)  # the parent's watchdog thread runs
    with guard._lock:  # fork while the parent holds the lock: the child must not inherit it held
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                guard.call(0.05, sleep_in_steps, 5)
            except ResponderTimeout:
                code = 0 if guard.running else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(ResponderTimeout):  # the parent's watchdog still works
        guard.call(0.05, sleep_in_steps, UNSTOPPED)


def test_time_limit_turns_a_timeout_into_a_503_with_retry_after(guard: Watchdog) -> None:
    req = SimpleNamespace(method="GET", path="/x", context=SimpleNamespace(request_id="r-1"))

    def slow(req: Any, resp: Any, **params: Any) -> None:
        sleep_in_steps(UNSTOPPED)

    def fast(req: Any, resp: Any, *, item: str) -> str:
        return item

    limited = time_limit(guard, 0.05, retry_after=9)
    with pytest.raises(falcon.HTTPServiceUnavailable) as exc:
        limited(slow)(req, None)
    assert exc.value.headers == {"Retry-After": "9"}
    assert limited(fast)(req, None, item="t-1") == "t-1"
    assert limited(fast).__name__ == "fast"


# -- settings -----------------------------------------------------------------------------


def test_settings_have_safe_defaults_and_come_from_the_environment(make_config: Callable[..., Any]) -> None:
    assert make_config().limits == LimitsSettings(
        max_body_bytes=MiB, max_url_length=8192, max_header_bytes=16384, responder_timeout=30.0, timeout_retry_after=5
    )
    config = make_config(
        environ={
            "APP_LIMITS__MAX_BODY_BYTES": "2048",
            "APP_LIMITS__MAX_URL_LENGTH": "0",
            "APP_LIMITS__MAX_HEADER_BYTES": "4096",
            "APP_LIMITS__RESPONDER_TIMEOUT": "2.5",
            "APP_LIMITS__TIMEOUT_RETRY_AFTER": "30",
        }
    )
    assert config.limits == LimitsSettings(2048, 0, 4096, 2.5, 30)
    assert config.sources["limits.responder_timeout"] == "env APP_LIMITS__RESPONDER_TIMEOUT"


@pytest.mark.parametrize(
    "variable,value",
    [
        ("MAX_BODY_BYTES", "-1"),
        ("MAX_BODY_BYTES", "big"),
        ("MAX_BODY_BYTES", str(2**31)),
        ("MAX_URL_LENGTH", "-5"),
        ("MAX_URL_LENGTH", str(2**21)),
        ("MAX_HEADER_BYTES", "-5"),
        ("MAX_HEADER_BYTES", "1.5"),
        ("RESPONDER_TIMEOUT", "-0.5"),
        ("RESPONDER_TIMEOUT", "nan"),
        ("RESPONDER_TIMEOUT", "inf"),
        ("RESPONDER_TIMEOUT", "7200"),
        ("TIMEOUT_RETRY_AFTER", "0"),
        ("TIMEOUT_RETRY_AFTER", "soon"),
    ],
)
def test_bad_settings_stop_start_up(make_config: Callable[..., Any], variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_config(environ={f"APP_LIMITS__{variable}": value})
    assert [p.key for p in exc.value.problems] == [f"limits.{variable.lower()}"]


def test_no_time_limit_means_no_responder_wrapper(make_config: Callable[..., Any]) -> None:
    assert limits.taskman_responder_wrappers(make_config(overrides={"limits": {"responder_timeout": 0}})) == []
    assert len(limits.taskman_responder_wrappers(make_config())) == 1


# -- over HTTP, both flavours ----------------------------------------------------------------


class FastResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"watched": watchdog.watching()}


class SlowResource:
    def __init__(self, finished: list[float]) -> None:
        self.finished = finished

    def on_get(self, req: Any, resp: Any) -> None:
        seconds = float(req.get_param("seconds"))
        sleep_in_steps(seconds)
        self.finished.append(seconds)
        resp.media = {"slept": seconds}


class BodyResource:
    """Reads the body each way a responder may: falcon's bounded stream, the raw stream in blocks, all at once."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def on_put(self, req: Any, resp: Any) -> None:
        self.calls.append("put")
        resp.media = {"length": len(req.bounded_stream.read())}

    def on_post(self, req: Any, resp: Any) -> None:
        self.calls.append("post")
        total = 0
        while chunk := req.stream.read(1000):
            total += len(chunk)
        resp.media = {"length": total}

    def on_patch(self, req: Any, resp: Any) -> None:
        self.calls.append("patch")
        resp.media = {"length": len(req.stream.read())}


class LimitsProbe:
    taskman_plugin_name = "limits_probe"

    def __init__(self) -> None:
        self.finished: list[float] = []
        self.calls: list[str] = []

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [
            ("/probe/fast", FastResource()),
            ("/probe/slow", SlowResource(self.finished)),
            ("/probe/body", BodyResource(self.calls)),
        ]

    @hookimpl
    def taskman_access(self, config: Any) -> dict[str, str]:
        """For the auth plugin: these routes are open to anyone."""
        return {"/probe/fast": "public", "/probe/slow": "public", "/probe/body": "public"}


@pytest.fixture
def probe() -> LimitsProbe:
    return LimitsProbe()


@pytest.fixture
def probe_client(make_client: Client, probe: LimitsProbe) -> Callable[..., falcon.testing.TestClient]:
    def make(limits: dict[str, Any] | None = None) -> falcon.testing.TestClient:
        return make_client(plugins=(probe,), overrides={"limits": limits or {}})

    return make


def assert_problem(result: Any, status: int) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == PROBLEM_CONTENT_TYPE
    document = result.json
    assert document["status"] == status and document["request_id"]
    return dict(document)


@attrs.frozen
class RawResult:
    status_code: int
    headers: dict[str, str]
    text: str
    pulled: int  # body bytes the app took from the server

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def send(
    client: falcon.testing.TestClient, method: str, path: str, headers: dict[str, str], chunks: list[bytes]
) -> RawResult:
    """Call the app as a server would, with ``headers`` as given (no Content-Length added), counting body reads."""
    app: Any = client.app
    if isinstance(app, falcon.asgi.App):
        scope = falcon.testing.create_scope(path=path, method=method, headers=headers)
        events = Events(chunks or [b""])
        collector = falcon.testing.ASGIResponseEventCollector()
        asyncio.run(app(scope, events, collector))
        body = b"".join(collector.body_chunks)
        return RawResult(collector.status, dict(collector.headers), body.decode(), events.pulled)
    environ = falcon.testing.create_environ(path=path, method=method, headers=headers)
    source = CountingReader(b"".join(chunks))
    environ["wsgi.input"] = source
    start_response = falcon.testing.StartResponseMock()
    body = b"".join(app(environ, start_response))
    return RawResult(int(start_response.status.split()[0]), dict(start_response.headers), body.decode(), source.pulled)


def test_fast_responders_run_under_the_time_limit_untouched(probe_client: Client, probe: LimitsProbe) -> None:
    client = probe_client({"responder_timeout": 5})
    assert client.simulate_get("/probe/fast").json == {"watched": True}
    assert client.simulate_get("/probe/slow", params={"seconds": "0.05"}).json == {"slept": 0.05}
    assert probe.finished == [0.05]


def test_a_responder_past_the_time_limit_gets_a_503_and_the_thread_serves_on(
    probe_client: Client, probe: LimitsProbe
) -> None:
    client = probe_client({"responder_timeout": 0.2, "timeout_retry_after": 7})
    started = time.monotonic()
    result = client.simulate_get("/probe/slow", params={"seconds": str(UNSTOPPED)})
    assert time.monotonic() - started < UNSTOPPED
    document = assert_problem(result, 503)
    assert result.headers["retry-after"] == "7"
    assert "0.2 seconds" in document["detail"]
    assert probe.finished == []  # interrupted, not finished late
    for _ in range(5):
        assert client.simulate_get("/probe/fast").status_code == 200
    assert client.simulate_get("/probe/slow", params={"seconds": "0.02"}).status_code == 200
    assert watchdog.pending() == 0


def test_no_time_limit_when_it_is_zero(probe_client: Client) -> None:
    client = probe_client({"responder_timeout": 0})
    assert client.simulate_get("/probe/fast").json == {"watched": False}


def test_a_body_over_the_limit_by_content_length_is_refused_unread(probe_client: Client, probe: LimitsProbe) -> None:
    client = probe_client({"max_body_bytes": 1000})
    result = send(client, "PUT", "/probe/body", {"Content-Length": "1100"}, [b"x" * 100] * 11)
    document = assert_problem(result, 413)
    assert "1000 bytes" in document["detail"]
    # falcon's ASGI app takes the first body event before any middleware runs (the ASGI spec asks
    # it to wait for one); nothing more is read, and under WSGI nothing at all.
    assert result.pulled == (100 if isinstance(client.app, falcon.asgi.App) else 0)
    assert probe.calls == []


def test_a_body_within_the_limit_is_served(probe_client: Client, probe: LimitsProbe) -> None:
    client = probe_client({"max_body_bytes": 1000})
    assert client.simulate_put("/probe/body", body=b"x" * 1000).json == {"length": 1000}
    assert client.simulate_get("/probe/fast").status_code == 200  # no body, no Content-Length
    assert probe.calls == ["put"]


def test_the_default_body_limit_is_one_mebibyte(probe_client: Client) -> None:
    client = probe_client()
    assert client.simulate_put("/probe/body", body=b"x" * MiB).json == {"length": MiB}
    assert_problem(client.simulate_put("/probe/body", body=b"x" * (MiB + 1)), 413)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_chunked_body_is_bounded_while_it_is_read(probe_client: Client, probe: LimitsProbe, method: str) -> None:
    client = probe_client({"max_body_bytes": 1000})
    chunked = {"Transfer-Encoding": "chunked"}
    within = send(client, method, "/probe/body", chunked, [b"x" * 400, b"x" * 400, b"x" * 200])
    assert (within.status_code, within.json) == (200, {"length": 1000})

    over = send(client, method, "/probe/body", chunked, [b"x" * 400] * 250)  # 100 kB
    assert_problem(over, 413)
    assert over.pulled <= 1000 + 400  # the limit and at most one more chunk (WSGI: one more byte)
    # Under ASGI the core reads a body still on its way before the responder's thread starts (through the
    # bounded receive): the responder never sees the oversized one.  Under WSGI it stops the responder's read.
    asgi = isinstance(client.app, falcon.asgi.App)
    assert probe.calls == [method.lower()] * (1 if asgi else 2)


def test_a_chunked_body_over_the_limit_in_its_first_piece_is_refused(probe_client: Client) -> None:
    client = probe_client({"max_body_bytes": 1000})
    result = send(client, "POST", "/probe/body", {"Transfer-Encoding": "chunked"}, [b"x" * 5000])
    assert_problem(result, 413)
    assert result.pulled <= 5000


@pytest.mark.parametrize("value", ["abc", "-1", "+5", "1_0"])
def test_a_malformed_content_length_is_a_400(probe_client: Client, probe: LimitsProbe, value: str) -> None:
    result = send(probe_client(), "PUT", "/probe/body", {"Content-Length": value}, [b"12345"])
    document = assert_problem(result, 400)
    assert "Content-Length" in document["detail"]
    assert probe.calls == []


def test_a_request_target_over_the_limit_is_a_414(probe_client: Client) -> None:
    client = probe_client({"max_url_length": 100})
    path = "/probe/fast"
    at_limit = "q=" + "a" * (100 - len(path) - 1 - 2)
    assert client.simulate_get(path, query_string=at_limit).status_code == 200
    document = assert_problem(client.simulate_get(path, query_string=at_limit + "a"), 414)
    assert "100 characters" in document["detail"]
    assert_problem(client.simulate_get("/" + "p" * 100), 414)


def test_headers_over_the_limit_are_a_431(probe_client: Client) -> None:
    client = probe_client({"max_header_bytes": 2048})
    assert client.simulate_get("/probe/fast", headers={"X-Padding": "a" * 1024}).status_code == 200
    document = assert_problem(client.simulate_get("/probe/fast", headers={"X-Padding": "a" * 2048}), 431)
    assert "2048 bytes" in document["detail"]


def test_zero_turns_each_size_limit_off(probe_client: Client) -> None:
    client = probe_client({"max_body_bytes": 0, "max_url_length": 0, "max_header_bytes": 0})
    assert client.simulate_put("/probe/body", body=b"x" * (MiB + 1)).json == {"length": MiB + 1}
    assert client.simulate_get("/probe/fast", query_string="q=" + "a" * 9000).status_code == 200
    assert client.simulate_get("/probe/fast", headers={"X-Padding": "a" * 17000}).status_code == 200


def test_disabling_the_plugin_removes_every_limit(make_client: Client, probe: LimitsProbe) -> None:
    client = make_client(plugins=(probe,), environ={"APP_PLUGINS__DISABLE": "limits"})
    assert "limits" not in client.app.taskman.config.sections
    assert client.simulate_get("/probe/fast").json == {"watched": False}
    assert client.simulate_put("/probe/body", body=b"x" * (MiB + 1)).json == {"length": MiB + 1}
    assert client.simulate_get("/probe/fast", query_string="q=" + "a" * 9000).status_code == 200
    assert client.simulate_get("/probe/fast", headers={"X-Padding": "a" * 17000}).status_code == 200
    assert send(client, "PUT", "/probe/body", {"Content-Length": "+5"}, [b"12345"]).json == {"length": 5}


# -- a real write, interrupted ------------------------------------------------------------------


@pytest.fixture
def stalled_task_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task creation that stalls after writing the task and its labels, before its transaction commits."""
    from taskman_plugins.tracker.tasks import Tasks

    original = Tasks.after_create

    def after_create_then_stall(self: Any, record: Any, events: Any) -> None:
        original(self, record, events)
        sleep_in_steps(UNSTOPPED)

    monkeypatch.setattr(Tasks, "after_create", after_create_then_stall)


def test_an_interrupted_tracker_write_leaves_nothing_half_written(
    make_client: Client, stalled_task_creation: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskman_plugins.tracker.models import Task, TaskLabel

    # The tracker's routes need a token with the write scope: this test is about the write, not about auth.
    client = make_client(environ={"APP_PLUGINS__DISABLE": "auth"}, overrides={"limits": {"responder_timeout": 0.5}})
    project = {"id": "P-1", "name": "Apollo", "mission": "Land", "owner": "ann"}
    assert client.simulate_post("/api/v1/projects", json=project).status_code == 201
    task = {"id": "T-1", "title": "Stalls", "project_id": "P-1", "labels": ["red", "blue"]}

    assert_problem(client.simulate_post("/api/v1/tasks", json=task), 503)

    assert client.simulate_get("/api/v1/tasks/T-1").status_code == 404
    try:
        assert (Task.select().count(), TaskLabel.select().count()) == (0, 0)
    finally:
        release_connection(database)
    monkeypatch.undo()  # the retry does not stall
    assert client.simulate_post("/api/v1/tasks", json=task).status_code == 201
    assert sorted(client.simulate_get("/api/v1/tasks/T-1").json["labels"]) == ["blue", "red"]


def test_the_openapi_document_lists_the_limits_answers(make_client: Any) -> None:
    paths = make_client().simulate_get("/api/openapi.json").json["paths"]
    create, read = paths["/api/v1/tasks"]["post"], paths["/api/v1/tasks"]["get"]
    assert {"413", "414", "431"} <= set(create["responses"])
    assert "413" not in read["responses"] and {"414", "431"} <= set(read["responses"])
    off = make_client(environ={"APP_LIMITS__MAX_BODY_BYTES": "0", "APP_LIMITS__MAX_URL_LENGTH": "0"})
    create = off.simulate_get("/api/openapi.json").json["paths"]["/api/v1/tasks"]["post"]
    assert "413" not in create["responses"] and "414" not in create["responses"] and "431" in create["responses"]
