"""taskman's gunicorn workers: gunicorn's threaded worker, hardened against clients that take their time.

gunicorn's ``gthread`` worker gives each new connection a thread, which
waits up to 5 s for a first byte, then reads the request head and body with
no time limit; its ``sync`` worker blocks its only thread on a silent socket.
Either way a few hundred idle connections, or one slow client per thread,
leave nobody to answer (issue 12).  :class:`ThreadWorker`:

* waits for a connection's first byte on the worker's poller, not on a
  thread, and closes it there after ``server.keepalive`` seconds of silence;
* gives a request ``header_timeout`` seconds for its head and
  ``body_timeout`` for its body (the bounds plugins contribute through
  ``taskman_server_options``), and the head a size bound; past them the
  client gets a 408, 414 or 431 problem and its connection is closed;
* bounds each response write by ``server.send_timeout``: a client that
  stops reading loses its connection, not a thread forever;
* closes a connection gracefully (half-close, then drain what the client
  still sends for up to 2 s) on the poller, where gunicorn blocks its main
  loop for it.

Both workers (:class:`SyncWorker` is gunicorn's sync worker with the same
answers) answer what gunicorn refuses (a malformed or ambiguous request, an
oversized head) with an RFC 9457 problem instead of gunicorn's HTML page,
turn a malformed or late body the app was reading into a 400 or 408 problem
rather than a 500, and set ``REMOTE_ADDR`` to the client a trusted proxy
names in ``X-Forwarded-For`` (``server.forwarded_allow_ips``).
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import falcon
from gunicorn import http, util
from gunicorn.http import errors as parse_errors
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread, sync

from taskman.edge import TrustedProxies, problem_response

if TYPE_CHECKING:
    from taskman.config import ServerSettings
    from taskman.servers import ServerOptions

#: A closing connection's leftover input is drained this long, at most this much, before the socket closes.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
#: What is left of an unread body is drained this long, at most, before a kept-alive connection is reused.
DRAIN_SECONDS = 5.0


class HeadTimeout(parse_errors.ParseException):  # type: ignore[misc]
    """The client did not send its request head within ``header_timeout``."""

    def __init__(self) -> None:
        super().__init__("the request head did not arrive in time")


class HeadTooLarge(parse_errors.ParseException):  # type: ignore[misc]
    """The request head is longer than any the app could accept; ``in_line`` when the request line is."""

    def __init__(self, in_line: bool) -> None:
        super().__init__("request target too long" if in_line else "request header fields too large")
        self.in_line = in_line


class BodyTimeout(TimeoutError):
    """The client did not send its request body within ``body_timeout``."""


#: gunicorn's refusals, by the status they deserve (the first match wins).
_REFUSALS: tuple[tuple[type[BaseException], int], ...] = (
    (HeadTimeout, 408),
    (parse_errors.LimitRequestLine, 414),
    (parse_errors.LimitRequestHeaders, 431),
    (parse_errors.UnsupportedTransferCoding, 501),
    (parse_errors.ExpectationFailed, 417),
    (parse_errors.ForbiddenProxyRequest, 403),
    (parse_errors.ConfigurationProblem, 500),
    (parse_errors.ParseException, 400),
    (ssl.SSLError, 403),
)


def refusal_status(exc: BaseException) -> int | None:
    """The status of the problem answering ``exc`` raised while gunicorn read a request; None if not the client's."""
    if isinstance(exc, HeadTooLarge):
        return 414 if exc.in_line else 431
    for kind, status in _REFUSALS:
        if isinstance(exc, kind):
            return status
    return None


class EdgeReader:
    """The socket as gunicorn's request parser reads it: each ``recv`` bounded by the current phase's deadline.

    While a head is read, the bytes read are counted against ``head_budget``
    (a request line longer than gunicorn's own ceiling is only bounded here).
    Everything but ``recv`` is the socket's.
    """

    __slots__ = ("deadline", "expired", "head_budget", "line_seen", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None
        self.expired: Callable[[], BaseException] = TimeoutError
        self.head_budget: int | None = None
        self.line_seen = False

    def expect_head(self, seconds: float | None, budget: int | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.expired = HeadTimeout
        self.head_budget = budget
        self.line_seen = False

    def expect_body(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.expired = BodyTimeout
        self.head_budget = None

    def expect_nothing(self) -> None:
        """After the app: a drain bounds itself with the socket's timeout."""
        self.deadline = None
        self.expired = TimeoutError
        self.head_budget = None

    def recv(self, size: int) -> bytes:
        sock = self.sock
        if self.deadline is None:
            try:
                data = sock.recv(size)  # bounded by the socket's own timeout, per read
            except TimeoutError:
                raise self.expired() from None
        else:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise self.expired()
            prior = sock.gettimeout()
            sock.settimeout(remaining if prior is None else min(prior, remaining))
            try:
                data = sock.recv(size)
            except TimeoutError:
                raise self.expired() from None
            finally:
                sock.settimeout(prior)
        if self.head_budget is not None:
            self.line_seen = self.line_seen or b"\n" in data
            self.head_budget -= len(data)
            if self.head_budget < 0:
                raise HeadTooLarge(in_line=not self.line_seen)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _client_failure(exc: BaseException) -> falcon.HTTPError:
    if isinstance(exc, TimeoutError):
        return falcon.HTTPError(
            falcon.HTTP_408,
            description="The request body did not arrive in time.",
            headers={"Connection": "close"},
        )
    return falcon.HTTPBadRequest(
        description="The request body is not valid: it does not match its framing (Content-Length or chunked).",
        headers={"Connection": "close"},
    )


#: What reading a body can raise that is the client's doing: a malformed chunk, a body cut short, a late one.
_CLIENT_BODY_ERRORS = (parse_errors.ParseException, parse_errors.NoMoreData, TimeoutError)


class GuardedInput:
    """``wsgi.input`` whose read failures are the client's: a 400 or 408 problem (closing the connection), not a 500."""

    __slots__ = ("_body",)

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int | None = None) -> bytes:
        try:
            return self._body.read(size)  # type: ignore[no-any-return]
        except _CLIENT_BODY_ERRORS as exc:
            raise _client_failure(exc) from None

    def readline(self, size: int | None = None) -> bytes:
        try:
            return self._body.readline(size)  # type: ignore[no-any-return]
        except _CLIENT_BODY_ERRORS as exc:
            raise _client_failure(exc) from None

    def readlines(self, hint: int | None = None) -> list[bytes]:
        try:
            return self._body.readlines(hint)  # type: ignore[no-any-return]
        except _CLIENT_BODY_ERRORS as exc:
            raise _client_failure(exc) from None

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def edge_app(app: WSGIApp, proxies: TrustedProxies) -> WSGIApp:
    """``app`` behind the edge: a guarded body for requests that have one, the client a trusted proxy names."""

    def edge(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "CONTENT_LENGTH" in environ or "HTTP_TRANSFER_ENCODING" in environ:
            environ["wsgi.input"] = GuardedInput(environ["wsgi.input"])
        if proxies:
            forwarded = environ.get("HTTP_X_FORWARDED_FOR")
            if forwarded is not None and proxies.trusts(environ.get("REMOTE_ADDR", "")):
                client = proxies.client_of(forwarded)
                if client is not None:
                    environ["REMOTE_ADDR"] = client
        return app(environ, start_response)

    return edge


class _Edge:
    """What both workers share: the app behind :func:`edge_app`, and problem answers for gunicorn's refusals."""

    proxies: TrustedProxies = TrustedProxies(())
    log: Any
    wsgi: Any

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[misc]
        self.wsgi = edge_app(self.wsgi, self.proxies)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status = refusal_status(exc)
        peer = addr[0] if isinstance(addr, tuple) and addr else ""
        if status is None or (status >= 500 and status != 501):
            self.log.exception("Error handling request")
            status = 500
        else:
            self.log.warning("Invalid request from ip=%s: %s %s", peer, type(exc).__name__, exc)
        try:
            client.sendall(problem_response(status))
        except OSError:
            self.log.debug("Failed to send the error response.")


class SyncWorker(_Edge, sync.SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker (one request at a time per process) with taskman's answers; only behind a proxy."""


class ThreadWorker(_Edge, gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, hardened: see the module docstring."""

    header_timeout: float | None = None
    body_timeout: float | None = None
    send_timeout: float | None = None
    head_budget: int | None = None

    def init_process(self) -> None:
        self.lingering: deque[tuple[float, socket.socket]] = deque()
        super().init_process()

    # -- on the main thread --------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        """Take the connection, and wait for its first byte on the poller rather than on a thread."""
        try:
            client, address = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def finish_request(self, conn: Any, fs: Any) -> None:
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        if keep:
            super().finish_request(conn, fs)
            return
        self.nr_conns -= 1
        self.linger(conn.sock)

    def linger(self, sock: socket.socket) -> None:
        """Close ``sock`` after the client has read our last answer: half-close, drain on the poller, then close.

        Closing with the client's bytes still unread makes the kernel reset
        the connection, which can destroy the answer in flight (a 413 sent
        before the body was read).  gunicorn drains on its main loop, where
        a client that never closes stalls every other connection.
        """
        if isinstance(sock, ssl.SSLSocket):
            util.close(sock)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._drain, sock, [0]))
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        self.lingering.append((time.monotonic() + LINGER_SECONDS, sock))

    def _drain(self, sock: socket.socket, drained: list[int], fileobj: Any = None) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] > LINGER_BYTES:
            self._forget(sock)

    def _forget(self, sock: socket.socket) -> None:
        if sock.fileno() < 0:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        util.close(sock)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.lingering and (self.lingering[0][0] <= now or self.lingering[0][1].fileno() < 0):
            self._forget(self.lingering.popleft()[1])

    # -- on a pool thread ----------------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        """Serve one request of ``conn``; whether to keep the connection (gunicorn's, with the edge's bounds)."""
        req = None
        try:
            reader = self._prepare(conn)
            if conn.is_http2:
                return self.handle_http2(conn)
            reader.expect_head(self.header_timeout, self.head_budget)
            req = next(conn.parser)
            if not req:
                return False
            if negotiation.upgrade_allowed(self.cfg, conn.client):
                upgrade = negotiation.upgrade_settings(req)
                if upgrade is not None:
                    return self.handle_h2c_upgrade(conn, req, upgrade)
            reader.expect_body(self.body_timeout)
            try:
                keepalive = self.handle_request(req, conn)
            finally:
                reader.expect_nothing()
            return self._drained(conn, keepalive)
        except (http.errors.NoMoreData, StopIteration):
            self.log.debug("Client closed the connection.")
        except ssl.SSLError as e:
            if e.args[0] != ssl.SSL_ERROR_EOF:
                self.handle_error(req, conn.sock, conn.client, e)
        except TimeoutError:
            self.log.debug("Client too slow: closing the connection.")
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as e:
            self.handle_error(req, conn.sock, conn.client, e)
        return False

    def _prepare(self, conn: Any) -> EdgeReader:
        """Blocking I/O with a write timeout on this thread; the parser reads through an :class:`EdgeReader`."""
        if not conn.initialized:
            conn.init()
            conn.sock.settimeout(self.send_timeout)
            if conn.is_http2:
                return EdgeReader(conn.sock)
            reader = EdgeReader(conn.parser.unreader.sock)
            conn.parser.unreader.sock = reader
            return reader
        conn.sock.settimeout(self.send_timeout)
        current = getattr(getattr(conn.parser, "unreader", None), "sock", None)
        return current if isinstance(current, EdgeReader) else EdgeReader(conn.sock)

    def _drained(self, conn: Any, keepalive: bool) -> bool:
        """Whether ``conn`` may serve another request: what is left of the body read within bounds, and parseable."""
        if not keepalive:
            return False
        try:
            return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_SECONDS))
        except Exception:  # a malformed rest of a body nobody read: where the next request starts is unknown
            return False


def worker_class(server: ServerSettings, options: ServerOptions) -> type:
    """The worker class ``server.worker_class`` names, carrying these settings into every worker it forks."""
    proxies = TrustedProxies(server.forwarded_allow_ips)
    if server.worker_class == "sync":
        return type("SyncWorker", (SyncWorker,), {"proxies": proxies, "__module__": __name__})
    settings = {
        "proxies": proxies,
        "header_timeout": options.header_timeout,
        "body_timeout": options.body_timeout,
        "send_timeout": server.send_timeout,
        "head_budget": options.max_head_bytes,
        "__module__": __name__,
    }
    return type("ThreadWorker", (ThreadWorker,), settings)
