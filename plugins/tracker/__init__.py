"""tracker: TaskMan's REST API (projects, sprints, tasks, action lists) under ``/api/v1``.

The rules are plain Python in the collection modules (:mod:`.tasks`,
:mod:`.sprints`, :mod:`.projects`, :mod:`.action_lists`) over the models
in :mod:`.models`; :mod:`.schemas` is the single source of the request
validation and of the OpenAPI fragment (:mod:`.openapi`); :mod:`.http` is
the Falcon glue.  Every committed change fires ``taskman_event``.
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
from .projects import Projects
from .schemas import ACTION_ITEM, ITEM_REORDER, SPRINT_CLOSE, SPRINT_START, STATUS_CHANGE
from .settings import TrackerSettings
from .sprints import Sprints
from .store import Store
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
    return routes(Store(taskman.database, runtime.fire_event), runtime.settings(TrackerSettings))


@hookimpl
def taskman_openapi() -> dict[str, Any]:
    return openapi.fragment(PREFIX)


@hookimpl
def taskman_access(runtime: taskman.Runtime) -> dict[str, str]:
    """For the auth plugin: reading needs the ``read`` scope, changing anything ``write``, importing ``admin``."""
    store = Store(taskman.database, runtime.fire_event)
    rules = {template: "by-method" for template, _ in routes(store, runtime.settings(TrackerSettings))}
    return {**rules, IMPORT: "admin"}
