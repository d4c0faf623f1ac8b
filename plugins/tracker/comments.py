"""Comments on tasks: written by the caller, edited or deleted by their author or an admin.

The author is the caller's name as the identity plugin gave it (the auth
plugin's token name), or None for a caller without one.  A comment lives
under its task: every route names both, and a comment id under another
task is a 404.  Deleting a task deletes its comments (:mod:`.tasks`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from . import listing
from .errors import Forbidden, NotFound
from .listing import Page
from .models import Comment, Task
from .records import Collection
from .schemas import COMMENT
from .store import change, check_version, get_or_404, update_versioned


@attrs.frozen
class Caller:
    """Who sends a request: a name (None: anonymous) and whether an admin."""

    name: str | None
    admin: bool = False

    def may_change(self, comment: Comment) -> bool:
        """An author changes their own comments; an admin anyone's.  Anonymous callers share one author, None."""
        return self.admin or comment.author == self.name


def new_id() -> str:
    return "C-" + secrets.token_urlsafe(15)  # 20 characters of [A-Za-z0-9_-]


class Comments(Collection):
    resource = COMMENT
    model = Comment
    label = "comment"
    listing = listing.ListDefinition(
        model=Comment,
        filters={"author": listing.equals(Comment.author, 100)},
        sortable={
            "created_at": listing.Sortable(Comment.created_at, "datetime"),
            "updated_at": listing.Sortable(Comment.updated_at, "datetime"),
            "id": listing.Sortable(Comment.id, "text"),
        },
    )

    def _task(self, task_id: str) -> Task:
        return get_or_404(Task, task_id, "Task")  # type: ignore[no-any-return]

    def page_of(self, task_id: str, params: Mapping[str, Any]) -> Page:
        self._task(task_id)
        return listing.list_page(self.listing, params, Comment.select().where(Comment.task == task_id))

    def read_of(self, task_id: str, comment_id: str) -> dict[str, Any]:
        found = self.read(comment_id)
        if found["task_id"] != task_id:
            raise NotFound(f"Task {task_id} has no comment {comment_id}.")
        return found

    def add(self, task_id: str, body: Mapping[str, Any], caller: Caller) -> Comment:
        with self.store.write() as events:
            task = self._task(task_id)
            now = self.store.clock()
            comment: Comment = Comment.create(
                id=new_id(),
                task=task.id,
                author=caller.name,
                body=body["body"],
                created_at=now,
                updated_at=now,
                version=1,
            )
            events.append(("comment.created", self.payload(comment, task.project_id)))
        return comment

    def _locked(self, task_id: str, comment_id: str, caller: Caller, if_match: frozenset[int] | None) -> Comment:
        comment: Comment = self.store.lock(Comment, comment_id, "Comment")
        if comment.task_id != task_id:
            raise NotFound(f"Task {task_id} has no comment {comment_id}.")
        check_version(comment, if_match)
        if not caller.may_change(comment):
            raise Forbidden("Only the comment's author or an admin may change or delete it.")
        return comment

    def edit(
        self, task_id: str, comment_id: str, body: Mapping[str, Any], caller: Caller, if_match: frozenset[int] | None
    ) -> Comment:
        with self.store.write() as events:
            comment = self._locked(task_id, comment_id, caller, if_match)
            if "body" in body and body["body"] != comment.body:
                now = self.store.clock()
                old = comment.body
                update_versioned(Comment, comment, {"body": body["body"], "edited_at": now}, now)
                changes = {"body": change(old, comment.body)}
                events.append(("comment.updated", {**self.payload(comment), "changed": ["body"], "changes": changes}))
        return comment

    def remove(self, task_id: str, comment_id: str, caller: Caller, if_match: frozenset[int] | None) -> None:
        with self.store.write() as events:
            comment = self._locked(task_id, comment_id, caller, if_match)
            Comment.delete().where(Comment.id == comment.id).execute()
            events.append(("comment.deleted", self.payload(comment)))

    def payload(self, comment: Comment, project_id: str | None = None) -> dict[str, Any]:
        """Ids, not the body (an edit's ``changes`` hold the old and new text), and ``task_id`` and its project.

        With ``task_id`` a comment's events are part of its task's activity.
        """
        if project_id is None:
            project_id = Task.select(Task.project).where(Task.id == comment.task_id).scalar()
        return {
            "comment_id": comment.id,
            "task_id": comment.task_id,
            "project_id": project_id,
            "author": comment.author,
        }
