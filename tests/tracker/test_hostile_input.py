"""Hostile input (issue 12): bounded, linear validation; no 500 from any body, query, header or path; no repeated keys.

Every client input gets the right answer or a 4xx problem, stores nothing
and logs no error.  HTTP tests run on both flavours and, with
``TASKMAN_TEST_DATABASE_URL``, on PostgreSQL; the plain-Python tests need
no app.  The one timing assertion of the suite is here: the validation cost
of a worst-case body as a ratio of a typical one of the same size.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from taskman_plugins.tracker import listing, schemas, validation
from taskman_plugins.tracker.errors import Invalid, Malformed
from taskman_plugins.tracker.validation import (
    MAX_DEPTH,
    MAX_PROBLEMS,
    Schema,
    ascii_integer,
    nesting_exceeds,
    parse_json,
    unbounded_arrays,
)

from tests.logcapture import Lines
from tests.tracker.conftest import Api, problem_pointers

#: What ``str.isdigit()`` or ``int()`` take besides ASCII digits: superscript two, circled one, fullwidth five,
#: Arabic-Indic three.
OTHER_DIGITS = ("\u00b2", "\u2460", "\uff15", "\u0663")
PROJECT = {"id": "P-1", "name": "Apollo", "mission": "Land", "owner": "ann"}
TASK = {"id": "T-1", "title": "Write", "project_id": "P-1"}


def assert_nothing_failed(logs: Lines) -> None:
    """No line at error level or above: a refused input is the client's mistake, not the server's."""
    failed = [line for line in logs() if line.get("level") in ("error", "critical")]
    assert not failed, failed


def nested(depth: int, opening: str = "[", closing: str = "]", inner: str = "") -> str:
    return opening * depth + inner + closing * depth


# -- plain Python: parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    "text,key",
    [
        ('{"id": "P-1", "id": "P-2"}', "id"),
        ('{"items": [{"text": "a", "done": true, "text": "b"}]}', "text"),
        ('{"a": {"b": {"c": 1, "c": 1}}}', "c"),  # the same value twice is still a repeated key
        ('{"\\u00e9": 1, "\\u00e9": 2}', "\u00e9"),
    ],
)
def test_a_key_repeated_in_one_object_is_refused_at_any_depth(text: str, key: str) -> None:
    with pytest.raises(Malformed) as refused:
        parse_json(text.encode())
    assert json.dumps(key) in str(refused.value)


def test_the_same_key_in_different_objects_is_fine() -> None:
    assert parse_json(b'{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]}')["c"][1] == {"x": 4}


def test_nesting_is_refused_past_max_depth_whatever_the_depth() -> None:
    """Every depth up to past the parser's own limit: either parsed (up to MAX_DEPTH) or Malformed, nothing else."""
    limit = sys.getrecursionlimit()
    for depth in [*range(1, 80), *range(80, limit + 200, 7), 10 * limit]:
        for text in (nested(depth), nested(depth, '{"a": ', "}", "1")):
            if depth <= MAX_DEPTH:
                assert not nesting_exceeds(parse_json(text), MAX_DEPTH)
            else:
                with pytest.raises(Malformed, match="deeper than"):
                    parse_json(text)


def test_the_nesting_check_holds_with_little_stack_left() -> None:
    """Called with the stack nearly used up (a busy server's), a deep body is still a Malformed, not a crash."""

    def at_depth(frames: int, call: Callable[[], Any]) -> Any:
        return call() if frames <= 0 else at_depth(frames - 1, call)

    spare = 40
    for depth in (MAX_DEPTH + 1, 200, sys.getrecursionlimit() - 2 * spare):
        body = nested(depth, '{"a": ', "}", "1").encode()
        with pytest.raises(Malformed):
            at_depth(sys.getrecursionlimit() - spare - len(_frames()), lambda b=body: parse_json(b))


def _frames() -> list[Any]:
    import inspect

    return inspect.stack(0)


def test_numbers_json_does_not_have_and_bad_text_are_malformed() -> None:
    for text in (b"NaN", b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": ' + b"9" * 5000 + b"}", b"\xff", b'{"a"'):
        with pytest.raises(Malformed, match="not valid JSON"):
            parse_json(text)


@pytest.mark.parametrize(
    "text,expected",
    [("0", 0), ("7", 7), ("007", 7), ("200", 200), ("9" * 18, int("9" * 18))]
    + [(bad, None) for bad in (*OTHER_DIGITS, "", "+5", "-5", " 5", "5 ", "1_0", "0x10", "5.0", "1e3", "9" * 19)],
)
def test_only_ascii_digits_are_an_integer(text: str, expected: int | None) -> None:
    assert ascii_integer(text) == expected


# -- plain Python: bounded, linear validation ----------------------------------------


def request_schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for resource in schemas.RESOURCES.values():
        found[f"{resource.name} create"] = resource.create_schema()
        found[f"{resource.name} patch"] = resource.patch_schema()
        found[f"{resource.name} output"] = resource.output_schema()
    actions = ("STATUS_CHANGE", "SPRINT_START", "SPRINT_CLOSE", "ITEM_PATCH", "ITEM_REORDER", "ACTION_ITEM")
    for name in (*actions, "BURNDOWN"):
        found[name] = getattr(schemas, name)
    return found


def test_every_tracker_schema_bounds_its_arrays_and_types_their_items() -> None:
    for name, schema in request_schemas().items():
        assert list(unbounded_arrays(schema)) == [], name
        Schema(schema)


@pytest.mark.parametrize(
    "array",
    [
        {"type": "array", "items": {"type": "string"}},  # no maxItems
        {"type": "array", "maxItems": 5},  # no items
        {"type": "array", "maxItems": 5, "items": {"minLength": 1}},  # items of any type
        {"type": ["array", "null"], "items": {"type": "string"}},
    ],
)
def test_a_schema_with_an_unbounded_array_is_refused_when_built(array: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="maxItems"):
        Schema({"type": "object", "properties": {"deep": {"type": "object", "properties": {"list": array}}}})


def test_long_arrays_and_wrong_elements_are_refused_before_jsonschema_runs() -> None:
    project = Schema(schemas.PROJECT.create_schema())
    assert {p.pointer: p.detail for p in project.problems({**PROJECT, "tags": [{"k": i} for i in range(3000)]})} == {
        "/tags": "must have at most 100 items"
    }
    wrong = {p.pointer: p.detail for p in project.problems({**PROJECT, "tags": [1, "ok", {"a": 1}, None, True]})}
    assert wrong == {f"/tags/{i}": "must be of type string" for i in (0, 2, 3, 4)}
    items = Schema(schemas.ACTION_LIST.create_schema())
    too_many = items.problems({"title": "t", "items": [{"text": "x"}] * (schemas.MAX_ACTION_ITEMS + 1)})
    assert [(p.pointer, p.detail) for p in too_many] == [("/items", "must have at most 500 items")]
    assert [p.pointer for p in items.problems({"title": "t", "items": [{"text": "x"}, "x", [1]]})] == [
        "/items/1",
        "/items/2",
    ]


def test_integers_are_written_as_integers() -> None:
    reorder = Schema(schemas.ITEM_REORDER)
    assert reorder.problems({"order": [1, 0]}) == []
    for bad in ([1.0, 0], [True, 0], [0.5, 0], [10**30, 0], [-1, 0], ["0", 0]):
        assert [p.pointer for p in reorder.problems({"order": bad})] == ["/order/0"], bad


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3, allow_nan=False).map(round) | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=8,
)


@given(st.lists(JSON_VALUES, max_size=6))
def test_unique_items_means_what_json_schema_says(values: list[Any]) -> None:
    """The linear ``uniqueItems`` agrees with jsonschema's own: 1 equals 1.0, true is not 1, objects by content."""
    ours = validation._Validator({"uniqueItems": True}).is_valid(values)
    assert ours == Draft202012Validator({"uniqueItems": True}).is_valid(values)


def test_a_body_with_countless_problems_lists_the_first_ones() -> None:
    body = {**PROJECT, **{f"unknown_{i:05d}": i for i in range(10_000)}}
    problems = Schema(schemas.PROJECT.create_schema()).problems(body)
    assert len(problems) == MAX_PROBLEMS
    with pytest.raises(Invalid, match=f"first {MAX_PROBLEMS} problems"):
        Schema(schemas.PROJECT.create_schema()).check(body)


def fill(size: int, make: Callable[[int], Any]) -> bytes:
    """``make(n)`` as JSON for the largest ``n`` that keeps it within ``size`` bytes.

    The bound is found by doubling first: no candidate is much larger than
    ``size`` (a search from ``n = size`` once serialised megabytes, 16 s of work).
    """
    low, high = 1, 2
    while len(json.dumps(make(high))) <= size:
        low, high = high, high * 2
    while low < high - 1:
        middle = (low + high) // 2
        if len(json.dumps(make(middle))) <= size:
            low = middle
        else:
            high = middle
    return json.dumps(make(low)).encode()


def test_validation_cost_stays_linear_worst_case_against_typical() -> None:
    """What a request body costs to read and validate, for bodies built to be expensive, against a typical one.

    All are 64 KiB.  The typical body is the most work a valid one makes
    (an action list with the most items it may have); the others pile up
    what once cost quadratic time or deep recursion: 3,000 distinct objects
    in ``tags`` took 10 s at 43 KB.  Each cost is the best of several
    interleaved rounds (a loaded machine slows a round, never speeds one
    up), and the bound is generous: linear costs stay within a small
    multiple, a quadratic one is thousands of times over.
    """
    size = 64 * 1024
    project = Schema(schemas.PROJECT.create_schema())
    task = Schema(schemas.TASK.create_schema())
    action_list = Schema(schemas.ACTION_LIST.create_schema())
    reorder = Schema(schemas.ITEM_REORDER)
    most = schemas.MAX_ACTION_ITEMS
    typical = (action_list, fill(size, lambda n: {"title": "t", "items": [{"text": "x" * (n // most + 1)}] * most}))
    worst = {
        "tags: distinct objects": (project, fill(size, lambda n: {**PROJECT, "tags": [{"k": i} for i in range(n)]})),
        "tags: distinct strings": (project, fill(size, lambda n: {**PROJECT, "tags": [f"t{i}" for i in range(n)]})),
        "depends_on: arrays": (task, fill(size, lambda n: {**TASK, "depends_on": [[i] for i in range(n)]})),
        "items: too many": (action_list, fill(size, lambda n: {"title": "t", "items": [{"text": "x"}] * n})),
        "items: unknown fields": (
            action_list,
            fill(size, lambda n: {"title": "t", "items": [{"text": "x", **{f"u{j}": 0 for j in range(n)}}] * most}),
        ),
        "order: floats": (reorder, fill(size, lambda n: {"order": [float(i) for i in range(n)]})),
        "unknown fields": (project, fill(size, lambda n: {**PROJECT, **{f"k{i}": i for i in range(n)}})),
        "NUL everywhere": (project, fill(size, lambda n: {**PROJECT, **{f"k{i}": "\x00" for i in range(n)}})),
        "nested to the limit": (
            project,
            fill(size, lambda n: {**PROJECT, "tags": [json.loads(nested(MAX_DEPTH - 2))] * n}),
        ),
        "nested past the limit": (
            project,
            fill(size, lambda n: {**PROJECT, "tags": [json.loads(nested(MAX_DEPTH - 1))] * n}),
        ),
        "empty arrays": (project, fill(size, lambda n: {**PROJECT, "x": [[]] * n})),
    }

    def cost(schema: Schema, raw: bytes) -> float:
        started = time.perf_counter()
        with contextlib.suppress(Malformed):
            schema.problems(parse_json(raw))
        return time.perf_counter() - started

    best = dict.fromkeys(["typical", *worst], float("inf"))
    for _ in range(5):
        best["typical"] = min(best["typical"], cost(*typical))
        for name, case in worst.items():
            best[name] = min(best[name], cost(*case))
    assert all(size * 0.9 < len(raw) <= size for _, raw in [typical, *worst.values()])
    ratios = {name: round(best[name] / best["typical"], 2) for name in worst}
    assert max(ratios.values()) <= 10, ratios


# -- plain Python: cursors ----------------------------------------------------------------


@pytest.mark.parametrize("value", [10**30, -(2**63) - 1, 2**63, 3])
def test_cursor_numbers_are_compared_as_the_floats_the_columns_hold(value: int) -> None:
    """An SQLite integer stops at 2**63: a forged 10**30 once overflowed there (a 500)."""
    decoded = listing.decode_cursor(listing.encode_cursor([value], "f"), "f", ["number"])
    assert decoded == [float(value)] and type(decoded[0]) is float


def forged(fingerprint: str, values: list[Any] | str) -> str:
    raw = values if isinstance(values, str) else json.dumps([fingerprint, values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "values,kinds",
    [
        ('["f", [1e400]]', ["number"]),  # json reads 1e400 as inf
        ('["f", [NaN]]', ["number"]),
        ('["f", [Infinity]]', ["number"]),
        ('["f", [' + "9" * 400 + "]]", ["number"]),  # no float holds it
        ('["f", [true]]', ["number"]),
        ('["f", ["2026-11-10T12:00:00+05:00"]]', ["datetime"]),  # cursors hold naive UTC
        ('["f", ["10000-01-01T00:00:00"]]', ["datetime"]),
        ('["f", ["0000-01-01"]]', ["date"]),
        ('["f", ["a\\u0000"]]', ["text"]),
        ('["f", [1]]', ["flag"]),
    ],
)
def test_forged_cursor_values_are_refused(values: str, kinds: list[str]) -> None:
    with pytest.raises(listing.BadQuery):
        listing.decode_cursor(forged("f", values), "f", kinds)


# -- over HTTP: bodies ----------------------------------------------------------------------


def test_arrays_over_their_bound_are_refused_at_once_and_store_nothing(api: Api, logs: Lines) -> None:
    result = api.post("/projects", {**PROJECT, "tags": [{"k": i} for i in range(3000)]})
    assert problem_pointers(result) == {"/tags": "must have at most 100 items"}
    result = api.post("/projects", {**PROJECT, "tags": [1, "ok", {"a": 1}]})
    assert problem_pointers(result) == {"/tags/0": "must be of type string", "/tags/2": "must be of type string"}
    assert problem_pointers(api.post("/projects", {**PROJECT, "tags": ["a", "a"]})) == {
        "/tags": "must not repeat an item"
    }
    assert api.get("/projects").json["items"] == []
    assert_nothing_failed(logs)


@pytest.mark.parametrize(
    "text,key",
    [
        ('{"id": "P-1", "id": "P-2", "name": "n", "mission": "m", "owner": "o"}', "id"),
        ('{"id": "P-1", "name": "n", "mission": "m", "owner": "o", "tags": [], "tags": ["x"]}', "tags"),
    ],
)
def test_a_repeated_key_is_a_400_naming_it(api: Api, logs: Lines, text: str, key: str) -> None:
    result = api.client.simulate_post("/api/v1/projects", body=text, headers={"content-type": "application/json"})
    assert result.status_code == 400, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert f'repeats the key "{key}"' in result.json["detail"]
    assert api.get("/projects").json["items"] == []
    assert_nothing_failed(logs)


def test_repeated_keys_are_refused_on_every_kind_of_write(api: Api) -> None:
    api.project()
    api.task()
    list_id = api.created("/action-lists", {"title": "Retro", "items": [{"text": "a"}]})["id"]
    json_type = {"content-type": "application/json"}
    sends = [
        ("PATCH", "/tasks/T-1", '{"title": "a", "title": "b"}'),
        ("POST", "/tasks/T-1/status", '{"status": "ready", "status": "dropped"}'),
        ("POST", "/action-lists", '{"title": "x", "items": [{"text": "a", "text": "b"}]}'),
        ("POST", f"/action-lists/{list_id}/items", '{"text": "a", "done": false, "done": true}'),
        ("PATCH", f"/action-lists/{list_id}/items/0", '{"done": true, "done": false}'),
        ("POST", f"/action-lists/{list_id}/items/reorder", '{"order": [0], "order": [0]}'),
    ]
    for method, path, text in sends:
        result = api.client.simulate_request(method, "/api/v1" + path, body=text, headers=json_type)
        assert result.status_code == 400 and "repeats the key" in result.json["detail"], (path, result.text)
    assert api.get("/tasks/T-1").json["version"] == 1
    assert api.get(f"/action-lists/{list_id}").json["version"] == 1


DEPTHS = [MAX_DEPTH + 1, 100, 500, 900, 940, 950, 960, 965, 970, 975, 980, 985, 990, 995, 1000, 1100, 5000]


def test_deep_nesting_is_a_400_at_every_depth(api: Api, logs: Lines) -> None:
    """Past MAX_DEPTH, and across the band just under the parser's own limit that once ended in a 500."""
    api.project()
    json_type = {"content-type": "application/json"}
    for depth in DEPTHS:
        bodies = [
            nested(depth),
            nested(depth, '{"a": ', "}", "1"),
            json.dumps(TASK)[:-1] + ', "labels": ' + nested(depth) + "}",
            json.dumps(TASK)[:-1] + ', "labels": [' + nested(depth - 1, '{"a": ', "}", "1") + "]}",
        ]
        for body in bodies:
            headers = {**json_type, "Idempotency-Key": f"deep-{depth}"}
            result = api.client.simulate_post("/api/v1/tasks", body=body, headers=headers)
            assert result.status_code == 400, (depth, result.status_code, result.text[:200])
            assert "deeper than" in result.json["detail"]
    assert api.get("/tasks").json["items"] == []
    assert_nothing_failed(logs)


def test_reorder_takes_integer_indexes_only(api: Api, logs: Lines) -> None:
    list_id = api.created("/action-lists", {"title": "Retro", "items": [{"text": "a"}, {"text": "b"}]})["id"]
    for order in ([1.0, 0.0], [True, False], [1, 0.0], [10**30, 0]):
        result = api.post(f"/action-lists/{list_id}/items/reorder", {"order": order})
        assert result.status_code == 422, (order, result.text)
        assert "/order/0" in problem_pointers(result) or "/order/1" in problem_pointers(result)
    assert api.get(f"/action-lists/{list_id}").json["version"] == 1
    assert api.post(f"/action-lists/{list_id}/items/reorder", {"order": [1, 0]}).status_code == 200
    assert_nothing_failed(logs)


# -- over HTTP: query parameters, headers, path parameters ----------------------------------------


# Other scripts' digits, Python's int() spellings, more digits than int() converts, floats, blanks, out of range.
BAD_LIMITS = [*OTHER_DIGITS, "1" * 4400, "+5", " 5", "5 ", "1_0", "0x10", "5.0", "1e400", "NaN", "", "0", "201", "-1"]


def test_limit_is_ascii_digits_from_1_to_200(api: Api, logs: Lines) -> None:
    for limit in BAD_LIMITS:
        for path in ("/projects", "/sprints", "/tasks", "/action-lists"):
            result = api.get(path, params={"limit": limit})
            assert result.status_code == 400, (limit, path, result.text)
            assert result.json["errors"] == [{"parameter": "limit", "detail": "must be an integer from 1 to 200"}]
    assert api.get("/tasks", params={"limit": "007"}).status_code == 200
    assert_nothing_failed(logs)


BAD_FILTERS = [
    ("due_before", "0000-01-01"),
    ("due_before", "10000-01-01"),
    ("due_after", "9999-12-31T23:59:59-23:59"),
    ("updated_since", "0001-01-01T00:00:00+23:59"),
    ("updated_since", "\uff12\uff10\uff12\uff16-01-01"),
    ("updated_since", "1e400"),
    ("due_after", "NaN"),
    ("status", "new" * 1000),
    ("q", "x" * 201),
    ("owner", "a\x00b"),
    ("sort", "-" * 500),
]


def test_bad_filter_values_are_400s(api: Api, logs: Lines) -> None:
    for name, value in BAD_FILTERS:
        result = api.get("/tasks", params={name: value})
        assert result.status_code == 400, (name, value[:20], result.text)
        assert result.json["errors"][0]["parameter"] == name
    assert_nothing_failed(logs)


def test_forged_cursors_get_the_right_page_or_a_400(api: Api, logs: Lines) -> None:
    api.project()
    for n in range(3):
        api.task(f"T-{n}", estimate_points=n)
    page = api.get("/tasks", params={"sort": "estimate_points", "limit": "1"}).json
    given, values = json.loads(base64.urlsafe_b64decode(page["next_cursor"] + "=="))
    assert values[0] is False and values[-1] == "T-0"

    def walk_from(number: Any) -> Any:
        cursor = forged(given, [False, number, "T-0"])
        return api.get("/tasks", params={"sort": "estimate_points", "limit": "1", "cursor": cursor})

    assert walk_from(10**30).json["items"] == []  # after everything: no overflow on SQLite
    assert [t["id"] for t in walk_from(-(10**30)).json["items"]] == ["T-0"]
    for bad in ("9" * 400, "1e400", "NaN", "Infinity", "true"):
        cursor = forged(given, f'["{given}", [false, {bad}, "T-0"]]')
        result = api.get("/tasks", params={"sort": "estimate_points", "limit": "1", "cursor": cursor})
        assert result.status_code == 400 and result.json["errors"][0]["parameter"] == "cursor", bad
    assert_nothing_failed(logs)


def test_cascade_is_true_or_false(api: Api) -> None:
    api.project()
    for value in ("\uff11", "TRUE", "1", "true " * 100):
        result = api.delete("/projects/P-1", params={"cascade": value})
        assert result.status_code == 400 and result.json["errors"][0]["parameter"] == "cascade"
    assert api.get("/projects/P-1").status_code == 200


def test_if_match_with_huge_numbers_is_a_412(api: Api, logs: Lines) -> None:
    api.project()
    for if_match in ('"' + "9" * 18 + '"', '"' + "9" * 19 + '"', '"' + "9" * 5000 + '"', 'W/"99999999999999999999"'):
        assert api.patch("/projects/P-1", {"name": "x"}, headers={"If-Match": if_match}).status_code == 412
        assert api.delete("/projects/P-1", headers={"If-Match": if_match}).status_code == 412
        assert api.get("/projects/P-1", headers={"If-None-Match": if_match}).status_code == 200
    assert api.get("/projects/P-1").json["version"] == 1
    assert_nothing_failed(logs)


LONG = "a" * 400


def test_over_long_ids_in_paths_are_404s_on_every_route_even_with_an_idempotency_key(api: Api, logs: Lines) -> None:
    """On PostgreSQL a 400-character id once reached a 300-character column (DataError, 500)."""
    key = {"Idempotency-Key": "long-id"}
    posts = [
        (f"/sprints/S-{LONG}/start", {}),
        (f"/sprints/S-{LONG}/close", {}),
        (f"/tasks/T-{LONG}/status", {"status": "ready"}),
        (f"/action-lists/AL-{LONG}/items", {"text": "x"}),
        (f"/action-lists/AL-{LONG}/items/reorder", {"order": []}),
        (f"/action-lists/AL-{LONG}/complete", None),
    ]
    for path, body in posts:
        assert api.post(path, body, headers=key).status_code == 404, path
    for thing in ("projects/P-", "sprints/S-", "tasks/T-", "action-lists/AL-"):
        path = f"/{thing}{LONG}"
        assert api.get(path).status_code == 404
        assert api.patch(path, {"title": "x"}).status_code == 404
        assert api.delete(path).status_code == 404
    for path in (f"/projects/P-{LONG}/metrics", f"/projects/P-{LONG}/velocity", f"/sprints/S-{LONG}/burndown"):
        assert api.get(path).status_code == 404
    assert api.patch(f"/action-lists/AL-{LONG}/items/0", {"done": True}).status_code == 404
    assert api.delete(f"/action-lists/AL-{LONG}/items/0").status_code == 404
    assert_nothing_failed(logs)


def test_an_item_index_is_ascii_digits(api: Api, logs: Lines) -> None:
    """Falcon's int converter takes what int() takes (other scripts' digits, "+0", "0_0", "-0"); here only ASCII."""
    list_id = api.created("/action-lists", {"title": "Retro", "items": [{"text": "a"}]})["id"]
    for index in ("\uff15", "\u0663", "+0", "0_0", " 0", "9" * 5000, "-0"):
        path = f"/action-lists/{list_id}/items/{index}"
        assert api.patch(path, {"done": True}).status_code == 404, index
        assert api.delete(path).status_code == 404, index
    assert [(i["text"], i["done"]) for i in api.get(f"/action-lists/{list_id}").json["items"]] == [("a", False)]
    assert_nothing_failed(logs)


def test_the_first_and_last_days_of_the_calendar_are_served(api: Api, logs: Lines) -> None:
    """Dates at the ends of what a date holds: the midnight after 9999-12-31 overflowed in the burndown (a 500)."""
    api.project(start_date="0001-01-01", target_end_date="9999-12-31")
    api.sprint("S-end", start_date="9999-12-20", end_date="9999-12-31")
    api.sprint("S-first", start_date="0001-01-01", end_date="0001-12-31")
    api.task("T-end", sprint_id="S-end", estimate_points=5, due_at="9999-12-31T23:59:59Z")
    api.task("T-first", due_at="0001-01-01T00:00:00Z", estimate_points=1)
    for sprint in ("S-end", "S-first"):
        report = api.get(f"/sprints/{sprint}/burndown")
        assert report.status_code == 200, report.text
    assert len(api.get("/sprints/S-first/burndown").json["series"]) == schemas.MAX_SERIES_DAYS
    assert api.post("/sprints/S-end/start").status_code == 200
    api.done("T-end")
    assert api.get("/sprints/S-end/burndown").json["completed_points"] == 5
    assert api.post("/sprints/S-end/close").status_code == 200
    closed = api.get("/sprints/S-end/burndown")
    assert closed.status_code == 200 and closed.json["status"] == "closed"
    assert api.get("/projects/P-1/velocity").status_code == 200
    assert api.get("/projects/P-1/metrics").status_code == 200
    for name, value in (("due_before", "9999-12-31"), ("due_after", "0001-01-01"), ("updated_since", "0001-01-01")):
        assert api.get("/tasks", params={name: value}).status_code == 200
    for sort, ids in (("due_at", ["T-first", "T-end"]), ("-due_at", ["T-end", "T-first"])):
        assert [t["id"] for t in api.get("/tasks", params={"sort": sort}).json["items"]] == ids
    for bad in ("9999-12-31T23:59:59-00:01", "0001-01-01T00:00:00+00:01"):  # a year 10000 or 0 in UTC
        assert problem_pointers(api.patch("/tasks/T-first", {"due_at": bad})) == {
            "/due_at": "must be an RFC 3339 date-time"
        }
    assert_nothing_failed(logs)
