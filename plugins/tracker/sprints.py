"""Sprints: start (one active per project, enforced by a unique index), close with carry-over, burndown."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import peewee

from . import analytics, listing
from .errors import Conflict, Invalid, Problem
from .models import ActionList, Project, Sprint, Task
from .records import Collection, not_before, reference, require, sum_points
from .schemas import SPRINT, SPRINT_STATUSES, id_pattern
from .store import Event, change, check_version, update_versioned
from .workflow import FINISHED

#: A sprint is a short iteration: a year is already far longer than any cadence.
MAX_SPRINT_DAYS = 366


def longest_sprint(values: Mapping[str, Any]) -> Problem | None:
    first, last = values.get("start_date"), values.get("end_date")
    if first is not None and last is not None and (last - first).days + 1 > MAX_SPRINT_DAYS:
        detail = f"a sprint lasts at most {MAX_SPRINT_DAYS} days (start_date is {first.isoformat()})"
        return Problem("/end_date", detail)
    return None


class Sprints(Collection):
    resource = SPRINT
    model = Sprint
    label = "sprint"
    listing = listing.ListDefinition(
        model=Sprint,
        filters={
            "project_id": listing.reference(Sprint.project, re.compile(id_pattern("P"))),
            "status": listing.one_of(Sprint.status, SPRINT_STATUSES),
            "owner": listing.equals(Sprint.owner, 100),
        },
        sortable={
            "created_at": listing.Sortable(Sprint.created_at, "datetime"),
            "updated_at": listing.Sortable(Sprint.updated_at, "datetime"),
            "start_date": listing.Sortable(Sprint.start_date, "date"),
            "end_date": listing.Sortable(Sprint.end_date, "date"),
            "name": listing.Sortable(Sprint.name, "text"),
            "id": listing.Sortable(Sprint.id, "text"),
        },
    )

    def check_create(self, values: dict[str, Any]) -> None:
        values["status"] = "planned"
        self.check_merged(None, values)
        reference(Project, values["project_id"], "/project_id", "project")

    def check_merged(self, record: Any, values: Mapping[str, Any]) -> None:
        require(not_before(values, "start_date", "end_date") or longest_sprint(values))

    def event_payload(self, record: Sprint) -> dict[str, Any]:
        return {"sprint_id": record.id, "project_id": record.project_id, "status": record.status}

    def before_delete(self, record: Sprint, cascade: bool, events: list[Event]) -> None:
        if record.status == "active":
            raise Conflict(f"Sprint {record.id} is active; close it before deleting it.")
        tasks = Task.select(Task.id).where(Task.sprint == record.id)
        if record.status == "closed" and tasks.exists():
            raise Conflict(f"Sprint {record.id} is closed and has tasks, which cannot move out of it.")
        # A planned sprint's tasks go back to the backlog, and its action lists keep their project only.
        now = self.store.clock()
        for task in Task.select().where(Task.sprint == record.id):
            update_versioned(Task, task, {"sprint_id": None}, now)
            events.append(
                (
                    "task.updated",
                    {
                        "task_id": task.id,
                        "project_id": task.project_id,
                        "changed": ["sprint_id"],
                        "changes": {"sprint_id": change(record.id, None)},
                    },
                )
            )
        for action_list in ActionList.select().where(ActionList.sprint == record.id):
            update_versioned(ActionList, action_list, {"sprint_id": None}, now)
            events.append(
                (
                    "action_list.updated",
                    {
                        "action_list_id": action_list.id,
                        "changed": ["sprint_id"],
                        "changes": {"sprint_id": change(record.id, None)},
                    },
                )
            )

    # -- start and close ------------------------------------------------------------

    def start(self, sprint_id: str, dates: Mapping[str, Any], if_match: frozenset[int] | None) -> Sprint:
        """Start a planned sprint; ``dates`` may move its start and end in the same change."""
        with self.store.write() as events:
            sprint: Sprint = self.store.lock(Sprint, sprint_id, "Sprint")
            check_version(sprint, if_match)
            if sprint.status != "planned":
                raise Conflict(f"Sprint {sprint.id} is {sprint.status}; only a planned sprint can start.")
            now = self.store.clock()
            wanted = self.parse(dict(dates))
            moved = {name: value for name, value in wanted.items() if value != getattr(sprint, name)}
            self.check_merged(sprint, {**self.dates_of(sprint), **moved})
            end_date = moved.get("end_date", sprint.end_date)
            if end_date < now.date():
                raise Invalid(
                    [
                        Problem(
                            "/end_date",
                            f"sprint {sprint.id} ends on {end_date.isoformat()}, before today "
                            f"({now.date().isoformat()}); send a new end_date to start it",
                        )
                    ],
                    f"Sprint {sprint.id} ran from {sprint.start_date.isoformat()} to {end_date.isoformat()}, "
                    "which has passed.",
                )
            active = Sprint.get_or_none((Sprint.project == sprint.project_id) & (Sprint.status == "active"))
            if active is not None:
                raise Conflict(f"Project {sprint.project_id} already has an active sprint: {active.id}.")
            old = {name: getattr(sprint, name) for name in moved}
            try:
                with self.store.database.atomic():  # a savepoint: the losing racer's error stays contained
                    update_versioned(Sprint, sprint, {**moved, "status": "active", "started_at": now}, now)
            except peewee.IntegrityError:
                raise Conflict(f"Project {sprint.project_id} already has an active sprint.") from None
            if moved:
                diff = {name: change(old[name], moved[name]) for name in sorted(moved)}
                events.append(
                    ("sprint.updated", {**self.event_payload(sprint), "changed": sorted(moved), "changes": diff})
                )
            started = {"status": change("planned", "active"), "started_at": change(None, now)}
            events.append(("sprint.started", {**self.event_payload(sprint), "changes": started}))
        return sprint

    @staticmethod
    def dates_of(sprint: Sprint) -> dict[str, Any]:
        return {"start_date": sprint.start_date, "end_date": sprint.end_date}

    def close(self, sprint_id: str, carry_over: str, if_match: frozenset[int] | None) -> Sprint:
        with self.store.write() as events:
            sprint: Sprint = self.store.lock(Sprint, sprint_id, "Sprint")
            check_version(sprint, if_match)
            if sprint.status != "active":
                raise Conflict(f"Sprint {sprint.id} is {sprint.status}; only an active sprint can close.")
            target = self._carry_over_target(sprint, carry_over)
            tasks = list(Task.select().where(Task.sprint == sprint.id))
            committed = sum_points([t.estimate_points for t in tasks if t.status != "dropped"])
            completed = sum_points([t.estimate_points for t in tasks if t.status == "done"])
            now = self.store.clock()
            moved = []
            for task in tasks:
                if task.status not in FINISHED:
                    update_versioned(Task, task, {"sprint_id": target}, now)
                    moved.append(task.id)
                    events.append(
                        (
                            "task.updated",
                            {
                                "task_id": task.id,
                                "project_id": task.project_id,
                                "changed": ["sprint_id"],
                                "changes": {"sprint_id": change(sprint.id, target)},
                            },
                        )
                    )
            update_versioned(
                Sprint,
                sprint,
                {"status": "closed", "committed_points": committed, "completed_points": completed, "closed_at": now},
                now,
            )
            events.append(
                (
                    "sprint.closed",
                    {
                        **self.event_payload(sprint),
                        "committed_points": committed,
                        "completed_points": completed,
                        "carried_over_to": target or "backlog",
                        "carried_over_task_ids": moved,
                        "changes": {
                            "status": change("active", "closed"),
                            "closed_at": change(None, now),
                            "committed_points": change(None, committed),
                            "completed_points": change(None, completed),
                        },
                    },
                )
            )
        return sprint

    def _carry_over_target(self, sprint: Sprint, carry_over: str) -> str | None:
        if carry_over == "backlog":
            return None
        target = reference(Sprint, carry_over, "/carry_over", "sprint")
        if target.project_id != sprint.project_id:
            raise Invalid([Problem("/carry_over", f"sprint {target.id} belongs to project {target.project_id}")])
        if target.status != "planned":
            raise Invalid([Problem("/carry_over", f"sprint {target.id} is {target.status}, not planned")])
        return str(target.id)

    # -- reports -------------------------------------------------------------------

    def burndown(self, sprint_id: str) -> dict[str, Any]:
        with self.store.read():
            sprint = self.get(sprint_id)
            return self._burndown(sprint)

    def progress(self, sprint_id: str) -> dict[str, Any]:
        """Task counts by status and the burndown's figures of its last day (docs/tracker.md, Burndown)."""
        with self.store.read():
            sprint = self.get(sprint_id)
            counts: Any = (
                Task.select(Task.status, peewee.fn.COUNT(Task.id)).where(Task.sprint == sprint.id).group_by(Task.status)
            )
            by_status = {status: int(count) for status, count in counts.tuples()}
            report = self._burndown(sprint)
        return {"sprint_id": sprint.id, "status": sprint.status, **analytics.sprint_progress(by_status, report)}

    def _burndown(self, sprint: Sprint) -> dict[str, Any]:
        rows = Task.select(Task.estimate_points, Task.status, Task.completed_at).where(
            (Task.sprint == sprint.id) & (Task.status != "dropped")
        )
        points = [(float(r.estimate_points or 0), r.completed_at if r.status == "done" else None) for r in rows]
        closed = sprint.status == "closed"
        # A sprint closed before its closing time was recorded falls back to its last change.
        as_of = (sprint.closed_at or sprint.updated_at) if closed else self.store.clock()
        report = analytics.burndown(
            sprint.start_date,
            sprint.end_date,
            as_of.date(),
            points,
            total_points=sprint.committed_points if closed else None,
            closed=closed,
        )
        return {"sprint_id": sprint.id, "status": sprint.status, **report}
