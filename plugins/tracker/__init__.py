"""tracker: TaskMan's REST API (projects, sprints, tasks, action lists) under ``/api/v1``.

The rules are plain Python in the collection modules (:mod:`.tasks`,
:mod:`.sprints`, :mod:`.projects`, :mod:`.action_lists`) over the models
in :mod:`.models`; :mod:`.schemas` is the single source of the request
validation and of the OpenAPI fragment (:mod:`.openapi`); :mod:`.http` is
the Falcon glue.  Every change records its events in its own transaction
(``runtime.record_events``: the ``events`` plugin's outbox when it is on)
and the listeners hear of them once it has committed; each record's
history is served by the ``events`` plugin (the activity hooks below).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import taskman
from taskman import hookimpl

from . import http, openapi
from .action_lists import ActionLists
from .comments import Comments
from .models import ActionList, Project, Sprint, Task
from .projects import Projects
from .schemas import ACTION_ITEM, ITEM_REORDER, SPRINT_CLOSE, SPRINT_START, STATUS_CHANGE
from .settings import TrackerSettings
from .sprints import Sprints
from .store import ANY_ID, Store
from .tasks import Tasks

PREFIX = "/api/v1"
#: Loading a document writes anything anywhere, as given: an admin's job.
IMPORT = f"{PREFIX}/import"


def routes(store: Store, settings: TrackerSettings) -> list[tuple[str, object]]:
    """Every tracker route, with the app's settings."""
    once = http.Idempotency(datetime.timedelta(hours=settings.idempotency_ttl_hours))
    tasks = Tasks(store, settings.transition_table())
    projects, sprints, lists, comments = Projects(store), Sprints(store), ActionLists(store), Comments(store)
    p, s, t, a = (f"{PREFIX}/{name}" for name in ("projects", "sprints", "tasks", "action-lists"))
    return [
        (p, http.CollectionResource(projects, p, once)),
        (f"{p}/{{project_id}}", http.ItemResource(projects, "project_id", cascade=True)),
        (f"{p}/{{project_id}}/metrics", http.ReportResource("project_id", projects.metrics)),
        (f"{p}/{{project_id}}/velocity", http.ReportResource("project_id", projects.velocity)),
        (s, http.CollectionResource(sprints, s, once)),
        (f"{s}/{{sprint_id}}", http.ItemResource(sprints, "sprint_id")),
        (
            f"{s}/{{sprint_id}}/start",
            http.ActionResource(sprints, "sprint_id", sprints.start, SPRINT_START, once),
        ),
        (
            f"{s}/{{sprint_id}}/close",
            http.ActionResource(
                sprints,
                "sprint_id",
                lambda i, body, m: sprints.close(i, body.get("carry_over", "backlog"), m),
                SPRINT_CLOSE,
                once,
            ),
        ),
        (f"{s}/{{sprint_id}}/burndown", http.ReportResource("sprint_id", sprints.burndown)),
        (f"{s}/{{sprint_id}}/progress", http.ReportResource("sprint_id", sprints.progress)),
        (t, http.CollectionResource(tasks, t, once)),
        (f"{t}/batch", http.BatchResource(tasks, t, once)),
        (f"{t}/{{task_id}}", http.ItemResource(tasks, "task_id")),
        (f"{t}/{{task_id}}/comments", http.CommentsResource(comments, t, once)),
        (f"{t}/{{task_id}}/comments/{{comment_id}}", http.CommentResource(comments)),
        (
            f"{t}/{{task_id}}/status",
            http.ActionResource(
                tasks, "task_id", lambda i, body, m: tasks.change_status(i, body["status"], m), STATUS_CHANGE, once
            ),
        ),
        (a, http.CollectionResource(lists, a, once)),
        (f"{a}/{{list_id}}", http.ItemResource(lists, "list_id")),
        (f"{a}/{{list_id}}/items", http.ActionResource(lists, "list_id", lists.add_item, ACTION_ITEM, once)),
        (
            f"{a}/{{list_id}}/items/reorder",
            http.ActionResource(
                lists, "list_id", lambda i, body, m: lists.reorder_items(i, body["order"], m), ITEM_REORDER, once
            ),
        ),
        (f"{a}/{{list_id}}/items/{{item}}", http.ItemOfListResource(lists)),
        (
            f"{a}/{{list_id}}/complete",
            http.ActionResource(lists, "list_id", lambda i, body, m: lists.complete(i, m), None, once),
        ),
        (f"{PREFIX}/export", http.ExportResource(store)),
        (IMPORT, http.ImportResource(store, once, projects)),
    ]


# -- hooks ----------------------------------------------------------------------------


@hookimpl
def taskman_settings() -> type:
    return TrackerSettings


@hookimpl
def taskman_migrations() -> Path:
    return Path(__file__).parent / "migrations"


@hookimpl
def taskman_routes(runtime: taskman.Runtime) -> list[tuple[str, object]]:
    # Models bind to taskman.database, which is this app's database whenever this app serves.
    store = Store(taskman.database, runtime.fire_event, record=runtime.record_events)
    return routes(store, runtime.settings(TrackerSettings))


@hookimpl
def taskman_openapi() -> dict[str, Any]:
    return openapi.fragment(PREFIX)


@hookimpl
def taskman_access(runtime: taskman.Runtime) -> dict[str, str]:
    """For the auth plugin: reading needs the ``read`` scope, changing anything ``write``, importing ``admin``."""
    store = Store(taskman.database, runtime.fire_event)
    rules = {template: "by-method" for template, _ in routes(store, runtime.settings(TrackerSettings))}
    return {**rules, IMPORT: "admin"}


#: The events that make a record's activity: its own changes (derived events, such as
#: ``task.status_changed`` beside the ``task.updated`` that carries the same change, are left out),
#: its arrival by an import included.
ACTIVITY_VERBS = frozenset({"created", "imported", "updated", "deleted", "started", "closed", "cascade_deleted"})
#: Comments have no activity of their own: they are part of their task's.
COMMENT_VERBS = frozenset({"created", "imported", "updated", "deleted"})
#: Kind of record → (its id's key in event payloads, the activity route, the OpenAPI tag, its model).
ACTIVITY = {
    "project": ("project_id", f"{PREFIX}/projects/{{project_id}}/activity", openapi.TAGS["Project"][0], Project),
    "sprint": ("sprint_id", f"{PREFIX}/sprints/{{sprint_id}}/activity", openapi.TAGS["Sprint"][0], Sprint),
    "task": ("task_id", f"{PREFIX}/tasks/{{task_id}}/activity", openapi.TAGS["Task"][0], Task),
    "action_list": (
        "action_list_id",
        f"{PREFIX}/action-lists/{{list_id}}/activity",
        openapi.TAGS["ActionList"][0],
        ActionList,
    ),
}


@hookimpl
def taskman_event_subject(name: str, payload: dict[str, Any]) -> tuple[str, str] | None:
    """For the events plugin: a tracker record's own changes belong to its activity, a comment's to its task's."""
    kind, _, verb = name.partition(".")
    if kind == "comment":
        task_id = payload.get("task_id")
        return ("task", task_id) if verb in COMMENT_VERBS and isinstance(task_id, str) else None
    declared = ACTIVITY.get(kind)
    if declared is None or verb not in ACTIVITY_VERBS:
        return None
    record_id = payload.get(declared[0])
    return (kind, record_id) if isinstance(record_id, str) else None


def _exists(model: Any) -> Any:
    def exists(record_id: str) -> bool:
        return bool(ANY_ID.fullmatch(record_id)) and model.get_or_none(model.id == record_id) is not None

    return exists


@hookimpl
def taskman_activity_routes() -> list[dict[str, Any]]:
    """For the events plugin: serve each record's history beside it (a deleted record's too)."""
    return [
        {"kind": kind, "route": route, "tag": tag, "exists": _exists(model)}
        for kind, (_, route, tag, model) in ACTIVITY.items()
    ]
