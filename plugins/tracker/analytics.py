"""Project metrics, sprint burndown and velocity: plain functions over plain data."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from .schemas import MAX_SERIES_DAYS, TASK_STATUSES


def project_metrics(tasks_by_status: Mapping[str, int]) -> dict[str, Any]:
    """The earlier version's figures: red above 20% blocked; yellow above 10% blocked or under 30% done."""
    counts = {status: int(tasks_by_status.get(status, 0)) for status in TASK_STATUSES}
    total = sum(counts.values())
    completion = round(100.0 * counts["done"] / total, 2) if total else 0.0
    blocked = round(100.0 * counts["blocked"] / total, 2) if total else 0.0
    if not total:
        health = "green"
    elif blocked > 20:
        health = "red"
    elif blocked > 10 or completion < 30:
        health = "yellow"
    else:
        health = "green"
    return {
        "total_tasks": total,
        "tasks_by_status": counts,
        "completion_percentage": completion,
        "blocked_percentage": blocked,
        "health_status": health,
    }


def health_score(metrics: Mapping[str, Any]) -> float:
    """0-100 for the ``project_health_score`` gauge: completion, less twice the blocked share."""
    if not metrics["total_tasks"]:
        return 100.0
    return float(max(0.0, min(100.0, metrics["completion_percentage"] - 2 * metrics["blocked_percentage"] + 50)))


def burndown(
    start: datetime.date,
    end: datetime.date,
    as_of: datetime.date,
    points: Sequence[tuple[float, datetime.datetime | None]],
    *,
    total_points: float | None = None,
    closed: bool = False,
) -> dict[str, Any]:
    """Remaining points per day from ``start`` to ``max(start, as_of)``, and the summary of the last day.

    ``as_of`` is today for a planned or active sprint (so an active sprint
    past its end date runs on to today) and the day it closed for a closed
    one.  ``points`` is ``(estimate, completed_at)`` for each task of the
    sprint (``completed_at`` None when not done); work done before the
    start counts on the first day.  ``total_points`` overrides the sum (a
    closed sprint's committed snapshot, since its unfinished tasks moved out).
    The summary is read off the series' last day, so the two always agree.
    The series keeps the last :data:`MAX_SERIES_DAYS` days.
    """
    total = float(total_points) if total_points is not None else float(sum(p for p, _ in points))
    last = max(start, as_of)
    days_total = (end - start).days + 1
    days_elapsed = min(max((as_of - start).days + 1, 0), days_total)
    days_worked = max((as_of - start).days + 1, 0)
    ideal_rate = total / days_total
    done_points = sorted(((at, p) for p, at in points if at is not None), key=lambda pair: pair[0])
    series = []
    done = 0.0
    taken = 0
    days = (last - start).days + 1
    # Straight to the days kept: a sprint that started in year 1 would otherwise cost 740,000 turns a request.
    # The first turn counts everything done up to its day, so the earlier days need no turn of their own.
    for offset in range(max(days - MAX_SERIES_DAYS, 0), days):
        day = start + datetime.timedelta(days=offset)
        # Done by the end of ``day``, compared by date: the midnight after 9999-12-31 is no datetime.
        while taken < len(done_points) and done_points[taken][0].date() <= day:
            done += done_points[taken][1]
            taken += 1
        series.append(
            {
                "date": day.isoformat(),
                "remaining_points": round(total - done, 4),
                "ideal_remaining_points": round(max(total - ideal_rate * (offset + 1), 0.0), 4),
            }
        )
    completed = done
    remaining = total - completed
    ideal_remaining = max(total - ideal_rate * days_elapsed, 0.0)
    # A closed sprint is judged at its end: on track only if it finished all it committed, having done some.
    finished = bool(done_points) and remaining <= 1e-9
    on_track = finished if closed else remaining <= ideal_remaining + 1e-9
    return {
        "as_of": last.isoformat(),
        "total_points": total,
        "completed_points": round(completed, 4),
        "remaining_points": round(remaining, 4),
        "days_total": days_total,
        "days_elapsed": days_elapsed,
        "days_remaining": days_total - days_elapsed,
        "days_past_end": max((as_of - end).days, 0),
        "ideal_burndown_rate": round(ideal_rate, 4),
        "actual_burndown_rate": round(completed / days_worked, 4) if days_worked else 0.0,
        "on_track": on_track,
        "series": series,
    }


def sprint_progress(tasks_by_status: Mapping[str, int], burndown_report: Mapping[str, Any]) -> dict[str, Any]:
    """Where a sprint stands: its tasks by status, and the points and days of its burndown's last day.

    The points and days are the burndown's own (same ``as_of``, same
    definitions), so the two reports never disagree.
    """
    counts = {status: int(tasks_by_status.get(status, 0)) for status in TASK_STATUSES}
    committed = float(burndown_report["total_points"])
    completed = float(burndown_report["completed_points"])
    return {
        "as_of": burndown_report["as_of"],
        "total_tasks": sum(counts.values()),
        "tasks_by_status": counts,
        "committed_points": committed,
        "completed_points": completed,
        "remaining_points": burndown_report["remaining_points"],
        "completion_percentage": round(100.0 * completed / committed, 2) if committed else 0.0,
        **{key: burndown_report[key] for key in ("days_total", "days_elapsed", "days_remaining", "days_past_end")},
        "on_track": burndown_report["on_track"],
    }


def velocity(closed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Completed points per closed sprint, oldest first, with their average."""
    sprints = [
        {
            "sprint_id": s["id"],
            "name": s["name"],
            "end_date": s["end_date"],
            "committed_points": s["committed_points"] or 0.0,
            "completed_points": s["completed_points"] or 0.0,
        }
        for s in closed
    ]
    average = round(sum(s["completed_points"] for s in sprints) / len(sprints), 4) if sprints else 0.0
    return {"sprints": sprints, "average_completed_points": average}
