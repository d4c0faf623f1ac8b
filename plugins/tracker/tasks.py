"""Tasks: the transition table, dependencies without cycles, sprints of the same project."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import listing
from .action_lists import lists_linking, named
from .errors import Conflict, Invalid, Problem, counted, listed
from .models import Comment, Project, Sprint, Task, TaskAssignee, TaskDependency, TaskLabel
from .projects import health_event
from .records import Collection, reference, require
from .schemas import TASK, TASK_PRIORITIES, TASK_STATUSES, id_pattern
from .store import Event, Store, rfc3339
from .validation import MAX_PROBLEMS
from .workflow import DEFAULT_TRANSITIONS, INITIAL, Table, parse_transitions, terminal

#: The default table (the earlier version's), applied on every path that changes a status (PATCH included);
#: ``[tracker] transitions`` replaces it.
TRANSITIONS: dict[str, tuple[str, ...]] = parse_transitions(DEFAULT_TRANSITIONS)
TERMINAL = terminal(TRANSITIONS)

__all__ = ["INITIAL", "TERMINAL", "TRANSITIONS", "Tasks", "status_events", "transition_problem"]


def transition_problem(current: str, wanted: str, table: Table = TRANSITIONS) -> Problem | None:
    """None if ``current -> wanted`` is allowed by ``table``, else the problem naming the allowed moves."""
    if wanted == current or wanted in table[current]:
        return None
    allowed = ", ".join(table[current]) or "none (it is terminal)"
    return Problem("/status", f"cannot move from {current} to {wanted}; allowed from {current}: {allowed}")


def _task_listing() -> listing.ListDefinition:
    return listing.ListDefinition(
        model=Task,
        filters={
            "status": listing.one_of(Task.status, TASK_STATUSES),
            "priority": listing.one_of(Task.priority, TASK_PRIORITIES),
            "owner": listing.equals(Task.owner, 100),
            "assignee": listing.member_of(TaskAssignee, TaskAssignee.assignee, Task.id, 100),
            "label": listing.member_of(TaskLabel, TaskLabel.label, Task.id, 50),
            "project_id": listing.reference(Task.project, re.compile(id_pattern("P"))),
            "sprint_id": listing.optional_reference(Task.sprint, re.compile(id_pattern("S"))),
            "due_before": listing.before(Task.due_at),
            "due_after": listing.at_or_after(Task.due_at),
            "updated_since": listing.at_or_after(Task.updated_at),
            "q": listing.text_search(Task.title, Task.summary, Task.description),
        },
        sortable={
            "created_at": listing.Sortable(Task.created_at, "datetime"),
            "updated_at": listing.Sortable(Task.updated_at, "datetime"),
            "completed_at": listing.Sortable(Task.completed_at, "datetime", nullable=True),
            "due_at": listing.Sortable(Task.due_at, "datetime", nullable=True),
            "priority": listing.Sortable(Task.priority, "text"),
            "status": listing.Sortable(Task.status, "text"),
            "title": listing.Sortable(Task.title, "text"),
            "estimate_points": listing.Sortable(Task.estimate_points, "number", nullable=True),
            "id": listing.Sortable(Task.id, "text"),
        },
        default_sort=("created_at",),
    )


class Tasks(Collection):
    resource = TASK
    model = Task
    label = "task"
    listing = _task_listing()

    def __init__(self, store: Store, transitions: Table = TRANSITIONS) -> None:
        super().__init__(store)
        self.transitions = transitions

    # -- rules ------------------------------------------------------------------

    def check_create(self, values: dict[str, Any]) -> None:
        if values["status"] != INITIAL:
            raise Invalid([Problem("/status", f"a task starts as {INITIAL}; move it with POST /tasks/{{id}}/status")])
        reference(Project, values["project_id"], "/project_id", "project")
        self._check_sprint(values["project_id"], values.get("sprint_id"))
        self._check_dependencies(values["id"], values.get("depends_on") or [])

    def check_changes(self, record: Task, changes: dict[str, Any]) -> dict[str, Any]:
        if "status" in changes:
            require(transition_problem(record.status, changes["status"], self.transitions))
            if changes["status"] == "done":
                self._check_dependencies_done(record.id, changes.get("depends_on", record.depends_on))
                changes["completed_at"] = self.store.clock()
            elif record.status == "done":
                changes["completed_at"] = None  # reopened, where the workflow allows it
        if "sprint_id" in changes:
            if record.sprint_id is not None and self._sprint_status(record.sprint_id) == "closed":
                raise Conflict(f"Task {record.id} belongs to closed sprint {record.sprint_id}; it cannot move out.")
            self._check_sprint(record.project_id, changes["sprint_id"])
        if "depends_on" in changes:
            self._check_dependencies(record.id, changes["depends_on"])
            if record.status == "done" or changes.get("status") == "done":
                self._check_dependencies_done(record.id, changes["depends_on"])
        return changes

    def _sprint_status(self, sprint_id: str) -> str | None:
        return Sprint.select(Sprint.status).where(Sprint.id == sprint_id).scalar()  # type: ignore[no-any-return]

    def _check_sprint(self, project_id: str, sprint_id: str | None) -> None:
        sprint = reference(Sprint, sprint_id, "/sprint_id", "sprint")
        if sprint is None:
            return
        if sprint.project_id != project_id:
            raise Invalid([Problem("/sprint_id", f"sprint {sprint.id} belongs to project {sprint.project_id}")])
        if sprint.status == "closed":
            raise Conflict(f"Sprint {sprint.id} is closed; tasks cannot move into it.", "/sprint_id")

    def _check_dependencies(self, task_id: str, depends_on: list[str]) -> None:
        problems = []
        existing = {row.id for row in Task.select(Task.id).where(Task.id.in_(depends_on))} if depends_on else set()
        for index, other in enumerate(depends_on):
            if other == task_id:
                problems.append(Problem(f"/depends_on/{index}", "a task cannot depend on itself"))
            elif other not in existing:
                problems.append(Problem(f"/depends_on/{index}", f"task {other} does not exist"))
        require(*problems)
        cycle = self._cycle_through(task_id, depends_on)
        if cycle:
            raise Invalid([Problem("/depends_on", "would make a cycle: " + " -> ".join(cycle))])

    def _cycle_through(self, task_id: str, depends_on: list[str]) -> list[str] | None:
        """A path from one of ``depends_on`` back to ``task_id`` through existing dependencies, if any."""
        came_from: dict[str, str | None] = dict.fromkeys(depends_on)
        frontier = list(depends_on)
        while frontier:
            edges = TaskDependency.select(TaskDependency.task, TaskDependency.depends_on).where(
                TaskDependency.task.in_(frontier)
            )
            frontier = []
            for edge in edges:
                if edge.depends_on_id == task_id:
                    chain = [edge.task_id]
                    while (previous := came_from[chain[-1]]) is not None:
                        chain.append(previous)
                    return [task_id, *reversed(chain), task_id]
                if edge.depends_on_id not in came_from:
                    came_from[edge.depends_on_id] = edge.task_id
                    frontier.append(edge.depends_on_id)
        return None

    def _check_dependencies_done(self, task_id: str, depends_on: list[str]) -> None:
        if not depends_on:
            return
        open_ids = [row.id for row in Task.select(Task.id).where(Task.id.in_(depends_on) & (Task.status != "done"))]
        if open_ids:
            raise Invalid(
                [Problem("/status", f"cannot be done while {', '.join(sorted(open_ids))} (depended on) is not done")]
            )

    # -- side effects -------------------------------------------------------------

    def after_create(self, record: Task, events: list[Event]) -> None:
        self._write_links(record.id, labels=record.labels, assignees=record.assignees, depends_on=record.depends_on)
        events.append(health_event(record.project_id))

    def after_update(
        self, record: Task, before: Mapping[str, Any], changes: Mapping[str, Any], events: list[Event]
    ) -> None:
        self._write_links(
            record.id,
            labels=changes.get("labels"),
            assignees=changes.get("assignees"),
            depends_on=changes.get("depends_on"),
            replace=True,
        )
        if "status" in changes:
            events.extend(status_events(record, before["status"]))
            events.append(health_event(record.project_id))

    def _write_links(
        self,
        task_id: str,
        *,
        labels: list[str] | None,
        assignees: list[str] | None,
        depends_on: list[str] | None,
        replace: bool = False,
    ) -> None:
        for model, column, values in (
            (TaskLabel, "label", labels),
            (TaskAssignee, "assignee", assignees),
            (TaskDependency, "depends_on", depends_on),
        ):
            if values is None:
                continue
            if replace:
                model.delete().where(model.task == task_id).execute()
            if values:
                model.insert_many([{"task": task_id, column: value} for value in values]).execute()

    def before_delete(self, record: Task, cascade: bool, events: list[Event]) -> None:
        dependants = sorted(
            row.task_id
            for row in TaskDependency.select(TaskDependency.task).where(TaskDependency.depends_on == record.id)
        )
        if dependants:
            verb = "depends" if len(dependants) == 1 else "depend"
            raise Conflict(f"Task {record.id} cannot be deleted: {listed(dependants)} {verb} on it.")
        linking = lists_linking([record.id])
        if linking:
            raise Conflict(f"Task {record.id} cannot be deleted: {named(linking)} links it; unlink the items first.")
        # Its comments go with it; the task.deleted event says so for them all.
        for model in (TaskLabel, TaskAssignee, TaskDependency, Comment):
            model.delete().where(model.task == record.id).execute()

    def after_delete(self, record: Task, events: list[Event]) -> None:
        events.append(health_event(record.project_id))

    def event_payload(self, record: Task) -> dict[str, Any]:
        return {
            "task_id": record.id,
            "project_id": record.project_id,
            "sprint_id": record.sprint_id,
            "priority": record.priority,
            "status": record.status,
        }

    def create_many(self, bodies: Sequence[Mapping[str, Any]]) -> list[Task]:
        """Create every task of ``bodies`` in one transaction, or none: a 422 lists each item's problems.

        Items are created in order, so an item may depend on one before it.
        Each fires ``task.created``; each project touched gets one
        ``project.health_changed``, after them all.
        """
        problems = _repeated_ids(bodies)
        require(*problems)
        created: list[Task] = []
        with self.store.write() as events:
            for index, body in enumerate(bodies):
                item_events: list[Event] = []
                try:
                    # A savepoint per item: a refused item leaves nothing behind, and on PostgreSQL a failed
                    # statement does not spoil the transaction the next items are checked in.
                    with self.store.database.atomic():
                        created.append(self.insert(self.prepare(body), item_events))
                except Invalid as error:
                    problems += [Problem(f"/items/{index}{p.pointer}", p.detail) for p in error.problems]
                except Conflict as error:
                    problems.append(Problem(f"/items/{index}{error.pointer}", str(error)))
                if len(problems) >= MAX_PROBLEMS:
                    break
                events.extend(event for event in item_events if event[0] != "project.health_changed")
            if problems:
                raise Invalid(
                    problems[:MAX_PROBLEMS],
                    f"No task was created: {counted(len({p.pointer.split('/')[2] for p in problems}), 'item')} "
                    f"{'was' if len(problems) == 1 else 'were'} refused"
                    + (f"; the first {MAX_PROBLEMS} problems are listed" if len(problems) >= MAX_PROBLEMS else "")
                    + ".",
                )
            events.extend(health_event(project) for project in sorted({t.project_id for t in created}))
        return created

    def change_status(self, task_id: str, status: str, if_match: frozenset[int] | None) -> Task:
        return self.patch(task_id, {"status": status}, if_match)  # type: ignore[no-any-return]


def _repeated_ids(bodies: Sequence[Mapping[str, Any]]) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for index, body in enumerate(bodies):
        if body["id"] in first:
            problems.append(Problem(f"/items/{index}/id", f"repeats the id of item {first[body['id']]}"))
        first.setdefault(body["id"], index)
    return problems


def status_events(record: Task, before: str) -> list[Event]:
    """``task.status_changed`` and, on reaching done, ``task.completed`` (the business_metrics contract)."""
    events: list[Event] = [
        (
            "task.status_changed",
            {
                "task_id": record.id,
                "project_id": record.project_id,
                "priority": record.priority,
                "from": before,
                "to": record.status,
            },
        )
    ]
    if record.status == "done":
        events.append(
            (
                "task.completed",
                {
                    "task_id": record.id,
                    "project_id": record.project_id,
                    "priority": record.priority,
                    "created_at": rfc3339(record.created_at),
                    "completed_at": rfc3339(record.completed_at),
                },
            )
        )
    return events
