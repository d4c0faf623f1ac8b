"""Projects: delete only when empty (or with cascade), metrics, velocity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee

from . import analytics, listing
from .action_lists import lists_linking, named
from .errors import Conflict, counted, listed
from .models import ActionItemLink, ActionList, Comment, Project, Sprint, Task, TaskAssignee, TaskDependency, TaskLabel
from .records import Collection, not_before, require
from .schemas import PROJECT, PROJECT_STATUSES
from .store import Event, change, iso_date, statement, update_versioned


class Projects(Collection):
    resource = PROJECT
    model = Project
    label = "project"
    listing = listing.ListDefinition(
        model=Project,
        filters={
            "status": listing.one_of(Project.status, PROJECT_STATUSES),
            "owner": listing.equals(Project.owner, 100),
            "q": listing.text_search(Project.name, Project.mission),
        },
        sortable={
            "created_at": listing.Sortable(Project.created_at, "datetime"),
            "updated_at": listing.Sortable(Project.updated_at, "datetime"),
            "name": listing.Sortable(Project.name, "text"),
            "id": listing.Sortable(Project.id, "text"),
        },
    )

    def check_merged(self, record: Any, values: Mapping[str, Any]) -> None:
        require(not_before(values, "start_date", "target_end_date"))

    def before_delete(self, record: Project, cascade: bool, events: list[Event]) -> None:
        children = {
            "sprint": Sprint.select().where(Sprint.project == record.id).count(),
            "task": Task.select().where(Task.project == record.id).count(),
            "action list": ActionList.select().where(ActionList.project == record.id).count(),
        }
        if not cascade:
            held = listed([counted(n, kind) for kind, n in children.items() if n])
            if held:
                raise Conflict(f"Project {record.id} still has {held}; delete with ?cascade=true to remove them too.")
            return
        tasks = Task.select(Task.id).where(Task.project == record.id)
        for link in (TaskLabel, TaskAssignee, Comment):
            link.delete().where(link.task.in_(tasks)).execute()
        outside = TaskDependency.select().where(
            TaskDependency.depends_on.in_(tasks) & TaskDependency.task.not_in(tasks)
        )
        if outside.exists():
            raise Conflict(f"Project {record.id} cannot be deleted: tasks of other projects depend on its tasks.")
        own_lists = ActionList.select(ActionList.id).where(ActionList.project == record.id)
        linking = lists_linking(tasks, except_lists=own_lists)
        if linking:
            raise Conflict(
                f"Project {record.id} cannot be deleted: {named(linking)} of another project links its tasks; "
                "unlink the items first."
            )
        TaskDependency.delete().where(TaskDependency.task.in_(tasks)).execute()
        ActionItemLink.delete().where(ActionItemLink.action_list.in_(own_lists)).execute()
        ActionList.delete().where(ActionList.project == record.id).execute()
        # Action lists of other projects may point at this project's sprints: they keep their own project and
        # lose the sprint, a change of their own (a new version, an event), as when the sprint alone is deleted.
        now = self.store.clock()
        elsewhere = ActionList.select().where(
            ActionList.sprint.in_(Sprint.select(Sprint.id).where(Sprint.project == record.id))
        )
        for action_list in elsewhere.order_by(ActionList.id):
            sprint_id = action_list.sprint_id
            update_versioned(ActionList, action_list, {"sprint_id": None}, now)
            events.append(
                (
                    "action_list.updated",
                    {
                        "action_list_id": action_list.id,
                        "changed": ["sprint_id"],
                        "changes": {"sprint_id": change(sprint_id, None)},
                    },
                )
            )
        Task.delete().where(Task.project == record.id).execute()
        Sprint.delete().where(Sprint.project == record.id).execute()
        events.append(
            (
                "project.cascade_deleted",
                {"project_id": record.id, **{k.replace(" ", "_") + "s": n for k, n in children.items()}},
            )
        )

    def metrics(self, project_id: str) -> dict[str, Any]:
        with self.store.read():
            project = self.get(project_id)
            counts = status_counts(project.id)
        return {"project_id": project.id, **analytics.project_metrics(counts)}

    def velocity(self, project_id: str) -> dict[str, Any]:
        with self.store.read():
            project = self.get(project_id)
            query: Any = (
                Sprint.select(Sprint.id, Sprint.name, Sprint.end_date, Sprint.committed_points, Sprint.completed_points)
                .where((Sprint.project == project.id) & (Sprint.status == "closed"))
                .order_by(Sprint.end_date, Sprint.id)
                .dicts()
            )
            closed = [{**row, "end_date": iso_date(row["end_date"])} for row in query]
        return {"project_id": project.id, **analytics.velocity(closed)}


def health_event(project_id: str) -> Event:
    """``project.health_changed`` with the score of the project's tasks now (inside the write transaction)."""
    counts = status_counts(project_id)
    score = analytics.health_score(analytics.project_metrics(counts))
    return ("project.health_changed", {"project_id": project_id, "score": score})


def status_counts(project_id: str) -> dict[str, int]:
    """The project's tasks by status (every task write fires a health event that counts them)."""
    database, sql = statement(
        Task,
        "status_counts",
        lambda: Task.select(Task.status, peewee.fn.COUNT(Task.id)).where(Task.project == "").group_by(Task.status),
    )
    return {status: int(count) for status, count in database.execute_sql(sql, (project_id,)).fetchall()}
