"""Reading what the logging plugin writes, and a plugin whose routes log, for the logging tests."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

import taskman

Lines = Callable[[], list[dict[str, Any]]]

STANDARD_FIELDS = {"timestamp", "level", "logger", "event", "app_name", "environment"}
ACCESS_FIELDS = {"method", "route", "path", "status_code", "duration_ms", "client_ip", "user_agent", "request_id"}


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines in ``text``; a line that looks like JSON must parse."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


def assert_utc_iso(timestamp: str) -> None:
    assert timestamp.endswith("Z"), timestamp
    parsed = datetime.fromisoformat(timestamp)
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)


class Items:
    def on_get(self, req: Any, resp: Any, item_id: str) -> None:
        structlog.get_logger("probe").info("item_viewed", item_id=item_id)
        logging.getLogger("probe.stdlib").warning("item_viewed_stdlib")
        resp.media = {"id": item_id}


class Boom:
    def on_get(self, req: Any, resp: Any) -> None:
        raise RuntimeError("password=hunter2 while failing")


class Context:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = structlog.contextvars.get_contextvars()

    def on_post(self, req: Any, resp: Any) -> None:
        structlog.contextvars.bind_contextvars(user="alice")
        resp.media = structlog.contextvars.get_contextvars()


class Secrets:
    def on_get(self, req: Any, resp: Any) -> None:
        structlog.get_logger("probe").info(
            "secrets_logged",
            password="hunter2-value",
            headers={"Authorization": "Bearer abc.def.ghi", "Accept": "application/json"},
            url=req.url,
            author="Ada Lovelace",
        )
        logging.getLogger("probe.stdlib").info(
            "dsn postgresql://app:s3cr3t-pw@db/app", extra={"api_key": "k-123456789"}
        )
        resp.media = {}


class LogProbe:
    """Routes that log from sync responders, fail, or report the log context."""

    taskman_plugin_name = "log_probe"

    @taskman.hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/items/{item_id}", Items()), ("/failing", Boom()), ("/context", Context()), ("/secrets", Secrets())]
