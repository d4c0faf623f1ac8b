"""Action lists: server-chosen ids, ordered items edited by index, completion."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from . import listing
from .errors import Invalid, NotFound, Problem
from .models import ActionList, Project, Sprint
from .records import Collection, reference
from .schemas import ACTION_LIST, ACTION_LIST_STATUSES, MAX_ACTION_ITEMS, id_pattern
from .store import check_version

Items = list[dict[str, Any]]


def action_item(body: Mapping[str, Any]) -> dict[str, Any]:
    """An item as stored: its text, and ``done`` (false unless given)."""
    return {"text": body["text"], "done": bool(body.get("done", False))}


def new_id() -> str:
    return "AL-" + secrets.token_urlsafe(15)  # 20 characters of [A-Za-z0-9_-]


def reorder(items: Items, order: list[int]) -> Items:
    """``items`` rearranged so that position i holds the item that was at ``order[i]``."""
    if sorted(order) != list(range(len(items))):
        raise Invalid([Problem("/order", f"must be a permutation of 0..{len(items) - 1}, each index once")])
    return [items[i] for i in order]


class ActionLists(Collection):
    resource = ACTION_LIST
    model = ActionList
    label = "action_list"
    listing = listing.ListDefinition(
        model=ActionList,
        filters={
            "project_id": listing.optional_reference(ActionList.project, re.compile(id_pattern("P"))),
            "sprint_id": listing.optional_reference(ActionList.sprint, re.compile(id_pattern("S"))),
            "status": listing.one_of(ActionList.status, ACTION_LIST_STATUSES),
            "owner": listing.equals(ActionList.owner, 100),
        },
        sortable={
            "created_at": listing.Sortable(ActionList.created_at, "datetime"),
            "updated_at": listing.Sortable(ActionList.updated_at, "datetime"),
            "completed_at": listing.Sortable(ActionList.completed_at, "datetime", nullable=True),
            "due_date": listing.Sortable(ActionList.due_date, "date", nullable=True),
            "title": listing.Sortable(ActionList.title, "text"),
            "id": listing.Sortable(ActionList.id, "text"),
        },
    )

    def create(self, body: Mapping[str, Any]) -> Any:
        return super().create({**body, "id": new_id()})

    def check_create(self, values: dict[str, Any]) -> None:
        self.check_merged(None, values)
        if values["status"] == "completed":
            values["completed_at"] = self.store.clock()

    def check_merged(self, record: Any, values: Mapping[str, Any]) -> None:
        project = reference(Project, values.get("project_id"), "/project_id", "project")
        sprint = reference(Sprint, values.get("sprint_id"), "/sprint_id", "sprint")
        if sprint is not None and project is not None and sprint.project_id != project.id:
            raise Invalid([Problem("/sprint_id", f"sprint {sprint.id} belongs to project {sprint.project_id}")])

    def current_values(self, record: Any) -> dict[str, Any]:
        values = super().current_values(record)
        values["items"] = [dict(item) for item in record.items]
        return values

    def parse(self, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("items") is not None:
            values["items"] = [action_item(item) for item in values["items"]]
        return super().parse(values)

    def check_changes(self, record: Any, changes: dict[str, Any]) -> dict[str, Any]:
        if "status" in changes:
            changes["completed_at"] = self.store.clock() if changes["status"] == "completed" else None
        return changes

    def after_update(
        self, record: Any, before: Mapping[str, Any], changes: Mapping[str, Any], events: list[Any]
    ) -> None:
        if changes.get("status") == "completed":
            events.append(("action_list.completed", self.event_payload(record)))

    # -- items ---------------------------------------------------------------------

    def edit_items(self, list_id: str, edit: Callable[[Items], Items], if_match: frozenset[int] | None) -> Any:
        """Apply ``edit`` to the list's items as one versioned change."""
        with self.store.write() as events:
            record = self.store.lock(ActionList, list_id, "Action list")
            check_version(record, if_match)
            items = edit([dict(item) for item in record.items])
            if len(items) > MAX_ACTION_ITEMS:
                raise Invalid([Problem("/items", f"an action list holds at most {MAX_ACTION_ITEMS} items")])
            if items != record.items:
                self.apply(record, {"items": items}, events)
        return record

    def complete(self, list_id: str, if_match: frozenset[int] | None) -> Any:
        return self.patch(list_id, {"status": "completed"}, if_match)


def item_at(items: Items, index: int) -> dict[str, Any]:
    if not 0 <= index < len(items):
        raise NotFound(f"The action list has no item {index} (it has {len(items)}).")
    return items[index]
