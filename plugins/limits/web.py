"""The Falcon glue: a middleware for the size limits and a responder decorator for the time limit."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import falcon

from taskman import ResponderWrapper

from .settings import LimitsSettings
from .sizes import (
    LimitedInput,
    LimitedReceive,
    asgi_target_length,
    header_bytes,
    parse_content_length,
    wsgi_header_bytes,
    wsgi_target_length,
)
from .watchdog import Watchdog

log = logging.getLogger("taskman.limits")


def body_too_large(limit: int) -> falcon.HTTPContentTooLarge:
    return falcon.HTTPContentTooLarge(description=f"The request body is larger than the limit of {limit} bytes.")


class LimitsMiddleware:
    """Refuse oversized requests before a responder runs, and bound bodies of unannounced length.

    A body whose ``Content-Length`` is over the limit is refused with 413
    without reading a byte of it.  A body sent without one (chunked) gets a
    stream that raises the 413 as soon as the responder has read one byte
    past the limit: under WSGI ``req.stream`` (and ``wsgi.input``), under
    ASGI the ``receive`` callable that falcon's ``req.stream`` pulls from
    (ASGI servers may pass on HTTP/2 bodies without either header, so there
    every request without ``Content-Length`` gets it).
    """

    def __init__(self, settings: LimitsSettings) -> None:
        self.max_body_bytes = settings.max_body_bytes
        self.max_url_length = settings.max_url_length
        self.max_header_bytes = settings.max_header_bytes

    def _check_target(self, length: int) -> None:
        if length > self.max_url_length:
            raise falcon.HTTPUriTooLong(
                description=f"The request target is longer than the limit of {self.max_url_length} characters."
            )

    def _check_headers(self, size: int) -> None:
        if size > self.max_header_bytes:
            raise falcon.HTTPRequestHeaderFieldsTooLarge(
                description=f"The request headers are larger than the limit of {self.max_header_bytes} bytes."
            )

    def _announced_length(self, header: str | None) -> int | None:
        """The body length ``Content-Length`` announces (None if it does not); 400 if malformed, 413 if too long."""
        try:
            length = parse_content_length(header)
        except ValueError:
            raise falcon.HTTPInvalidHeader("The value must be a decimal number of bytes.", "Content-Length") from None
        if length is not None and self.max_body_bytes and length > self.max_body_bytes:
            raise body_too_large(self.max_body_bytes)
        return length

    def process_request(self, req: Any, resp: Any) -> None:
        env = req.env
        if self.max_url_length:
            self._check_target(wsgi_target_length(env))
        if self.max_header_bytes:
            self._check_headers(wsgi_header_bytes(env))
        unannounced = self._announced_length(env.get("CONTENT_LENGTH")) is None
        # A WSGI server passes on a body without Content-Length only when it is chunked.
        if unannounced and self.max_body_bytes and "HTTP_TRANSFER_ENCODING" in env:
            req.stream = env["wsgi.input"] = LimitedInput(req.stream, self.max_body_bytes, body_too_large)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        scope = req.scope
        if self.max_url_length:
            self._check_target(asgi_target_length(scope))
        if self.max_header_bytes:
            # scope["headers"] may be a one-shot iterable that falcon has consumed
            # already: count the dict it made of them (or its public, decoded copy).
            self._check_headers(header_bytes(getattr(req, "_asgi_headers", None) or req.headers))
        if self._announced_length(req.get_header("Content-Length")) is None and self.max_body_bytes:
            # falcon builds req.stream lazily from these two (private)
            # attributes: bounding receive bounds every way of reading the body.
            first_event = req._first_event
            already = len(first_event.get("body", b"")) if first_event else 0
            if already > self.max_body_bytes:
                raise body_too_large(self.max_body_bytes)
            if first_event is None or first_event.get("more_body", False):
                # Only a body still on its way needs counting: a GET's (whole, empty) body came with the head.
                req._receive = LimitedReceive(req._receive, self.max_body_bytes, body_too_large, already)


def time_limit(watchdog: Watchdog, seconds: float, retry_after: int) -> ResponderWrapper:
    """A responder decorator: past ``seconds`` the responder is interrupted and the client gets 503 + Retry-After."""

    def decorate(responder: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(responder)
        def limited(req: Any, resp: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return watchdog.call(seconds, responder, req, resp, *args, **kwargs)
            except watchdog.exception:
                log.warning(
                    "responder_timeout",
                    extra={
                        "method": req.method,
                        "path": req.path,
                        "timeout_s": seconds,
                        "request_id": getattr(req.context, "request_id", None),
                    },
                )
                raise falcon.HTTPServiceUnavailable(
                    description=f"The request took longer than {seconds:g} seconds and was stopped; retry later.",
                    retry_after=retry_after,
                ) from None

        return limited

    return decorate
