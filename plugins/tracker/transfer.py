"""Export and import: the tracker's records (or one project's) as one JSON document, and back.

An export is every record's representation, as ``GET`` gives it (an action
list's items without the derived ``task``), each collection sorted by id, so
the same data always exports to the same document.  An import loads such a
document in one transaction: records are written as given (statuses,
versions and timestamps included: the transition table is not replayed),
after the checks that keep the data whole (references exist, a sprint's
tasks are of its project, no dependency cycle, one active sprint per
project).  A record whose id exists already is left alone when it is equal
to the document's, and refuses the whole import (409) when it is not; so
importing a document twice changes nothing the second time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .action_lists import item_problems
from .errors import Conflict, Invalid, Problem, counted, listed
from .models import (
    ActionItemLink,
    ActionList,
    Comment,
    Project,
    Sprint,
    Task,
    TaskAssignee,
    TaskDependency,
    TaskLabel,
)
from .projects import health_event
from .records import not_before
from .schemas import ACTION_ITEM, ACTION_LIST, COMMENT, PROJECT, SPRINT, TASK, Resource, id_schema
from .sprints import longest_sprint
from .store import Event, Store, get_or_404, present, render
from .validation import MAX_PROBLEMS, parse_date, parse_date_time

FORMAT = "taskman-export"
VERSION = 1
#: The most records of one kind a document holds: a bound on the cost of checking it (the body size limit,
#: ``limits.max_body_bytes``, usually comes first).
MAX_RECORDS = 100_000
#: Rows per INSERT and ids per ``IN (...)``: well inside every database's limit on bound parameters.
CHUNK = 200


@attrs.frozen
class Section:
    key: str  # the document's key: "action_lists"
    resource: Resource
    model: Any
    label: str  # the record's name in events: "action_list"


SECTIONS = (
    Section("projects", PROJECT, Project, "project"),
    Section("sprints", SPRINT, Sprint, "sprint"),
    Section("tasks", TASK, Task, "task"),
    Section("action_lists", ACTION_LIST, ActionList, "action_list"),
    Section("comments", COMMENT, Comment, "comment"),
)
BY_KEY = {section.key: section for section in SECTIONS}

_ITEM_FIELDS: dict[str, Any] = ACTION_ITEM["properties"]
_STORED_ITEM = {
    "type": "object",
    "description": "An item as exported: its id, text, done and the task it links (null: none).",
    "properties": {
        **_ITEM_FIELDS,
        "text": {**_ITEM_FIELDS["text"], "type": ["string", "null"]},
        "task_id": {**_ITEM_FIELDS["task_id"], "type": ["string", "null"]},
    },
    "required": ["id"],
    "additionalProperties": False,
}


def record_schema(resource: Resource) -> dict[str, Any]:
    """A record as a document holds it: every field of the representation, the required ones required."""
    properties: dict[str, Any] = {}
    for field in resource.fields:
        schema = dict(field.schema)
        if field.name == "items":
            schema = {**schema, "items": _STORED_ITEM}
        if field.nullable:
            kind = schema["type"]
            schema["type"] = [kind, "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        properties[field.name] = schema
    required = [f.name for f in resource.fields if f.required]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def document_schema(record: Any = record_schema) -> dict[str, Any]:
    """The document's schema; ``record(resource)`` gives each record's (a schema, or a $ref for OpenAPI)."""
    return {
        "type": "object",
        "description": "What GET /export gives and POST /import takes.",
        "properties": {
            "format": {"type": "string", "enum": [FORMAT]},
            "version": {"type": "integer", "enum": [VERSION]},
            "project_id": {
                **id_schema("P"),
                "type": ["string", "null"],
                "description": "The project exported; null: all",
            },
            **{
                s.key: {"type": "array", "maxItems": MAX_RECORDS, "items": record(s.resource), "default": []}
                for s in SECTIONS
            },
        },
        "required": ["format", "version"],
        "additionalProperties": False,
    }


IMPORT_SCHEMA = document_schema()


# -- export ---------------------------------------------------------------------------


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def export(store: Store, project_id: str | None = None) -> dict[str, Any]:
    """Every record (or ``project_id``'s: its sprints, tasks, action lists and their comments), from one snapshot."""
    with store.read():
        queries: dict[str, Any] = {s.key: s.model.select() for s in SECTIONS}
        if project_id is not None:
            get_or_404(Project, project_id, "Project")
            tasks = Task.select(Task.id).where(Task.project == project_id)
            queries["projects"] = queries["projects"].where(Project.id == project_id)
            queries["sprints"] = queries["sprints"].where(Sprint.project == project_id)
            queries["tasks"] = queries["tasks"].where(Task.project == project_id)
            queries["action_lists"] = queries["action_lists"].where(ActionList.project == project_id)
            queries["comments"] = queries["comments"].where(Comment.task.in_(tasks))
        document: dict[str, Any] = {"format": FORMAT, "version": VERSION, "project_id": project_id}
        for section in SECTIONS:
            rows = queries[section.key].order_by(section.model.id)
            document[section.key] = [render(section.resource, row) for row in rows]
    return document


# -- import -----------------------------------------------------------------------------


def _values(resource: Resource, record: Mapping[str, Any]) -> dict[str, Any]:
    """A document's record as column values: defaults for what it leaves out, dates and numbers parsed."""
    values: dict[str, Any] = {}
    for field in resource.fields:
        value = record.get(field.name, None if field.read_only else field.default)
        if isinstance(value, list):
            value = list(value)
        fmt, kind = field.schema.get("format"), field.schema.get("type")
        if value is not None:
            if fmt == "date":
                value = parse_date(value)
            elif fmt == "date-time":
                value = parse_date_time(value)
            elif kind == "number":
                value = float(value)
        if field.name == "items":
            value = [
                {"id": i["id"], "text": i.get("text"), "done": bool(i.get("done", False)), "task_id": i.get("task_id")}
                for i in value
            ]
        values[field.name] = value
    return values


def _shown(resource: Resource, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as an export shows them (what an existing record is compared with)."""
    return {f.name: present(values[f.name], f.schema.get("format")) for f in resource.fields}


class Import:
    """One import: the document's records, checked against each other and the database, then written."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.records = {s.key: [_values(s.resource, r) for r in document.get(s.key, [])] for s in SECTIONS}
        self.problems: list[Problem] = []
        #: The records to write (index in the document, values), by section; the rest exist already, equal.
        self.new: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.unchanged: dict[str, int] = {}

    def problem(self, key: str, index: int, field: str, detail: str) -> None:
        self.problems.append(Problem(f"/{key}/{index}{field and '/' + field}", detail))

    # -- which records are new --------------------------------------------------------

    def sort_out(self) -> None:
        """Split each section into new records and existing equal ones; 409 for existing different ones."""
        clashes: list[str] = []
        for section in SECTIONS:
            first: dict[str, int] = {}
            for index, values in enumerate(self.records[section.key]):
                if values["id"] in first:
                    self.problem(section.key, index, "id", f"repeats the id of /{section.key}/{first[values['id']]}")
                first.setdefault(values["id"], index)
            existing = _existing(section, list(first))
            self.new[section.key] = []
            self.unchanged[section.key] = 0
            for index, values in enumerate(self.records[section.key]):
                if first[values["id"]] != index:
                    continue
                found = existing.get(values["id"])
                if found is None:
                    self.new[section.key].append((index, values))
                elif found == _shown(section.resource, values):
                    self.unchanged[section.key] += 1
                else:
                    clashes.append(values["id"])
        self.raise_problems()
        if clashes:
            shown = listed([*clashes[:5], *([counted(len(clashes) - 5, "other")] if len(clashes) > 5 else [])])
            raise Conflict(f"{shown} already exist with other values; nothing was imported.")

    # -- the checks that keep the data whole ----------------------------------------------

    def check(self) -> None:
        named = {p for key in ("sprints", "tasks", "action_lists") for p in self._referenced(key, "project_id")}
        ours = {v["id"] for v in self.records["projects"]}
        projects = ours | _ids_in(Project, sorted(named - ours))
        sprints = self._sprints_known()
        task_ids = self._tasks_known()
        for index, v in self.new["projects"]:
            if (p := not_before(v, "start_date", "target_end_date")) is not None:
                self.problem("projects", index, p.pointer[1:], p.detail)
        self._check_sprints(projects)
        for index, v in self.new["tasks"]:
            if v["project_id"] not in projects:
                self.problem("tasks", index, "project_id", f"project {v['project_id']} does not exist")
            sprint = v["sprint_id"]
            if sprint is not None:
                if sprint not in sprints:
                    self.problem("tasks", index, "sprint_id", f"sprint {sprint} does not exist")
                elif sprints[sprint] != v["project_id"]:
                    self.problem("tasks", index, "sprint_id", f"sprint {sprint} belongs to project {sprints[sprint]}")
            for at, other in enumerate(v["depends_on"]):
                if other == v["id"]:
                    self.problem("tasks", index, f"depends_on/{at}", "a task cannot depend on itself")
                elif other not in task_ids:
                    self.problem("tasks", index, f"depends_on/{at}", f"task {other} does not exist")
        self._check_cycles()
        for index, v in self.new["action_lists"]:
            if v["project_id"] is not None and v["project_id"] not in projects:
                self.problem("action_lists", index, "project_id", f"project {v['project_id']} does not exist")
            sprint = v["sprint_id"]
            if sprint is not None and sprint not in sprints:
                self.problem("action_lists", index, "sprint_id", f"sprint {sprint} does not exist")
            elif sprint is not None and v["project_id"] is not None and sprints[sprint] != v["project_id"]:
                self.problem(
                    "action_lists", index, "sprint_id", f"sprint {sprint} belongs to project {sprints[sprint]}"
                )
            self.problems += item_problems(v["items"], _in_items(index))
            for at, item in enumerate(v["items"]):
                if item["task_id"] is not None and item["task_id"] not in task_ids:
                    self.problem("action_lists", index, f"items/{at}/task_id", f"task {item['task_id']} does not exist")
        for index, v in self.new["comments"]:
            if v["task_id"] not in task_ids:
                self.problem("comments", index, "task_id", f"task {v['task_id']} does not exist")
        self.raise_problems()

    def _referenced(self, key: str, field: str) -> set[str]:
        return {v[field] for _, v in self.new[key] if v[field] is not None}

    def _sprints_known(self) -> dict[str, str]:
        """``{sprint id: its project}`` of every sprint the new records may name."""
        ours = {v["id"]: v["project_id"] for v in self.records["sprints"]}
        wanted = (self._referenced("tasks", "sprint_id") | self._referenced("action_lists", "sprint_id")) - set(ours)
        for chunk in _chunks(sorted(wanted)):
            rows: Any = Sprint.select(Sprint.id, Sprint.project).where(Sprint.id.in_(chunk)).tuples()
            ours.update(rows)
        return ours

    def _tasks_known(self) -> set[str]:
        wanted = {other for _, v in self.new["tasks"] for other in v["depends_on"]}
        wanted |= {i["task_id"] for _, v in self.new["action_lists"] for i in v["items"] if i["task_id"] is not None}
        wanted |= self._referenced("comments", "task_id")
        ours = {v["id"] for v in self.records["tasks"]}
        return ours | _ids_in(Task, sorted(wanted - ours))

    def _check_sprints(self, projects: set[str]) -> None:
        active: dict[str, list[str]] = defaultdict(list)
        for index, v in self.new["sprints"]:
            if v["project_id"] not in projects:
                self.problem("sprints", index, "project_id", f"project {v['project_id']} does not exist")
            if (p := not_before(v, "start_date", "end_date") or longest_sprint(v)) is not None:
                self.problem("sprints", index, p.pointer[1:], p.detail)
            if v["status"] == "active":
                active[v["project_id"]].append(v["id"])
        already: Any = Sprint.select(Sprint.id, Sprint.project).where(
            (Sprint.status == "active") & Sprint.project.in_(sorted(active))
        )
        for sprint_id, project_id in already.tuples() if active else ():
            active[project_id].append(sprint_id)
        for index, v in self.new["sprints"]:
            if v["status"] == "active" and len(active[v["project_id"]]) > 1:
                others = listed(sorted(s for s in active[v["project_id"]] if s != v["id"]))
                detail = f"project {v['project_id']} would have another active sprint: {others}"
                self.problem("sprints", index, "status", detail)

    def _check_cycles(self) -> None:
        """Kahn's algorithm over the new tasks: no task in the database depends on one of them, so any cycle is here."""
        new = {v["id"]: (index, v) for index, v in self.new["tasks"]}
        # A task depending on itself has its own problem already.
        edges = {task: [d for d in v["depends_on"] if d in new and d != task] for task, (_, v) in new.items()}
        waiting = {task: len(others) for task, others in edges.items()}
        dependants: dict[str, list[str]] = defaultdict(list)
        for task, others in edges.items():
            for other in others:
                dependants[other].append(task)
        ready = [task for task, count in waiting.items() if count == 0]
        while ready:
            for dependant in dependants[ready.pop()]:
                waiting[dependant] -= 1
                if waiting[dependant] == 0:
                    ready.append(dependant)
        for task in sorted(task for task, count in waiting.items() if count):
            self.problem("tasks", new[task][0], "depends_on", "is part of a dependency cycle")

    def raise_problems(self) -> None:
        if self.problems:
            problems = self.problems[:MAX_PROBLEMS]
            more = f"; the first {MAX_PROBLEMS} problems are listed" if len(self.problems) > MAX_PROBLEMS else ""
            raise Invalid(problems, f"Nothing was imported: the document has problems{more}.")

    # -- writing ----------------------------------------------------------------------------

    def write(self, events: list[Event]) -> None:
        for section in SECTIONS:
            rows = [_row(section, values) for _, values in self.new[section.key]]
            for chunk in _chunks(rows):
                section.model.insert_many(chunk).execute()
        links: list[tuple[Any, list[dict[str, Any]]]] = [(TaskLabel, []), (TaskAssignee, []), (TaskDependency, [])]
        for _, v in self.new["tasks"]:
            links[0][1].extend({"task": v["id"], "label": label} for label in v["labels"])
            links[1][1].extend({"task": v["id"], "assignee": name} for name in v["assignees"])
            links[2][1].extend({"task": v["id"], "depends_on": other} for other in v["depends_on"])
        items = [
            {"action_list": v["id"], "item_id": i["id"], "task": i["task_id"]}
            for _, v in self.new["action_lists"]
            for i in v["items"]
            if i["task_id"] is not None
        ]
        links.append((ActionItemLink, items))
        for model, rows in links:
            for chunk in _chunks(rows):
                model.insert_many(chunk).execute()
        projects = {v["id"]: v["project_id"] for v in self.records["tasks"]}
        elsewhere = sorted(self._referenced("comments", "task_id") - set(projects))
        for chunk in _chunks(elsewhere):
            found: Any = Task.select(Task.id, Task.project).where(Task.id.in_(chunk)).tuples()
            projects.update(found)
        for section in SECTIONS:
            for _, values in self.new[section.key]:
                if section.key == "comments":
                    values = {**values, "project_id": projects.get(values["task_id"])}
                events.append((f"{section.label}.imported", _payload(section, values)))
        events.extend(health_event(project) for project in sorted(self._referenced("tasks", "project_id")))

    def summary(self) -> dict[str, Any]:
        return {
            "created": {s.key: len(self.new[s.key]) for s in SECTIONS},
            "unchanged": {s.key: self.unchanged[s.key] for s in SECTIONS},
        }


def _in_items(index: int) -> Callable[[int, str], str]:
    def pointer(at: int, name: str) -> str:
        return f"/action_lists/{index}/items/{at}/{name}"

    return pointer


def _row(section: Section, values: Mapping[str, Any]) -> dict[Any, Any]:
    # Keyed by peewee's fields: ``project_id`` is the ``project`` foreign key's column.
    return {section.model._meta.combined[name]: value for name, value in values.items()}


#: What each ``*.imported`` event carries besides the record's id: what its ``*.created`` event carries.
_PAYLOADS = {
    "projects": (),
    "sprints": ("project_id", "status"),
    "tasks": ("project_id", "sprint_id", "priority", "status"),
    "action_lists": (),
    "comments": ("task_id", "project_id", "author"),
}


def _payload(section: Section, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{section.label}_id": values["id"], **{name: values[name] for name in _PAYLOADS[section.key]}}


def _ids_in(model: Any, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found |= {row.id for row in model.select(model.id).where(model.id.in_(chunk))}
    return found


def _existing(section: Section, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The records of ``ids`` already in the database, as an export shows them."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in section.model.select().where(section.model.id.in_(chunk)):
            found[row.id] = render(section.resource, row)
    return found


def load(store: Store, document: Mapping[str, Any]) -> dict[str, Any]:
    """Import ``document`` (checked against :data:`IMPORT_SCHEMA`) atomically; return what it created and kept."""
    work = Import(document)
    with store.write() as events:
        work.sort_out()
        work.check()
        work.write(events)
    return work.summary()
