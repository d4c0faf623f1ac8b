"""request_id: accept a sane ``X-Request-ID`` or mint one, echo it, and bind it into the log context.

The plain part (:func:`accept_request_id`) knows nothing of Falcon; the
middleware is the thin glue, with native sync and async methods so neither
flavour pays for an adapter.  The id is

* kept on ``req.context.request_id`` (the core puts it in problem+json bodies),
* echoed as ``X-Request-ID`` on every response, errors included,
* bound into structlog's context variables for the whole request, so every
  line logged while serving it (structlog or stdlib, through the logging
  plugin) carries ``request_id``, and unbound when the response is done.

It needs no other plugin: without the logging plugin the binding is simply
unused.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import structlog

from taskman import hookimpl, staged

HEADER = "X-Request-ID"
MAX_LENGTH = 128
_VALID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")

log = logging.getLogger("taskman.request_id")


_VERSION_4 = 4 << 76
_VERSION_MASK = ~(0xF << 76)
_VARIANT_RFC_4122 = 0x8 << 60
_VARIANT_MASK = ~(0xC << 60)


def new_request_id() -> str:
    """A random UUID4 in its canonical text form, as ``str(uuid.uuid4())`` gives.

    Minted on every request without an id: building a ``uuid.UUID`` (which
    validates its input) costs twice as much as setting the version and
    variant bits on 128 random bits ourselves.
    """
    bits = int.from_bytes(os.urandom(16)) & _VERSION_MASK & _VARIANT_MASK | _VERSION_4 | _VARIANT_RFC_4122
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def accept_request_id(value: str | None) -> tuple[str, bool]:
    """Return ``(request_id, replaced)``: the client's id when sane, else a fresh UUID4."""
    if value is not None and _VALID.fullmatch(value):
        return value, False
    return new_request_id(), value is not None


class RequestIdMiddleware:
    def process_request(self, req: Any, resp: Any) -> None:
        offered = req.get_header(HEADER)
        request_id, replaced = accept_request_id(offered)
        req.context.request_id = request_id
        req.context.request_id_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        if replaced:
            # Never log the client's value raw: it failed validation.
            log.info("request_id_replaced", extra={"request_id": request_id, "rejected_length": len(offered or "")})

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        request_id = getattr(req.context, "request_id", None)
        if request_id is not None:
            resp.set_header(HEADER, request_id)
        tokens = getattr(req.context, "request_id_tokens", None)
        if tokens is not None:
            req.context.request_id_tokens = None
            try:
                structlog.contextvars.reset_contextvars(**tokens)
            except (ValueError, RuntimeError):  # bound in another context: just drop the key
                structlog.contextvars.unbind_contextvars("request_id")

    async def process_request_async(self, req: Any, resp: Any) -> None:
        self.process_request(req, resp)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)


@hookimpl
def taskman_middleware() -> list[object]:
    # The first observer: whoever answers, and every line logged, carries the id.
    return [staged(RequestIdMiddleware(), "observe", before=("*",))]
