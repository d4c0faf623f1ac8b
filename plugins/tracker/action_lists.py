"""Action lists: server-chosen ids, ordered items with stable ids that may link tasks, completion.

An item is ``{id, text, done, task_id}`` as stored; its representation adds
``task``, the linked task's title and status as they are now (one query per
response, however many lists and items it shows).  ``action_item_link``
holds the links too, so a task knows which lists link it: such a task
cannot be deleted (409), as a task others depend on cannot.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import listing
from .errors import Invalid, NotFound, Problem, listed
from .models import ActionItemLink, ActionList, Project, Sprint, Task
from .records import Collection, reference, require
from .schemas import ACTION_LIST, ACTION_LIST_STATUSES, MAX_ACTION_ITEMS, id_pattern
from .store import Event, check_version

Items = list[dict[str, Any]]

#: How an item is named in a path: its id, or (the older way, still understood) its position.
ITEM_ID = re.compile(id_pattern("I"))


def new_id() -> str:
    return "AL-" + secrets.token_urlsafe(15)  # 20 characters of [A-Za-z0-9_-]


def new_item_id() -> str:
    return "I-" + secrets.token_urlsafe(9)  # 12 characters of [A-Za-z0-9_-]


def action_item(body: Mapping[str, Any]) -> dict[str, Any]:
    """An item as stored, from a body's item: its id (a new one unless given), text, done (false) and task."""
    return {
        "id": body.get("id") or new_item_id(),
        "text": body.get("text"),
        "done": bool(body.get("done", False)),
        "task_id": body.get("task_id"),
    }


def item_problems(items: Items, pointer: Callable[[int, str], str]) -> list[Problem]:
    """What is wrong with ``items`` on their own: no text and no task, an id given twice."""
    problems = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if item["text"] is None and item["task_id"] is None:
            problems.append(Problem(pointer(index, "text"), "is required unless the item links a task (task_id)"))
        if item["id"] in first:
            problems.append(Problem(pointer(index, "id"), f"repeats the id of item {first[item['id']]}"))
        first.setdefault(item["id"], index)
    return problems


def missing_tasks(items: Items, pointer: Callable[[int, str], str]) -> list[Problem]:
    """The items whose task does not exist (one query)."""
    wanted = {item["task_id"] for item in items if item["task_id"] is not None}
    if not wanted:
        return []
    found = {row.id for row in Task.select(Task.id).where(Task.id.in_(sorted(wanted)))}
    return [
        Problem(pointer(index, "task_id"), f"task {item['task_id']} does not exist")
        for index, item in enumerate(items)
        if item["task_id"] is not None and item["task_id"] not in found
    ]


def in_list(index: int, name: str) -> str:
    return f"/items/{index}/{name}"


def _this_item(index: int, name: str) -> str:
    # A request about one item has that item as its body; the list's other items were checked when written.
    return f"/{name}"


def position(items: Items, ref: int | str) -> int:
    """Where the item ``ref`` (an id, or an index) is in ``items``; 404 when there is none."""
    if isinstance(ref, int):
        if not 0 <= ref < len(items):
            raise NotFound(f"The action list has no item {ref} (it has {len(items)}).")
        return ref
    for index, item in enumerate(items):
        if item["id"] == ref:
            return index
    raise NotFound(f"The action list has no item {ref}.")


def reorder(items: Items, order: Sequence[int | str]) -> Items:
    """``items`` rearranged so that position i holds the item ``order[i]`` names: all by id, or all by index."""
    if all(isinstance(ref, str) for ref in order):
        ids = [item["id"] for item in items]
        if sorted(order, key=str) != sorted(ids):
            raise Invalid([Problem("/order", "must name every item of the list once, by its id")])
        by_id = {item["id"]: item for item in items}
        return [by_id[str(ref)] for ref in order]
    if all(isinstance(ref, int) for ref in order):
        if sorted(order, key=int) != list(range(len(items))):
            raise Invalid([Problem("/order", f"must be a permutation of 0..{len(items) - 1}, each index once")])
        return [items[int(ref)] for ref in order]
    raise Invalid([Problem("/order", "must name the items all by id or all by index, not both")])


def linked_tasks(task_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{task_id: {title, status}}`` of the tasks that exist, in one query."""
    wanted = sorted(set(task_ids))
    if not wanted:
        return {}
    rows: Any = Task.select(Task.id, Task.title, Task.status).where(Task.id.in_(wanted)).tuples()
    return {task_id: {"title": title, "status": status} for task_id, title, status in rows}


def with_tasks(representations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``task`` to every item of the lists given (as rendered), from one query."""
    tasks = linked_tasks(
        item["task_id"] for found in representations for item in found["items"] if item["task_id"] is not None
    )
    for found in representations:
        found["items"] = [
            {**item, "task": tasks.get(item["task_id"]) if item["task_id"] is not None else None}
            for item in found["items"]
        ]
    return representations


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

    # -- representation --------------------------------------------------------------

    def render(self, record: Any) -> dict[str, Any]:
        return with_tasks([super().render(record)])[0]

    def render_many(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        return with_tasks([super(ActionLists, self).render(record) for record in records])

    def read(self, record_id: str) -> dict[str, Any]:
        return with_tasks([super().read(record_id)])[0]

    # -- rules -----------------------------------------------------------------------

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
        items = values.get("items") or []
        require(*item_problems(items, in_list))
        require(*missing_tasks(items, in_list))

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

    def after_create(self, record: Any, events: list[Event]) -> None:
        write_links(record.id, record.items)

    def after_update(
        self, record: Any, before: Mapping[str, Any], changes: Mapping[str, Any], events: list[Any]
    ) -> None:
        if "items" in changes:
            write_links(record.id, record.items, replace=True)
        if changes.get("status") == "completed":
            events.append(("action_list.completed", self.event_payload(record)))

    def before_delete(self, record: Any, cascade: bool, events: list[Event]) -> None:
        ActionItemLink.delete().where(ActionItemLink.action_list == record.id).execute()

    # -- items ---------------------------------------------------------------------

    def edit_items(
        self,
        list_id: str,
        edit: Callable[[Items], Items],
        if_match: frozenset[int] | None,
        pointer: Callable[[int, str], str] = in_list,
    ) -> Any:
        """Apply ``edit`` to the list's items as one versioned change; ``pointer`` names an item in errors."""
        with self.store.write() as events:
            record = self.store.lock(ActionList, list_id, "Action list")
            check_version(record, if_match)
            items = edit([dict(item) for item in record.items])
            if len(items) > MAX_ACTION_ITEMS:
                raise Invalid([Problem("/items", f"an action list holds at most {MAX_ACTION_ITEMS} items")])
            require(*item_problems(items, pointer))
            require(*missing_tasks(items, pointer))
            if items != record.items:
                self.apply(record, {"items": items}, events)
        return record

    def add_item(self, list_id: str, body: Mapping[str, Any], if_match: frozenset[int] | None) -> Any:
        item = action_item(body)
        return self.edit_items(list_id, lambda items: [*items, item], if_match, _this_item)

    def update_item(
        self, list_id: str, ref: int | str, body: Mapping[str, Any], if_match: frozenset[int] | None
    ) -> Any:
        """Merge ``body`` (text, done, task_id; null clears text or task_id) into the item ``ref``."""

        def edit(items: Items) -> Items:
            items[position(items, ref)].update(body)
            return items

        return self.edit_items(list_id, edit, if_match, _this_item)

    def delete_item(self, list_id: str, ref: int | str, if_match: frozenset[int] | None) -> Any:
        def edit(items: Items) -> Items:
            at = position(items, ref)
            return items[:at] + items[at + 1 :]

        return self.edit_items(list_id, edit, if_match)

    def reorder_items(self, list_id: str, order: Sequence[int | str], if_match: frozenset[int] | None) -> Any:
        return self.edit_items(list_id, lambda items: reorder(items, order), if_match)

    def complete(self, list_id: str, if_match: frozenset[int] | None) -> Any:
        return self.patch(list_id, {"status": "completed"}, if_match)


def write_links(list_id: str, items: Items, *, replace: bool = False) -> None:
    if replace:
        ActionItemLink.delete().where(ActionItemLink.action_list == list_id).execute()
    rows = [
        {"action_list": list_id, "item_id": item["id"], "task": item["task_id"]}
        for item in items
        if item["task_id"] is not None
    ]
    if rows:
        ActionItemLink.insert_many(rows).execute()


def lists_linking(task_ids: Any, *, except_lists: Any = None) -> list[str]:
    """The action lists (other than ``except_lists``) that link one of ``task_ids`` (ids, or a query of them)."""
    links = ActionItemLink.select(ActionItemLink.action_list).distinct().where(ActionItemLink.task.in_(task_ids))
    if except_lists is not None:
        links = links.where(ActionItemLink.action_list.not_in(except_lists))
    return sorted(row.action_list_id for row in links)


def named(lists: list[str]) -> str:
    """``action list AL-1``, ``action lists AL-1, AL-2 and 3 more``: how a 409 names the lists in the way."""
    shown = lists[:3] + ([f"{len(lists) - 3} more"] if len(lists) > 3 else [])
    return f"action list{'s' if len(lists) > 1 else ''} {listed(shown)}"
