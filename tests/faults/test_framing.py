"""Ambiguous message framing and malformed chunks, sent on raw sockets to real servers of both flavours.

A request whose body length two parties could read differently (both
``Content-Length`` and ``Transfer-Encoding``, in any spelling; duplicate or
malformed lengths; codings other than chunked; chunked under HTTP/1.0) is
how requests are smuggled past a proxy: RFC 9112 section 6.1 says refuse it
and close the connection.  Each case here is followed, on the same
connection, by the request a smuggler would hide in the body and by a second
pipelined request: the server must answer the first with a 4xx problem (or
5xx 501 for an unknown coding), close the connection, and answer nothing
else.  A chunked body whose chunk sizes are not hexadecimal (``-1``,
``0x2``, ``+2``) gets a 4xx problem or a closed connection, never a 500;
nothing is stored and nothing is logged at error level.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.faults.conftest import module_fault_server
from tests.faults.harness import API, PROBLEM, Exchange, FaultServer, exchange
from tests.pgschema import ReusableSchema

pytestmark = pytest.mark.servers

PROJECT = "P-framing"
SMUGGLED = b"GET /health/live HTTP/1.1\r\nHost: taskman\r\nX-Smuggled: yes\r\n\r\n"
PIPELINED = b"GET /health/live HTTP/1.1\r\nHost: taskman\r\nX-Pipelined: yes\r\n\r\n"
#: The body the chunked reading ends with: the smuggled request follows it.
CHUNKED_BODY = b"0\r\n\r\n" + SMUGGLED


@attrs.define
class Target:
    server: FaultServer
    url: str


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def target(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_schema: ReusableSchema | None,
    probe_plugin_path: Path,
) -> Iterator[Target]:
    """One server per flavour for the whole module (a fresh database), killed at the end."""
    folder = tmp_path_factory.mktemp(f"framing-{request.param}")
    started = module_fault_server(request.param, folder, postgres_schema, probe_plugin_path, PROJECT, "Framing")
    with started as (server, url):
        yield Target(server, url)


def head(server: FaultServer, framing: list[str], *, version: str = "1.1") -> bytes:
    lines = [
        f"POST {API}/tasks HTTP/{version}",
        "Host: taskman",
        "Content-Type: application/json",
        *(f"{name}: {value}" for name, value in server.headers.items()),
        *framing,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


LENGTH = str(len(CHUNKED_BODY))

#: Framing headers a request smuggler sends (each line as sent), with the statuses a refusal may have.
AMBIGUOUS = {
    "Content-Length and Transfer-Encoding": ([f"Content-Length: {LENGTH}", "Transfer-Encoding: chunked"], "1.1"),
    "Transfer-Encoding before Content-Length": (["Transfer-Encoding: chunked", f"Content-Length: {LENGTH}"], "1.1"),
    "CHUNKED in capitals": ([f"Content-Length: {LENGTH}", "Transfer-Encoding: CHUNKED"], "1.1"),
    "chunked after spaces": ([f"Content-Length: {LENGTH}", "Transfer-Encoding:    chunked"], "1.1"),
    "chunked on a folded line": ([f"Content-Length: {LENGTH}", "Transfer-Encoding:", " chunked"], "1.1"),
    "a space before the colon": ([f"Content-Length: {LENGTH}", "Transfer-Encoding : chunked"], "1.1"),
    "chunked twice in one header": (["Transfer-Encoding: chunked, chunked"], "1.1"),
    "two Transfer-Encoding headers": (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "1.1"),
    "an unknown coding": (["Transfer-Encoding: foo"], "1.1"),
    "identity": (["Transfer-Encoding: identity"], "1.1"),
    "chunked under HTTP/1.0": (["Transfer-Encoding: chunked"], "1.0"),
    "two different lengths": ([f"Content-Length: {LENGTH}", "Content-Length: 5"], "1.1"),
    "a list of lengths": ([f"Content-Length: {LENGTH}, 5"], "1.1"),
    "a length with a plus": ([f"Content-Length: +{LENGTH}"], "1.1"),
    "a negative length": (["Content-Length: -5"], "1.1"),
    "a length that is not a number": (["Content-Length: 5a"], "1.1"),
    "a hexadecimal length": (["Content-Length: 0x5"], "1.1"),
}


def assert_refused_and_closed(got: Exchange) -> None:
    """One problem answer (4xx, or 501 for a coding the server does not implement), then the connection closed."""
    assert got.closed, f"the server kept the connection open: {got.raw[:600]!r}"
    statuses = [reply.status for reply in got.replies]
    assert len(got.replies) == 1, f"answered {statuses}: a smuggled or pipelined request was served {got.raw!r}"
    (reply,) = got.replies
    assert 400 <= reply.status < 500 or reply.status == 501, (reply.status, reply.body)
    assert reply.headers.get("content-type") == PROBLEM, (reply.headers, reply.body)
    assert reply.json()["status"] == reply.status


@pytest.mark.parametrize("case", list(AMBIGUOUS), ids=list(AMBIGUOUS))
def test_ambiguous_framing_is_refused_and_the_connection_closed(target: Target, case: str) -> None:
    framing, version = AMBIGUOUS[case]
    got = exchange(target.server.port, head(target.server, framing, version=version) + CHUNKED_BODY + PIPELINED)
    assert_refused_and_closed(got)
    assert target.server.call("GET", "/health/live").status == 200


@pytest.mark.parametrize("size", [b"-1", b"0x2", b"+2", b"2 2", b""], ids=["-1", "0x2", "+2", "2 2", "empty"])
def test_a_chunk_size_that_is_not_hexadecimal_is_a_4xx_or_a_closed_connection(target: Target, size: bytes) -> None:
    server = target.server
    task = b'{"id": "T-chunk", "title": "Chunk", "project_id": "P-framing"}'
    body = size + b"\r\n" + task + b"\r\n0\r\n\r\n"
    got = exchange(server.port, head(server, ["Transfer-Encoding: chunked"]) + body + PIPELINED)
    assert got.closed, f"the server kept the connection open: {got.raw[:600]!r}"
    assert len(got.replies) <= 1, f"answered {[r.status for r in got.replies]} on a connection it could not read"
    for reply in got.replies:
        assert 400 <= reply.status < 500, (reply.status, reply.body)
        assert reply.headers.get("content-type") == PROBLEM, reply.headers
    assert server.call("GET", f"{API}/tasks/T-chunk").status == 404
    assert server.call("GET", "/health/live").status == 200


def test_a_well_framed_pipeline_is_served_in_order(target: Target) -> None:
    """Control: the same connection, unambiguous, gets every request answered (nothing above is over-strict)."""
    server = target.server
    task = b'{"id": "T-piped", "title": "Piped", "project_id": "P-framing"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(task), task)
    last = b"GET /health/live HTTP/1.1\r\nHost: taskman\r\nConnection: close\r\n\r\n"
    got = exchange(server.port, head(server, ["Transfer-Encoding: chunked"]) + chunked + PIPELINED + last)
    assert [reply.status for reply in got.replies] == [201, 200, 200], got.raw[:800]
    assert got.closed
    assert server.call("DELETE", f"{API}/tasks/T-piped").status == 204


def test_nothing_was_logged_at_error_level(target: Target) -> None:
    """Every refusal above is the client's fault: warnings at most, never an error or a traceback."""
    lines = target.server.json_log()
    assert [line for line in lines if line.get("level") in ("error", "critical")] == []
    assert "Traceback" not in target.server.log
