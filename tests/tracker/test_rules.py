"""The tracker's plain-Python parts, without Falcon: rules, reports, cursors, validation, transactions."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskman_plugins.tracker import analytics, listing
from taskman_plugins.tracker.action_lists import reorder
from taskman_plugins.tracker.errors import BadQuery, Invalid
from taskman_plugins.tracker.schemas import RESOURCES, TASK
from taskman_plugins.tracker.store import Store
from taskman_plugins.tracker.tasks import TERMINAL, TRANSITIONS, transition_problem
from taskman_plugins.tracker.validation import Schema, parse_date_time, pointer

from tests.conftest import database_for


def test_the_transition_table_is_the_earlier_versions() -> None:
    assert {"done", "dropped"} == TERMINAL
    assert transition_problem("new", "ready") is None
    problem = transition_problem("blocked", "done")
    assert problem is not None and problem.pointer == "/status"
    assert problem.detail == "cannot move from blocked to done; allowed from blocked: in_progress, dropped"
    assert "terminal" in (transition_problem("done", "new") or pytest.fail()).detail
    assert all(target in TRANSITIONS for moves in TRANSITIONS.values() for target in moves)


@pytest.mark.parametrize(
    ("counts", "health"),
    [
        ({}, "green"),
        ({"done": 3, "new": 7}, "green"),
        ({"done": 2, "new": 8}, "yellow"),  # under 30% complete
        ({"done": 5, "blocked": 2, "new": 3}, "yellow"),  # exactly 20% blocked: not red, but above 10%
        ({"done": 5, "blocked": 2, "new": 2}, "red"),
        ({"done": 8, "blocked": 1, "new": 0}, "yellow"),  # 11% blocked
    ],
)
def test_project_health(counts: dict[str, int], health: str) -> None:
    metrics = analytics.project_metrics(counts)
    assert metrics["health_status"] == health
    assert metrics["total_tasks"] == sum(counts.values())
    assert 0 <= analytics.health_score(metrics) <= 100


def test_burndown_counts_days_inclusively_and_stops_today() -> None:
    start, end = datetime.date(2026, 11, 2), datetime.date(2026, 11, 11)
    done_day2 = datetime.datetime(2026, 11, 3, 15)
    report = analytics.burndown(start, end, datetime.date(2026, 11, 4), [(4.0, done_day2), (6.0, None)])
    assert (report["days_total"], report["days_elapsed"], report["days_remaining"]) == (10, 3, 7)
    assert [d["remaining_points"] for d in report["series"]] == [10.0, 6.0, 6.0]
    assert report["ideal_burndown_rate"] == 1.0 and report["actual_burndown_rate"] == round(4 / 3, 4)
    assert report["on_track"] is True
    before = analytics.burndown(start, end, datetime.date(2026, 10, 1), [(1.0, None)])
    assert before["days_elapsed"] == 0 and before["on_track"] is True
    assert [d["date"] for d in before["series"]] == ["2026-11-02"]  # the first day, as of now
    after = analytics.burndown(start, end, datetime.date(2027, 1, 1), [(1.0, None)])
    assert after["days_elapsed"] == 10 and after["on_track"] is False


def test_velocity_averages_completed_points() -> None:
    report = analytics.velocity(
        [
            {"id": "S-1", "name": "a", "end_date": "2026-01-01", "committed_points": 10.0, "completed_points": 8.0},
            {"id": "S-2", "name": "b", "end_date": "2026-01-15", "committed_points": None, "completed_points": None},
        ]
    )
    assert report["average_completed_points"] == 4.0
    assert report["sprints"][1]["completed_points"] == 0.0


@given(st.lists(st.integers(), max_size=8).map(lambda xs: list(range(len(xs)))), st.randoms())
def test_reorder_accepts_exactly_the_permutations(indexes: list[int], random: Any) -> None:
    items = [{"text": str(i), "done": False} for i in indexes]
    order = list(indexes)
    random.shuffle(order)
    assert [item["text"] for item in reorder(items, order)] == [str(i) for i in order]
    with pytest.raises(Invalid):
        reorder(items, [*order, len(order)])


def test_cursors_are_opaque_and_bound_to_their_query() -> None:
    when = datetime.datetime(2026, 11, 26, 12, 0, 0, 123456)
    cursor = listing.encode_cursor([when, "T-1"], "abc")
    assert listing.decode_cursor(cursor, "abc", ["datetime", "text"]) == [when, "T-1"]
    for bad_fingerprint, kinds in (("other", ["datetime", "text"]), ("abc", ["text"]), ("abc", ["number", "text"])):
        with pytest.raises(BadQuery):
            listing.decode_cursor(cursor, bad_fingerprint, kinds)
    for garbage in ("", "!!!", "e30", "W10"):
        with pytest.raises(BadQuery):
            listing.decode_cursor(garbage, "abc", ["text"])


def test_date_times_need_an_offset_and_become_naive_utc() -> None:
    assert parse_date_time("2026-11-26T14:00:00+02:00") == datetime.datetime(2026, 11, 26, 12, 0)
    assert parse_date_time("2026-11-26t12:00:00.5z") == datetime.datetime(2026, 11, 26, 12, 0, 0, 500000)
    for bad in ("2026-11-26T12:00:00", "2026-11-26", "26/11/2026 12:00", "2026-02-30T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_date_time(bad)


def test_pointers_escape_per_rfc_6901() -> None:
    assert pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    assert pointer([]) == ""


def test_every_schema_is_valid_json_schema_and_patches_need_no_field() -> None:
    for resource in RESOURCES.values():
        Schema(resource.create_schema())
        assert Schema(resource.patch_schema()).problems({}) == []
        Schema(resource.output_schema())
    assert Schema(TASK.patch_schema()).problems({"due_at": None}) == []
    assert [p.pointer for p in Schema(TASK.patch_schema()).problems({"title": None})] == ["/title"]


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
            max_leaves=6,
        ),
        max_size=6,
    )
)
def test_validation_never_raises_anything_but_invalid(body: dict[str, Any]) -> None:
    problems = Schema(TASK.create_schema()).problems(body)
    assert all(p.pointer == "" or p.pointer.startswith("/") for p in problems)


def test_events_fire_after_commit_and_never_for_a_rollback(database_url: str) -> None:
    db = database_for(database_url)
    fired: list[str] = []
    store = Store(db, lambda name, payload: fired.append(name))
    try:
        with pytest.raises(RuntimeError), store.write() as events:
            events.append(("task.created", {}))
            raise RuntimeError("rolled back")
        assert fired == []
        with store.write() as events:
            events.append(("task.created", {}))
            with store.write() as inner:  # nested: one transaction, one firing at the outer commit
                inner.append(("task.updated", {}))
            assert fired == []
        assert fired == ["task.created", "task.updated"]
    finally:
        db.close_all()
