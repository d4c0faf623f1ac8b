"""Sending one webhook: where it may go, how it is signed, and an HTTP exchange with one deadline.

Plain Python (sockets, ssl, no HTTP library): a receiver gets at most the
timeout for the whole exchange, name resolution, connection, TLS, request
and response head together, because each step is given what is left of
one deadline (a library's timeout bounds each read, so a receiver
trickling a byte a second would hold a worker for ever).  Redirects are
answered, not followed.  The address connected to is the one checked: the
name is resolved once, every address it resolves to must be allowed, and
the connection goes to that address (no second lookup a DNS server could
answer differently).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_LENGTH = 2000
#: Bytes of a response's head read at most (the body is never needed: only the status counts).
MAX_RESPONSE_HEAD = 16384
USER_AGENT = "taskman-webhooks/1"

Resolver = Callable[[str, int], list[str]]

#: What an attempt came to.  Only ``success`` ends a delivery well; ``gone`` (410) disables the
#: subscription; ``retry`` outcomes are tried again later; ``rejected`` (another 4xx, a redirect) is not.
SUCCESS = "success"
GONE = "gone"
HTTP_ERROR = "http_error"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
REFUSED = "refused"
OUTCOMES = (SUCCESS, GONE, HTTP_ERROR, SERVER_ERROR, TIMEOUT, CONNECTION_ERROR, REFUSED)
RETRIED = frozenset({SERVER_ERROR, TIMEOUT, CONNECTION_ERROR, REFUSED})


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature: ``v1,`` and base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


# -- where a webhook may go ------------------------------------------------------------------


def address_problem(address: str) -> str | None:
    """Why a webhook may not go to ``address`` (loopback, private, link-local...), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    for what, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"{address} is a {what} address"
    if not ip.is_global:  # shared (100.64/10), documentation ranges and the like
        return f"{address} is not a public address"
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a webhook target, whatever it resolves to; None when it is fine."""
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must be an ASCII URL without spaces or control characters (encode an international name as xn--)"
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials (the signature authenticates the sender)"
    if parts.fragment:
        return "must not have a #fragment"
    if port == 0:
        return "must not use port 0"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address is itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_lookups: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _lookup_pool() -> concurrent.futures.ThreadPoolExecutor:
    """This process's resolver threads (a forked child has none of its parent's)."""
    global _lookups
    if _lookups is None or _lookups[0] != os.getpid():
        _lookups = (os.getpid(), concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="taskman-webhooks-dns"))
    return _lookups[1]


def resolve_within(host: str, port: int, timeout: float, resolver: Resolver = resolve) -> list[str]:
    """:func:`resolve`, given at most ``timeout`` seconds (``getaddrinfo`` itself cannot be bounded)."""
    return _lookup_pool().submit(resolver, host, port).result(timeout=max(timeout, 0.001))


def target_problem(url: str, *, allow_private: bool, timeout: float, resolver: Resolver = resolve) -> str | None:
    """Why a subscription may not point at ``url`` (checked when it is saved): a bad URL or a private target."""
    problem = url_problem(url)
    if problem or allow_private:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolve_within(host, parts.port or 443, timeout, resolver)
        except (OSError, concurrent.futures.TimeoutError):
            return None  # not resolvable now: checked again before every delivery
    for address in addresses:
        reason = address_problem(address)
        if reason:
            return f"resolves to {reason}; set webhooks.allow_private_targets to allow it"
    return None


# -- one exchange ----------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    #: Seconds the receiver asked for (``Retry-After`` with a 429 or 503), if any.
    retry_after: float | None = None

    @property
    def retried(self) -> bool:
        return self.outcome in RETRIED


def classify(status: int) -> str:
    if 200 <= status < 300:
        return SUCCESS
    if status == 410:
        return GONE
    if status in (408, 429) or 500 <= status < 600:
        return SERVER_ERROR
    return HTTP_ERROR


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the receiver's time is up")
        return left


def _request_head(method: str, url: str, headers: Mapping[str, str], length: int) -> bytes:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port and parts.port != default_port:
        host = f"{host}:{parts.port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
    lines += ["Content-Type: application/json", f"Content-Length: {length}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _status_of(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(code), headers


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return float(value)
    return None


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allow_private: bool,
    resolver: Resolver = resolve,
) -> Outcome:
    """POST ``body`` to ``url`` within ``timeout`` seconds in all; never raises."""
    started = time.monotonic()
    deadline = _Deadline(timeout)

    def done(outcome: str, status: int | None = None, error: str | None = None, **extra: Any) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(outcome, status, error and error[:500], elapsed, **extra)

    problem = url_problem(url)
    if problem:
        return done(REFUSED, error=f"url {problem}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    sock: socket.socket | None = None
    try:
        addresses = resolve_within(host, port, deadline.left(), resolver)
        if not addresses:
            return done(CONNECTION_ERROR, error=f"{host} resolves to no address")
        if not allow_private:
            for address in addresses:
                reason = address_problem(address)
                if reason:
                    return done(REFUSED, error=f"{host} resolves to {reason}")
        address = addresses[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(deadline.left())
        sock.connect((address, port))
        if parts.scheme == "https":
            sock.settimeout(deadline.left())
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.settimeout(deadline.left())
        sock.sendall(_request_head("POST", url, headers, len(body)) + body)
        head = b""
        while b"\r\n\r\n" not in head:
            sock.settimeout(deadline.left())
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
            if len(head) > MAX_RESPONSE_HEAD:
                break
        if not head:
            return done(CONNECTION_ERROR, error="the receiver closed the connection without an answer")
        status, response_headers = _status_of(head.split(b"\r\n\r\n", 1)[0])
        outcome = classify(status)
        retry_after = _retry_after(response_headers) if status in (429, 503) else None
        return done(outcome, status, None if outcome == SUCCESS else f"HTTP {status}", retry_after=retry_after)
    except (TimeoutError, concurrent.futures.TimeoutError):
        return done(TIMEOUT, error=f"no complete answer within {timeout:g} s")
    except ValueError as exc:
        return done(HTTP_ERROR, error=str(exc))
    except (OSError, ssl.SSLError) as exc:
        return done(CONNECTION_ERROR, error=f"{type(exc).__name__}: {exc}")
    finally:
        if sock is not None:
            sock.close()
