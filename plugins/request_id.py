"""request_id: accept a sane ``X-Request-ID`` or mint one, and echo it on every response.

The plain part (:func:`accept_request_id`) knows nothing of Falcon; the
middleware is the thin glue, with native sync and async methods so neither
flavour pays for an adapter.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from taskman import hookimpl

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = logging.getLogger("taskman.request_id")


def accept_request_id(value: str | None) -> tuple[str, bool]:
    """Return ``(request_id, replaced)``: the client's id when sane, else a fresh UUID4."""
    if value is not None and _VALID.fullmatch(value):
        return value, False
    return str(uuid.uuid4()), value is not None


class RequestIdMiddleware:
    def process_request(self, req: Any, resp: Any) -> None:
        request_id, replaced = accept_request_id(req.get_header(HEADER))
        req.context.request_id = request_id
        if replaced:
            # Never log the client's value raw: it failed validation.
            log.info("request_id_replaced", extra={"request_id": request_id})

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        request_id = getattr(req.context, "request_id", None)
        if request_id is not None:
            resp.set_header(HEADER, request_id)

    async def process_request_async(self, req: Any, resp: Any) -> None:
        self.process_request(req, resp)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        self.process_response(req, resp, resource, req_succeeded)


@hookimpl(tryfirst=True)
def taskman_middleware(config: Any) -> list[object]:
    return [RequestIdMiddleware()]
