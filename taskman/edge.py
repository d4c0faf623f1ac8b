"""What the server layer does before the app sees a request, in plain Python (no server imported here).

Both servers' integrations (:mod:`taskman.gunicorn_worker`,
:mod:`taskman.uvicorn_protocol`) use these, so the two flavours refuse a
request the same way and trust the same proxies:

* :func:`problem_response`: the bytes of an RFC 9457 answer the server
  layer sends itself, for what it refuses before the app could (an
  ambiguous or oversized request head, a client too slow to send one);
* :class:`TrustedProxies`: which peers may name the client in
  ``X-Forwarded-For`` (``server.forwarded_allow_ips``), and the client they
  name, resolved as uvicorn resolves it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import uuid
from collections.abc import Iterable

from taskman.status import status_phrase

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: What the server layer says for each status it answers by itself.
DETAILS = {
    400: "The request is not valid HTTP/1.1.",
    408: "The request did not arrive in time.",
    414: "The request target is too long.",
    417: "The request's expectation cannot be met.",
    431: "The request headers are too large.",
    501: "The request uses a transfer coding this server does not implement.",
}


def problem_response(status: int, detail: str | None = None) -> bytes:
    """A whole HTTP/1.1 response: a problem+json body, ``Connection: close``, never cached, never sniffed.

    The app's own problems carry a ``request_id``; this one mints one too,
    so a client can quote it and an operator find the server's log line.
    """
    phrase = status_phrase(status)
    request_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "type": "about:blank",
            "title": phrase,
            "status": status,
            "detail": detail or DETAILS.get(status, phrase),
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers allowed to name the client (``X-Forwarded-For``): addresses, networks, or ``*`` for any.

    :meth:`client_of` walks ``X-Forwarded-For`` from the right, past the
    proxies it trusts, to the first address it does not: each proxy appends
    the address it received the request from, so that one is the last
    address a trusted party vouches for (uvicorn's rule, so both flavours
    agree).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.everyone = "*" in entries
        self.addresses: set[IPAddress] = set()
        self.networks: list[IPNetwork] = []
        for entry in entries:
            if entry == "*":
                continue
            network = ipaddress.ip_network(entry)
            if network.num_addresses == 1:
                self.addresses.add(network.network_address)
            else:
                self.networks.append(network)
        # Peers repeat (a proxy's few addresses): remember each verdict.
        self.trusts = functools.lru_cache(maxsize=1024)(self._trusts)

    def __bool__(self) -> bool:
        return self.everyone or bool(self.addresses or self.networks)

    def _trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address in self.addresses or any(address in network for network in self.networks)

    def client_of(self, forwarded_for: str) -> str | None:
        """The client a trusted peer's ``X-Forwarded-For`` names; None when it names none."""
        hops = [host for host in (_host_of(item) for item in forwarded_for.split(",")) if host]
        if not hops:
            return None
        if self.everyone:
            return hops[0]
        for host in reversed(hops):
            if not self.trusts(host):
                return host
        return hops[0]  # every hop is a trusted proxy: the first one is the client


def _host_of(item: str) -> str:
    """The host of one ``X-Forwarded-For`` entry: ``192.0.2.1``, ``192.0.2.1:443``, ``[2001:db8::1]:443``."""
    value = item.strip()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value
