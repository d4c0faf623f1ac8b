"""Sprint burndown in every sprint state, on a travelling clock: the series' last day is the summary."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
from taskman_plugins.tracker import analytics

from tests.tracker.conftest import Api, problem_pointers


def at(day: str, hour: int = 12) -> datetime.datetime:
    return datetime.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def sprint_with_tasks(api: Api, start: str, end: str) -> None:
    """Project P-1, sprint S-1 from ``start`` to ``end`` holding T-1 (4 points) and T-2 (6 points)."""
    api.project()
    api.sprint("S-1", start_date=start, end_date=end)
    api.task("T-1", sprint_id="S-1", estimate_points=4)
    api.task("T-2", sprint_id="S-1", estimate_points=6)


def burndown(api: Api) -> dict[str, Any]:
    result = api.get("/sprints/S-1/burndown")
    assert result.status_code == 200, result.text
    report = dict(result.json)
    assert report["series"], "every state has at least its first day"
    assert report["series"][-1]["remaining_points"] == report["remaining_points"]
    assert report["series"][-1]["date"] == report["as_of"]
    assert report["series"][0]["date"] == api.get("/sprints/S-1").json["start_date"]
    assert report["total_points"] - report["completed_points"] == pytest.approx(report["remaining_points"])
    return report


def remaining_by_day(report: dict[str, Any]) -> dict[str, float]:
    return {entry["date"]: entry["remaining_points"] for entry in report["series"]}


def test_planned_sprint_in_the_future_shows_its_first_day(api: Api) -> None:
    sprint_with_tasks(api, "2026-11-16", "2026-11-20")
    api.done("T-1")  # done before the sprint starts: counts on its first day
    report = burndown(api)
    assert report["status"] == "planned"
    assert remaining_by_day(report) == {"2026-11-16": 6.0}
    assert (report["days_elapsed"], report["days_remaining"], report["days_past_end"]) == (0, 5, 0)
    assert report["on_track"] is True


def test_planned_sprint_whose_start_has_passed_runs_to_today(api: Api) -> None:
    sprint_with_tasks(api, "2026-11-08", "2026-11-14")
    report = burndown(api)
    assert list(remaining_by_day(report)) == ["2026-11-08", "2026-11-09", "2026-11-10"]
    assert report["remaining_points"] == 10.0 and report["days_elapsed"] == 3
    assert report["on_track"] is False  # three days gone, nothing done


def test_active_sprint_inside_its_dates(api: Api, clock: Any) -> None:
    sprint_with_tasks(api, "2026-11-09", "2026-11-15")
    api.post("/sprints/S-1/start")
    api.done("T-1")  # on 2026-11-10
    report = burndown(api)
    assert remaining_by_day(report) == {"2026-11-09": 10.0, "2026-11-10": 6.0}
    assert report["completed_points"] == 4.0 and report["remaining_points"] == 6.0
    assert (report["days_total"], report["days_elapsed"], report["days_remaining"]) == (7, 2, 5)
    assert report["on_track"] is True  # 6 left against an ideal of 10 - 2 * 10/7


def test_active_sprint_past_its_end_runs_on_to_today(api: Api, clock: Any) -> None:
    """The reported bug: work done after the end date never reached the series."""
    sprint_with_tasks(api, "2026-11-10", "2026-11-12")
    api.post("/sprints/S-1/start")
    api.done("T-1")  # 2026-11-10
    clock.move_to(at("2026-11-14"))
    assert burndown(api)["remaining_points"] == 6.0
    api.done("T-2")  # 2026-11-14, after the end
    clock.move_to(at("2026-11-15"))
    report = burndown(api)
    assert remaining_by_day(report) == {
        "2026-11-10": 6.0,
        "2026-11-11": 6.0,
        "2026-11-12": 6.0,
        "2026-11-13": 6.0,
        "2026-11-14": 0.0,
        "2026-11-15": 0.0,
    }
    assert report["as_of"] == "2026-11-15" and report["remaining_points"] == 0.0
    assert (report["days_elapsed"], report["days_remaining"], report["days_past_end"]) == (3, 0, 3)
    assert [e["ideal_remaining_points"] for e in report["series"][2:]] == [0.0] * 4
    assert report["on_track"] is True


def test_sprint_closed_early_stops_on_the_day_it_closed(api: Api, clock: Any) -> None:
    sprint_with_tasks(api, "2026-11-09", "2026-11-20")
    api.post("/sprints/S-1/start")
    api.done("T-1")  # 2026-11-10
    clock.move_to(at("2026-11-11"))
    closed = api.post("/sprints/S-1/close")
    assert closed.json["closed_at"].startswith("2026-11-11")
    clock.move_to(at("2026-11-18"))  # later reads do not extend a closed sprint
    report = burndown(api)
    assert remaining_by_day(report) == {"2026-11-09": 10.0, "2026-11-10": 6.0, "2026-11-11": 6.0}
    assert report["total_points"] == 10.0 and report["completed_points"] == 4.0  # T-2 went to the backlog
    assert report["days_elapsed"] == 3 and report["days_past_end"] == 0
    assert report["on_track"] is False  # it left work undone


def test_sprint_closed_late_runs_to_the_day_it_closed(api: Api, clock: Any) -> None:
    clock.move_to(at("2026-11-03"))
    sprint_with_tasks(api, "2026-11-02", "2026-11-06")
    api.post("/sprints/S-1/start")
    api.done("T-1")  # 2026-11-03
    clock.move_to(at("2026-11-08"))
    api.done("T-2")  # 2026-11-08, after the end
    clock.move_to(at("2026-11-09"))
    api.post("/sprints/S-1/close")
    clock.move_to(at("2026-11-30"))
    report = burndown(api)
    assert report["as_of"] == "2026-11-09" and len(report["series"]) == 8
    assert remaining_by_day(report)["2026-11-07"] == 6.0
    assert remaining_by_day(report)["2026-11-08"] == 0.0
    assert report["remaining_points"] == 0.0 and report["days_past_end"] == 3
    assert report["on_track"] is True


def test_closed_sprint_never_worked_on_is_not_on_track(api: Api) -> None:
    sprint_with_tasks(api, "2026-11-16", "2026-11-20")
    api.post("/sprints/S-1/start")  # early: allowed, the sprint has not ended
    api.post("/sprints/S-1/close")
    report = burndown(api)
    assert report["on_track"] is False
    assert report["remaining_points"] == 10.0 and remaining_by_day(report) == {"2026-11-16": 10.0}


def test_burndown_of_an_unknown_sprint_is_404(api: Api) -> None:
    assert api.get("/sprints/S-404/burndown").status_code == 404


# -- starting a sprint whose dates have passed -----------------------------------------


def test_a_sprint_that_has_ended_cannot_start(api: Api) -> None:
    api.project()
    api.sprint("S-1", start_date="2026-11-02", end_date="2026-11-06")
    refused = api.post("/sprints/S-1/start")
    assert refused.status_code == 422
    detail = problem_pointers(refused)["/end_date"]
    assert "2026-11-06" in detail and "2026-11-10" in detail
    assert "2026-11-02" in refused.json["detail"]
    assert api.get("/sprints/S-1").json["status"] == "planned"


def test_moving_the_dates_in_the_start_request_starts_it(api: Api) -> None:
    api.project()
    api.sprint("S-1", start_date="2026-11-02", end_date="2026-11-06")
    api.events.clear()
    started = api.post("/sprints/S-1/start", {"start_date": "2026-11-10", "end_date": "2026-11-23"})
    assert started.status_code == 200, started.text
    sprint = started.json
    assert (sprint["status"], sprint["start_date"], sprint["end_date"]) == ("active", "2026-11-10", "2026-11-23")
    assert sprint["started_at"].startswith("2026-11-10") and sprint["version"] == 2
    assert [name for name, _ in api.events] == ["sprint.updated", "sprint.started"]
    assert dict(api.events)["sprint.updated"]["changed"] == ["end_date", "start_date"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"end_date": "2026-11-09"}, "/end_date"),  # still before today
        ({"start_date": "2026-11-20", "end_date": "2026-11-19"}, "/end_date"),  # end before start
        ({"end_date": "2026-02-30"}, "/end_date"),  # not a date
        ({"status": "active"}, "/status"),  # only the dates move here
    ],
)
def test_a_start_request_with_bad_dates_changes_nothing(api: Api, body: dict[str, str], pointer: str) -> None:
    api.project()
    api.sprint("S-1", start_date="2026-11-02", end_date="2026-11-06")
    assert pointer in problem_pointers(api.post("/sprints/S-1/start", body))
    sprint = api.get("/sprints/S-1").json
    assert (sprint["status"], sprint["end_date"], sprint["version"]) == ("planned", "2026-11-06", 1)


def test_a_sprint_ending_today_can_start(api: Api) -> None:
    api.project()
    api.sprint("S-1", start_date="2026-11-10", end_date="2026-11-10")
    assert api.post("/sprints/S-1/start").status_code == 200


# -- the plain function ------------------------------------------------------------------

DAY = datetime.date(2026, 2, 20)


@hypothesis.given(
    length=st.integers(1, 40),
    as_of_offset=st.integers(-10, 60),
    tasks=st.lists(st.tuples(st.integers(0, 13), st.one_of(st.none(), st.integers(-5 * 24, 60 * 24))), max_size=20),
    closed=st.booleans(),
)
def test_the_series_always_ends_on_the_summary(
    length: int, as_of_offset: int, tasks: list[tuple[int, int | None]], closed: bool
) -> None:
    """Any sprint, any day (a leap day and a month end among them), any completions up to that day."""
    end = DAY + datetime.timedelta(days=length - 1)
    as_of = DAY + datetime.timedelta(days=as_of_offset)
    now = datetime.datetime.combine(as_of, datetime.time(23, 59))
    start_time = datetime.datetime.combine(DAY, datetime.time())
    points = []
    for estimate, hours in tasks:
        done_at = None if hours is None else min(start_time + datetime.timedelta(hours=hours), now)
        points.append((float(estimate), done_at))
    report = analytics.burndown(DAY, end, as_of, points, closed=closed)
    series = report["series"]
    assert series[0]["date"] == DAY.isoformat()  # (within MAX_SERIES_DAYS)
    assert series[-1]["date"] == report["as_of"] == max(DAY, as_of).isoformat()
    assert series[-1]["remaining_points"] == report["remaining_points"]
    assert report["completed_points"] == sum(p for p, at in points if at is not None)
    dates = [datetime.date.fromisoformat(e["date"]) for e in series]
    assert all(b - a == datetime.timedelta(days=1) for a, b in itertools.pairwise(dates))
    remaining = [e["remaining_points"] for e in series]
    assert remaining == sorted(remaining, reverse=True)
    assert report["days_elapsed"] + report["days_remaining"] == report["days_total"] == length


def test_a_sprint_lasts_at_most_a_year(api: Api) -> None:
    api.project()
    body = {"id": "S-1", "project_id": "P-1", "name": "s", "start_date": "2026-01-01"}
    assert "/end_date" in problem_pointers(api.post("/sprints", {**body, "end_date": "2027-01-02"}))
    assert api.post("/sprints", {**body, "end_date": "2027-01-01"}).status_code == 201
    assert "/end_date" in problem_pointers(api.patch("/sprints/S-1", {"start_date": "2025-12-31"}))


def test_a_series_over_centuries_keeps_its_most_recent_days() -> None:
    start = datetime.date(1, 1, 1)
    report = analytics.burndown(start, start, datetime.date(2026, 11, 10), [(3.0, None)])
    assert len(report["series"]) == analytics.MAX_SERIES_DAYS
    assert report["series"][-1]["date"] == "2026-11-10" and report["series"][-1]["remaining_points"] == 3.0
