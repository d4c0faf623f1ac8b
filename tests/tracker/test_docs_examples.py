"""docs/tracker.md's examples, run in order against a fresh app, each answer compared with the one printed.

Each example is an ``http`` block holding a request, followed by one holding
the response.  A printed body may leave fields out; what it prints must be
what the server sends.  Ids the server chooses (``AL-``, ``I-``, ``C-``)
differ on every run: the first time one is printed in a response it is
bound to the id the server sent there, and later requests use the bound id.
``<!-- clock: ... -->`` moves the frozen clock.  Both flavours, both
databases; a meta-test checks that every tracker operation of the OpenAPI
document has an example.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import falcon.testing

from tests.tracker.conftest import Api

DOC = Path(__file__).resolve().parents[2] / "docs" / "tracker.md"
SECTION = "## Every endpoint by example"
START = datetime.datetime(2026, 11, 10, 12, 0, tzinfo=datetime.UTC)

_BLOCK = re.compile(r"^```http\n(.*?)^```$|^<!-- clock: (\S+) -->$", re.M | re.S)
#: Ids the server chooses: bound to what it sent the first time a response prints one.
SERVER_ID = re.compile(r"(?<![A-Za-z0-9_-])(?:AL|I|C)-[A-Za-z0-9_-]{5,47}")


@attrs.frozen
class Message:
    start: str  # "POST /api/v1/projects" or "HTTP/1.1 201 Created"
    headers: tuple[tuple[str, str], ...]
    body: str


@attrs.frozen
class Example:
    request: Message
    response: Message
    clock: datetime.datetime | None  # where the clock is moved before the request, if anywhere


def message(text: str) -> Message:
    head, _, body = text.partition("\n\n")
    start, *lines = head.strip("\n").split("\n")
    headers = tuple((name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines))
    return Message(start.strip(), headers, body.strip())


def examples(text: str) -> list[Example]:
    """The examples of the section, in order: request, response, request, response..."""
    section = text.split(SECTION, 1)[1]
    found: list[Example] = []
    clock: datetime.datetime | None = None
    pending: Message | None = None
    for match in _BLOCK.finditer(section):
        if match.group(2):
            clock = datetime.datetime.fromisoformat(match.group(2))
            continue
        block = message(match.group(1))
        if block.start.startswith("HTTP/"):
            assert pending is not None, f"a response without its request: {block.start}"
            found.append(Example(pending, block, clock))
            pending, clock = None, None
        else:
            assert pending is None, f"two requests in a row: {pending and pending.start}, {block.start}"
            pending = block
    assert pending is None, f"a request without its response: {pending and pending.start}"
    return found


class Bindings:
    """Printed server-chosen ids and the ids this run's server chose."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def substitute(self, text: str) -> str:
        return SERVER_ID.sub(lambda m: self.ids.get(m.group(0), m.group(0)), text)

    def match(self, printed: Any, actual: Any, where: str) -> None:
        """``printed`` must be ``actual``, or a part of it (objects may leave keys out), with ids bound."""
        if isinstance(printed, dict):
            assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
            for key, value in printed.items():
                assert key in actual, f"{where}/{key} is missing from {sorted(actual)}"
                self.match(value, actual[key], f"{where}/{key}")
        elif isinstance(printed, list):
            assert isinstance(actual, list) and len(actual) == len(printed), f"{where}: {actual!r}"
            for index, (one, other) in enumerate(zip(printed, actual, strict=True)):
                self.match(one, other, f"{where}/{index}")
        elif isinstance(printed, str) and SERVER_ID.fullmatch(printed) and printed not in self.ids:
            assert isinstance(actual, str) and actual.split("-")[0] == printed.split("-")[0], f"{where}: {actual!r}"
            assert len(actual) == len(printed), f"{where}: {actual!r} is not shaped like {printed!r}"
            self.ids[printed] = actual
        elif isinstance(printed, str):
            assert actual == self.substitute(printed), f"{where}: {actual!r}, not {printed!r}"
        else:
            # The type too: true is not 1, and 8.0 says the value is a number that may have decimals.
            assert actual == printed and type(actual) is type(printed), f"{where}: {actual!r}, not {printed!r}"


def send(api: Api, request: Message, bindings: Bindings) -> Any:
    method, target = request.start.split(" ", 1)
    path, _, query = bindings.substitute(target).partition("?")
    headers = {name: bindings.substitute(value) for name, value in request.headers}
    body = bindings.substitute(request.body) if request.body else None
    return api.client.simulate_request(method, path, query_string=query, headers=headers, body=body)


def check(result: Any, response: Message, bindings: Bindings, where: str) -> None:
    status = int(response.start.split(" ")[1])
    assert result.status_code == status, f"{where}: {result.status_code}, not {status}: {result.text}"
    if response.body:
        bindings.match(json.loads(response.body), result.json, where)
    else:
        assert not result.content, f"{where}: a body nobody printed: {result.text}"
    for name, value in response.headers:
        assert result.headers.get(name) == bindings.substitute(value), f"{where}: {name}: {result.headers.get(name)}"


def test_the_examples_are_what_the_api_answers(api: Api, clock: Any) -> None:
    clock.move_to(START, tick=False)
    bindings = Bindings()
    found = examples(DOC.read_text())
    for number, example in enumerate(found, 1):
        if example.clock is not None:
            clock.move_to(example.clock, tick=False)
        where = f"example {number} ({example.request.start})"
        check(send(api, example.request, bindings), example.response, bindings, where)


def operation_of(start: str, templates: list[str]) -> str | None:
    method, target = start.split(" ", 1)
    path = target.partition("?")[0]
    for template in templates:
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            return f"{method} {template}"
    return None


def test_every_tracker_operation_has_an_example(make_client: Callable[..., falcon.testing.TestClient]) -> None:
    # The tracker's own operations: the events and webhooks plugins serve theirs under /api/v1 too (docs/events.md).
    client = make_client(environ={"APP_PLUGINS__DISABLE": "webhooks,events"})
    document = client.simulate_get("/api/openapi.json").json
    templates = sorted((p for p in document["paths"] if p.startswith("/api/v1/")), key=lambda p: ("{" in p, p))
    operations = {
        f"{method.upper()} {path}"
        for path in templates
        for method in ("get", "put", "post", "patch", "delete")
        if method in document["paths"][path]
    }
    shown = {operation_of(e.request.start, templates) for e in examples(DOC.read_text())}
    assert sorted(operations - shown) == []
