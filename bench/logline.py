"""Cost of one ``request_completed`` line: ``python -m bench.logline``.

Runs the real pipeline (JSON renderer, the redaction processor) into a
stream that discards its input, with a request id bound in the context, and
prints microseconds per line: the line alone, and the access middleware's
whole per-request work (timing, context snapshot and clean-up included).
"""

from __future__ import annotations

import io
import timeit
from types import SimpleNamespace
from typing import Any

import structlog

# taskman_plugins is mapped from plugins/: not found from an editable install, untyped from a wheel.
from taskman_plugins.logging.middleware import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
    AccessLogMiddleware,
    access_fields,
)
from taskman_plugins.logging.pipeline import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
    configure_logging,
)
from taskman_plugins.redaction.redactor import Redactor  # type: ignore[import-not-found,import-untyped,unused-ignore]


class _Discard(io.StringIO):
    def write(self, text: str) -> int:
        return len(text)


def _fields() -> dict[str, Any]:
    fields: dict[str, Any] = access_fields(
        method="GET",
        route="/tasks/{task_id}",
        path="/tasks/42",
        status_code=200,
        duration_ms=1.2345,
        client_ip="10.1.2.3",
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        request_id=None,
    )
    return fields


def measure(number: int = 20000, repeat: int = 5, *, redaction: bool = True) -> dict[str, float]:
    """Best-of-``repeat`` microseconds per line and per request."""
    configure_logging(
        format="json",
        level="info",
        static={"app_name": "taskman", "environment": "production"},
        processors=[Redactor()] if redaction else [],
        stream=_Discard(),
    )
    log = structlog.get_logger("taskman.access")
    fields = _fields()
    structlog.contextvars.bind_contextvars(request_id="5b7c1f0e-0f7e-4a51-9a47-2f5d2f0c9b11")
    try:
        line = min(timeit.repeat(lambda: log.info("request_completed", **fields), number=number, repeat=repeat))
        middleware = AccessLogMiddleware()
        req = SimpleNamespace(
            method="GET",
            uri_template="/tasks/{task_id}",
            path="/tasks/42",
            remote_addr="10.1.2.3",
            user_agent=fields["user_agent"],
            context=SimpleNamespace(request_id="5b7c1f0e-0f7e-4a51-9a47-2f5d2f0c9b11"),
        )
        resp = SimpleNamespace(status_code=200)

        def one_request() -> None:
            middleware.process_request(req, resp)
            middleware.process_response(req, resp, None, True)

        request = min(timeit.repeat(one_request, number=number, repeat=repeat))
    finally:
        structlog.contextvars.clear_contextvars()
    return {"line_us": line / number * 1e6, "request_us": request / number * 1e6}


def main() -> None:
    for redaction in (True, False):
        result = measure(redaction=redaction)
        label = "logging+redaction" if redaction else "logging only     "
        print(
            f"{label}: {result['line_us']:.1f} us per request_completed line, "
            f"{result['request_us']:.1f} us per request (access middleware)"
        )


if __name__ == "__main__":
    main()
