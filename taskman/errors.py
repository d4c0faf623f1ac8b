"""RFC 9457 problem details for every error the app returns.

Falcon's own errors (404, 405, 400 malformed JSON, 415, 413...) go through
:func:`serialize_problem`; unexpected exceptions become a 500 that reveals
nothing; database outages become a 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import falcon

from taskman.status import status_phrase

PROBLEM_CONTENT_TYPE = "application/problem+json"

log = logging.getLogger("taskman.errors")

_DEFAULT_DETAILS = {
    400: "The request could not be understood.",
    404: "No resource matches this path.",
    405: "This resource does not support the request method.",
    413: "The request body is too large.",
    415: "The request body's media type is not supported.",
    422: "The request is well-formed but its content is invalid.",
    500: "An unexpected error occurred. It has been logged; quote the request_id when reporting it.",
    503: "The service is temporarily unavailable; retry later.",
}


class ValidationProblem(falcon.HTTPError):
    """422 with ``errors: [{pointer, detail}]``, each pointer a JSON Pointer (RFC 6901)."""

    def __init__(self, errors: Iterable[Mapping[str, str]], detail: str | None = None) -> None:
        self.errors = [{"pointer": e["pointer"], "detail": e["detail"]} for e in errors]
        super().__init__(falcon.HTTP_422, description=detail or "The request body failed validation.")

    def extensions(self) -> dict[str, Any]:
        return {"errors": self.errors}


def request_id_of(req: falcon.Request) -> str:
    """The request's id as set by the request_id plugin, or a fresh one."""
    rid = getattr(req.context, "request_id", None)
    if not rid:
        rid = str(uuid.uuid4())
        req.context.request_id = rid
    return str(rid)


def problem_document(req: falcon.Request, error: falcon.HTTPError) -> dict[str, Any]:
    status = error.status_code
    phrase = status_phrase(status)
    request_id = request_id_of(req)
    doc: dict[str, Any] = {
        "type": getattr(error, "type_uri", None) or "about:blank",
        "title": phrase,
        "status": status,
        "detail": error.description or _DEFAULT_DETAILS.get(status, phrase),
        # A 5xx names the occurrence, never the path (which may carry data).
        "instance": req.path if status < 500 else f"urn:taskman:request:{request_id}",
        "request_id": request_id,
    }
    extensions = getattr(error, "extensions", None)
    if callable(extensions):
        doc.update(extensions())
    return doc


def render_problem(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    resp.status = f"{error.status_code} {status_phrase(error.status_code)}"
    if error.headers:
        resp.set_headers(error.headers)
    resp.content_type = PROBLEM_CONTENT_TYPE
    resp.data = json.dumps(problem_document(req, error)).encode()


def serialize_problem(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon error serializer: every ``HTTPError`` becomes problem+json."""
    render_problem(req, resp, error)


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    log.error(
        "request_failed",
        exc_info=ex,
        extra={"method": req.method, "path": req.path, "request_id": request_id_of(req)},
    )
    render_problem(req, resp, falcon.HTTPInternalServerError())


class DatabaseUnavailableHandler:
    """503 + ``Retry-After`` when the database is unreachable, timing out or out of connections."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after

    def __call__(self, req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        log.warning(
            "database_unavailable",
            extra={"error": type(ex).__name__, "path": req.path, "request_id": request_id_of(req)},
        )
        render_problem(
            req,
            resp,
            falcon.HTTPServiceUnavailable(
                description="The database is unavailable; retry later.", retry_after=self.retry_after
            ),
        )


def _as_async(handler: Any) -> Any:
    async def handle(req: Any, resp: Any, ex: Exception, params: dict[str, Any]) -> None:
        handler(req, resp, ex, params)

    return handle


def install(app: Any, *, asgi: bool, retry_after: int, unavailable: tuple[type[Exception], ...]) -> None:
    """Wire problem details into ``app`` for both flavours."""
    app.set_error_serializer(serialize_problem)
    wrap = _as_async if asgi else (lambda h: h)
    app.add_error_handler(Exception, wrap(_unexpected))
    app.add_error_handler(unavailable, wrap(DatabaseUnavailableHandler(retry_after)))
