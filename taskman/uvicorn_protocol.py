"""taskman's uvicorn protocol: uvicorn's h11 protocol with unambiguous framing and bounded waiting.

``taskman serve --asgi`` (and ``deploy/uvicorn.sh``, with ``--http
taskman.uvicorn_protocol:H11Protocol``) run it instead of uvicorn's ``auto``
choice, so the parser does not change when ``httptools`` happens to be
installed.  On top of uvicorn's:

* **Framing** (RFC 9112 section 6.1): a request with both
  ``Transfer-Encoding`` and ``Content-Length``, or chunked under HTTP/1.0, is
  refused with a 400 problem and the connection closed: whatever follows on
  it (a request smuggled in the body) is never read.  h11 itself refuses
  conflicting lengths, malformed ones and codings other than chunked.
* **Answers**: what the protocol refuses gets an RFC 9457 problem with the
  status h11 suggests (400, 414, 431, 501), not uvicorn's plain-text 400.
* **Waiting**: a new connection silent for ``server.keepalive`` seconds is
  closed (uvicorn only times out connections between requests); a request
  head must arrive within ``header_timeout`` and a body within
  ``body_timeout`` (plus a second, so the app's own 408 normally answers
  first), else a 408 problem and the connection is closed.
* **Size**: the largest incomplete head h11 buffers follows the app's own
  limits (``max_request_target`` and ``max_header_bytes``), so a request a
  little over them reaches the app and gets its 414 or 431.

The bounds come from the app being served: its plugins'
``taskman_server_options``, read once per worker.  For an app that is not a
taskman app only the framing and the answers apply.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from h11._readers import ChunkedReader
from uvicorn.protocols.http import h11_impl

from taskman.edge import problem_response

#: The app's own 408 (with its request id and headers) normally answers a late body: the protocol's comes after.
BODY_TIMEOUT_GRACE = 1.0


@attrs.frozen
class ProtocolEdge:
    """What the protocol enforces for one app: the largest incomplete head and the head and body timeouts."""

    max_incomplete_event_size: int = DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
    header_timeout: float | None = None
    body_timeout: float | None = None


def _taskman_runtime(app: Any) -> Any:
    """The taskman runtime of ``app``, looking through the middleware uvicorn wraps it in; None if there is none."""
    for _ in range(8):
        runtime = getattr(app, "taskman", None)
        if runtime is not None:
            return runtime
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def edge_of(config: Any) -> ProtocolEdge:
    """The bounds for the app ``config`` (uvicorn's) serves, worked out on the worker's first connection."""
    edge: ProtocolEdge | None = getattr(config, "taskman_edge", None)
    if edge is not None:
        return edge
    from taskman.servers import server_options

    runtime = _taskman_runtime(config.loaded_app)
    edge = ProtocolEdge()
    if runtime is not None:
        options = server_options(runtime.plugins, runtime.config, "asgi")
        edge = ProtocolEdge(
            max(options.max_head_bytes or 0, DEFAULT_MAX_INCOMPLETE_EVENT_SIZE),
            options.header_timeout,
            options.body_timeout,
        )
    if config.h11_max_incomplete_event_size is not None:  # given explicitly: it wins
        edge = attrs.evolve(edge, max_incomplete_event_size=config.h11_max_incomplete_event_size)
    config.taskman_edge = edge
    return edge


#: What to assume when h11 does not say which body reader it chose: check every request.
_CHUNKED = ChunkedReader()


class AmbiguousFraming(h11.RemoteProtocolError):
    """A request whose body length two parties could read differently."""


class StrictConnection(h11.Connection):
    """h11's server connection that also refuses ambiguous framing, and remembers why it refused a request."""

    refusal: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = exc
            raise
        # Only a chunked request can be ambiguous (h11 has refused several Transfer-Encoding headers, codings other
        # than chunked, and conflicting lengths): h11's choice of body reader says so without a look at the headers.
        if (
            type(event) is h11.Request
            and isinstance(getattr(self, "_reader", _CHUNKED), ChunkedReader)
            and (event.http_version == b"1.0" or any(name == b"content-length" for name, _ in event.headers))
        ):
            self.refusal = AmbiguousFraming(
                "Transfer-Encoding with Content-Length, or under HTTP/1.0", error_status_hint=400
            )
            raise self.refusal
        return event


class H11Protocol(h11_impl.H11Protocol):
    """uvicorn's h11 protocol with strict framing, problem answers and bounded waiting (see the module docstring)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        edge = edge_of(config)
        self.conn: StrictConnection = StrictConnection(h11.SERVER, edge.max_incomplete_event_size)
        self.header_timeout = edge.header_timeout
        self.body_timeout = None if edge.body_timeout is None else edge.body_timeout + BODY_TIMEOUT_GRACE
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its idle timeout only after a response: a connection that never speaks would stay forever.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        # A head that came whole (nearly every one) has left IDLE by now: no timer for it.  One still
        # incomplete is timed from here, its first bytes, until it completes.
        if state is h11.IDLE:
            if self.header_timeout is not None and self.head_timer is None and self.conn.trailing_data[0]:
                self.head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
        else:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            if state is h11.SEND_BODY:
                if self.body_timeout is not None and self.body_timer is None:
                    self.body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out, self.cycle)
            elif self.body_timer is not None:  # the body is complete
                self.body_timer.cancel()
                self.body_timer = None

    def send_400_response(self, msg: str) -> None:
        """Answer a request the protocol refused, with the status h11 suggests, and close."""
        refusal = self.conn.refusal
        status = getattr(refusal, "error_status_hint", 400) or 400
        if status == 431 and b"\n" not in self.conn.trailing_data[0]:
            status = 414  # the request line itself never ended
        self._refuse(status)

    def _refuse(self, status: int) -> None:
        self._cancel_timers()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app is still on this request: it must neither answer nor wait any longer.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:  # too late for another answer
                self.transport.close()
                return
        if not self.transport.is_closing():
            self.transport.write(problem_response(status))
            self.transport.close()

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(408)

    def _body_timed_out(self, cycle: Any) -> None:
        self.body_timer = None
        if cycle is not self.cycle or self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        if cycle is not None and cycle.response_complete:
            self.transport.close()  # answered already: the rest of the body is not worth waiting for
        else:
            self._refuse(408)

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None
