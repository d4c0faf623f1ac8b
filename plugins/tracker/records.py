"""What every tracker collection does the same way: create, read, list, merge-patch, delete.

Each resource module subclasses :class:`Collection` and adds its rules in
the ``check_*`` / ``after_*`` methods.  Every write runs in one
transaction (:meth:`.Store.write`), reads the row it changes with a lock,
honours ``If-Match``, bumps ``version`` with a conditional ``UPDATE`` and
queues its events, which fire only once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import peewee

from .errors import Conflict, Invalid, NotFound, PreconditionFailed, Problem
from .listing import ListDefinition, Page, list_page, row_type
from .schemas import Field, Resource
from .store import (
    Event,
    Store,
    by_id,
    change,
    check_version,
    exists,
    get_or_404,
    insert,
    present,
    read_rendered,
    render,
    require_possible_id,
    update_versioned,
)
from .validation import parse_date, parse_date_time


class Collection:
    resource: ClassVar[Resource]
    model: ClassVar[Any]
    label: ClassVar[str]  # "task": names the record in messages and events
    listing: ClassVar[ListDefinition]

    #: The resource's fields by name, worked out once per collection class.
    _fields: ClassVar[dict[str, Field]]
    #: Each field of the representation: its name, its place in a list's row and its format.
    _row_plan: ClassVar[tuple[tuple[str, int, str | None], ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = {f.name: f for f in cls.resource.fields}
        names = row_type(cls.model)._fields
        cls._row_plan = tuple(
            (f.name, names.index(f.name if f.name in names else f.name.removesuffix("_id")), f.schema.get("format"))
            for f in cls.resource.fields
        )

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reading ----------------------------------------------------------------

    def get(self, record_id: str) -> Any:
        return get_or_404(self.model, record_id, self.label.capitalize())

    def read(self, record_id: str) -> dict[str, Any]:
        """The record's representation (what :meth:`render` gives for :meth:`get`), read the fast way."""
        label = self.label.capitalize()
        require_possible_id(record_id, label)
        found = read_rendered(self.resource, self.model, record_id)
        if found is None:
            raise NotFound(f"{label} {record_id} does not exist.")
        return found

    def page(self, params: Mapping[str, Any]) -> Page:
        return list_page(self.listing, params)

    def render(self, record: Any) -> dict[str, Any]:
        return render(self.resource, record)

    def render_rows(self, rows: Iterable[Any]) -> list[dict[str, Any]]:
        """The representations of a page's rows (:func:`.listing.row_type` tuples), as :meth:`render` gives them."""
        plan = self._row_plan
        # present() only for the fields with a format: a call per value is a third of the cost of a page.
        return [
            {name: row[index] if fmt is None else present(row[index], fmt) for name, index, fmt in plan} for row in rows
        ]

    def render_many(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """The representations of several records (model objects), as :meth:`render` gives them.

        A collection whose rendering reads more rows reads them once for all:
        it overrides this and :meth:`render_rows` alike.
        """
        return [self.render(record) for record in records]

    # -- writing ----------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> Any:
        values = self.prepare(body)
        with self.store.write() as events:
            return self.insert(values, events)

    def prepare(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A creation body as the values of a new row: defaults for what it leaves out, parsed."""
        return self.parse({**self.resource.defaults(), **{k: v for k, v in body.items() if v is not None}})

    def insert(self, values: dict[str, Any], events: list[Event]) -> Any:
        """Create the record ``values`` describe, inside the caller's write transaction."""
        self.check_create(values)
        now = self.store.clock()
        record_id = values.get("id")
        if record_id is not None and exists(self.model, record_id):
            raise Conflict(f"{self.label.capitalize()} {record_id} already exists.", "/id")
        try:
            record = insert(self.model, {**values, "created_at": now, "updated_at": now, "version": 1})
        except peewee.IntegrityError:
            # Lost a race with a concurrent create of the same id.
            raise Conflict(f"{self.label.capitalize()} {record_id} already exists.", "/id") from None
        self.after_create(record, events)
        # Ids, not bodies: a creation's activity entry says who and when; the record itself says what.
        events.append((f"{self.label}.created", self.event_payload(record)))
        return record

    def patch(self, record_id: str, body: Mapping[str, Any], if_match: frozenset[int] | None) -> Any:
        with self.store.write() as events:
            record = self.store.lock(self.model, record_id, self.label.capitalize())
            check_version(record, if_match)
            self._update(record, body, events)
        return record

    def replace(self, record_id: str, body: Mapping[str, Any], if_match: frozenset[int] | None) -> Any:
        """``PUT``: the record becomes ``body`` (a creation body); what it leaves out goes back to its default.

        The fields a record keeps for life (its id, its project) must be sent
        as they are; the rules, the transition table included, are those of
        a ``PATCH`` that sends every field.
        """
        with self.store.write() as events:
            record = self.store.lock(self.model, record_id, self.label.capitalize())
            check_version(record, if_match)
            kept = {f.name for f in self.resource.writable if f.immutable}
            require(
                *(
                    Problem(f"/{name}", f"cannot change: it is {getattr(record, name)}")
                    for name in sorted(kept & set(body))
                    if body[name] != getattr(record, name)
                )
            )
            full = {**self.resource.defaults(), **{k: v for k, v in body.items() if k not in kept}}
            self._update(record, {k: v for k, v in full.items() if k not in kept}, events)
        return record

    def _update(self, record: Any, body: Mapping[str, Any], events: list[Event]) -> None:
        current = self.current_values(record)
        merged = {**current, **self.parse(dict(body))}
        self.check_merged(record, merged)
        changes = {name: value for name, value in merged.items() if value != current.get(name)}
        changes = self.check_changes(record, changes)
        if changes:
            self.apply(record, changes, events)

    def apply(self, record: Any, changes: Mapping[str, Any], events: list[Event]) -> None:
        """Write ``changes`` as the next version of ``record`` and queue the events they cause."""
        before = self.current_values(record)
        old = {name: getattr(record, name) for name in changes}
        now = self.store.clock()
        if not update_versioned(self.model, record, changes, now):
            # The row was locked for us; only a concurrent delete or a bug gets here.
            raise PreconditionFailed(record.version)
        self.after_update(record, before, dict(changes), events)
        diff = {name: change(old[name], getattr(record, name)) for name in sorted(changes)}
        events.append(
            (f"{self.label}.updated", {**self.event_payload(record), "changed": sorted(changes), "changes": diff})
        )

    def delete(self, record_id: str, if_match: frozenset[int] | None, *, cascade: bool = False) -> None:
        with self.store.write() as events:
            record = self.store.lock(self.model, record_id, self.label.capitalize())
            check_version(record, if_match)
            self.before_delete(record, cascade, events)
            self.model.delete().where(self.model.id == record.id).execute()
            events.append((f"{self.label}.deleted", self.event_payload(record)))
            self.after_delete(record, events)

    # -- what subclasses refine ---------------------------------------------------

    def current_values(self, record: Any) -> dict[str, Any]:
        """The writable fields of ``record`` under their API names."""
        return {f.name: getattr(record, f.name) for f in self.resource.writable if not f.immutable}

    def parse(self, values: dict[str, Any]) -> dict[str, Any]:
        """Turn the body's values into what the columns hold (the schema already checked their form)."""
        for name, value in values.items():
            field = self._fields.get(name)
            if field is None or value is None:
                continue
            schema = field.schema
            if schema.get("format") == "date":
                values[name] = parse_date(value)
            elif schema.get("format") == "date-time":
                values[name] = parse_date_time(value)
            elif schema.get("type") == "number":
                values[name] = float(value)  # as the float column will hand it back
        return values

    def check_create(self, values: dict[str, Any]) -> None:
        self.check_merged(None, values)

    def check_merged(self, record: Any, values: Mapping[str, Any]) -> None:
        """Rules on the record as it would be after the change (cross-field rules live here)."""

    def check_changes(self, record: Any, changes: dict[str, Any]) -> dict[str, Any]:
        """Rules on what a PATCH changes; may add derived changes."""
        return changes

    def after_create(self, record: Any, events: list[Event]) -> None:
        pass

    def after_update(
        self, record: Any, before: Mapping[str, Any], changes: Mapping[str, Any], events: list[Event]
    ) -> None:
        pass

    def before_delete(self, record: Any, cascade: bool, events: list[Event]) -> None:
        pass

    def after_delete(self, record: Any, events: list[Event]) -> None:
        pass

    def event_payload(self, record: Any) -> dict[str, Any]:
        return {f"{self.label}_id": record.id}


def not_before(values: Mapping[str, Any], start: str, end: str) -> Problem | None:
    first, last = values.get(start), values.get(end)
    if first is not None and last is not None and last < first:
        return Problem(f"/{end}", f"must not be before {start} ({first.isoformat()})")
    return None


def require(*problems: Problem | None) -> None:
    found = [p for p in problems if p is not None]
    if found:
        raise Invalid(found)


def require_reference(model: Any, record_id: str, pointer: str, label: str) -> None:
    """A 422 naming the field when the referenced record does not exist; its row is not read."""
    if not exists(model, record_id):
        raise Invalid([Problem(pointer, f"{label} {record_id} does not exist")])


def reference(model: Any, record_id: str | None, pointer: str, label: str) -> Any:
    """The referenced record, or a 422 naming the field when it does not exist."""
    if record_id is None:
        return None
    record = by_id(model, record_id)
    if record is None:
        raise Invalid([Problem(pointer, f"{label} {record_id} does not exist")])
    return record


def sum_points(values: list[Any]) -> float:
    return float(sum(v for v in values if v is not None))
