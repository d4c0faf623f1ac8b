"""The ``[limits]`` settings section (``APP_LIMITS__*``), validated by attrs."""

from __future__ import annotations

import math

import attrs
from attrs import validators as v

from taskman import setting, settings_section

#: One GiB: a larger body limit is not a limit worth having in this app.
MAX_BODY_BYTES = 1 << 30
#: Generous upper bounds for the URL and header limits (servers refuse far less).
MAX_URL_LENGTH = 1 << 20
MAX_HEADER_BYTES = 1 << 20
MAX_TIMEOUT_SECONDS = 3600.0


def _an_int(instance: object, attribute: attrs.Attribute, value: object) -> None:  # type: ignore[type-arg]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"'{attribute.name}' must be a whole number, not {value!r}")


def _finite(instance: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number of seconds, not {value!r}")


@settings_section("limits")
@attrs.frozen
class LimitsSettings:
    """Body size, target and header length, the time a client gets to send them, and the responder time limit."""

    max_body_bytes: int = setting(
        1_048_576,
        "largest request body accepted, in bytes (413 above it); 0 for no limit",
        [_an_int, v.ge(0), v.le(MAX_BODY_BYTES)],
    )
    max_url_length: int = setting(
        8192,
        "longest request target (path and query string, as sent) accepted (414 above it); 0 for no limit",
        [_an_int, v.ge(0), v.le(MAX_URL_LENGTH)],
    )
    max_header_bytes: int = setting(
        16384,
        "largest sum of header name and value lengths accepted (431 above it); 0 for no limit",
        [_an_int, v.ge(0), v.le(MAX_HEADER_BYTES)],
    )
    responder_timeout: float = setting(
        30.0,
        "seconds a sync responder may run before it is interrupted with 503; 0 for no limit",
        [_finite, v.ge(0), v.le(MAX_TIMEOUT_SECONDS)],
    )
    timeout_retry_after: int = setting(
        5, "Retry-After seconds sent with the 503 of an interrupted responder", [_an_int, v.ge(1), v.le(3600)]
    )
    header_timeout: float = setting(
        10.0,
        "seconds a client has to send its request head, from its first byte (408 after it); 0 for no limit",
        [_finite, v.ge(0), v.le(MAX_TIMEOUT_SECONDS)],
    )
    body_timeout: float = setting(
        30.0,
        "seconds a client has to send its request body, from the end of its head (408 after it); 0 for no limit",
        [_finite, v.ge(0), v.le(MAX_TIMEOUT_SECONDS)],
    )
