"""Transactions that fire their events only after commit, versioned updates, and record rendering."""

from __future__ import annotations

import contextlib
import datetime
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import peewee

from .errors import NotFound, PreconditionFailed
from .schemas import Resource

Event = tuple[str, dict[str, Any]]

#: peewee's context manager turning driver errors into its own (``peewee.IntegrityError``...).
_driver_errors: Any = getattr(peewee, "__exception_wrapper__")  # noqa: B009 - the type checker does not see it
Emit = Callable[[str, Mapping[str, Any]], None]
#: ``runtime.record_events``: writes a transaction's events in it (an outbox), returns what to call after the commit.
Record = Callable[[list[Event]], Callable[[], None]]

#: How often an update without ``If-Match`` re-reads and retries after losing a race.
UPDATE_ATTEMPTS = 5


def utcnow() -> datetime.datetime:
    """Naive UTC, the form every timestamp column holds."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rfc3339(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back text for expressions peewee did not type
        value = datetime.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def shown(value: Any) -> Any:
    """A value as the API shows it (dates and date-times as text): what an event's ``changes`` hold."""
    if isinstance(value, datetime.datetime):
        return rfc3339(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [dict(v) if isinstance(v, Mapping) else v for v in value]
    return value


def change(old: Any, new: Any) -> dict[str, Any]:
    """One field's change as an event shows it."""
    return {"old": shown(old), "new": shown(new)}


def iso_date(value: datetime.date | None) -> str | None:
    return None if value is None else value.isoformat()


def present(value: Any, fmt: str | None) -> Any:
    """A column's value as the API shows it: dates and date-times (by their schema ``format``) as text."""
    if fmt == "date-time":
        return rfc3339(value)
    if fmt == "date":
        return iso_date(value)
    return value


class Store:
    """The database and the event sink a tracker service works with."""

    def __init__(
        self,
        database: Any,
        emit: Emit,
        clock: Callable[[], datetime.datetime] = utcnow,
        record: Record | None = None,
    ) -> None:
        self.database = database
        self.emit = emit
        self.clock = clock
        self.record = record
        self._open = threading.local()

    @property
    def is_postgres(self) -> bool:
        return isinstance(getattr(self.database, "obj", self.database), peewee.PostgresqlDatabase)

    @contextlib.contextmanager
    def write(self) -> Iterator[list[Event]]:
        """A write transaction; events appended to the yielded list are fired once it commits.

        With ``record`` (``runtime.record_events``) they are also written in
        the transaction itself, last, so they exist exactly when the change
        does (the ``events`` plugin's outbox); the listeners are then fed
        from what committed.

        SQLite takes the write lock up front (``BEGIN IMMEDIATE``): a deferred
        transaction that reads and then writes can fail at once with
        "database is locked" instead of waiting its turn.
        """
        outer: list[Event] | None = getattr(self._open, "events", None)
        if outer is not None:
            # Nested (an idempotent POST wraps the creation): one transaction, events fire at the outer commit.
            yield outer
            return
        events: list[Event] = []
        db = getattr(self.database, "obj", self.database)
        atomic = db.atomic() if self.is_postgres else db.atomic(lock_type="IMMEDIATE")
        self._open.events = events
        committed: Callable[[], None] | None = None
        try:
            with atomic:
                yield events
                if self.record is not None and events:
                    committed = self.record(events)
        finally:
            self._open.events = None
        if committed is not None:
            committed()
            return
        for name, payload in events:
            self.emit(name, payload)

    def lock(self, model: Any, record_id: str, label: str) -> Any:
        """Read a record for update: on PostgreSQL the row stays locked until the transaction ends."""
        require_possible_id(record_id, label)
        record = by_id(model, record_id, for_update=self.is_postgres)
        if record is None:
            raise NotFound(f"{label} {record_id} does not exist.")
        return record

    def read(self) -> Any:
        """A read transaction, so a response is built from one consistent snapshot."""
        return getattr(self.database, "obj", self.database).atomic()


def _database_of(model: Any) -> Any:
    """The database behind ``model``'s proxy: its class is the dialect a cached statement was built for."""
    database = model._meta.database
    return getattr(database, "obj", database)


_BY_ID: dict[tuple[Any, type, bool], tuple[str, Any]] = {}


def by_id(model: Any, record_id: str, *, for_update: bool = False) -> Any:
    """``SELECT ... WHERE id = ?``, the hottest query: its SQL is built once per model and dialect.

    peewee renders a query's SQL anew on every execution, which costs more
    than the query itself for a single-row read.
    """
    target = _database_of(model)
    key = (model, type(target), for_update)
    compiled = _BY_ID.get(key)
    if compiled is None:
        query = model.select().where(model.id == "")
        if for_update:
            query = query.for_update()
        sql, _ = query.sql()
        compiled = _BY_ID[key] = (sql, query)
    sql, query = compiled
    cursor = target.execute_sql(sql, (record_id,))
    return next(iter(query._get_cursor_wrapper(cursor)), None)


_STATEMENTS: dict[tuple[str, type], str] = {}


def statement(model: Any, name: str, build: Callable[[], Any]) -> tuple[Any, str]:
    """The database ``model`` works with now, and the SQL of the query ``build()`` makes, built once per dialect.

    For queries whose only parameters are the values a caller passes:
    peewee renders a query's SQL anew on every execution.
    """
    target = _database_of(model)
    key = (name, type(target))
    sql = _STATEMENTS.get(key)
    if sql is None:
        sql = _STATEMENTS[key] = build().sql()[0]
    return target, sql


_EXISTS: dict[tuple[Any, type], str] = {}


def exists(model: Any, record_id: str) -> bool:
    """Whether a ``model`` row has this id: ``SELECT id ... WHERE id = ?``, its SQL built once per model and dialect."""
    target = _database_of(model)
    key = (model, type(target))
    sql = _EXISTS.get(key)
    if sql is None:
        sql = _EXISTS[key] = model.select(model.id).where(model.id == "").sql()[0]
    return target.execute_sql(sql, (record_id,)).fetchone() is not None


_INSERTS: dict[tuple[Any, type, tuple[str, ...]], tuple[str, tuple[Any, ...]]] = {}


def insert(model: Any, values: Mapping[str, Any]) -> Any:
    """``model.create(**values)``, with the INSERT's SQL built once per model, dialect and set of fields.

    The row is what ``create`` inserts (the model's defaults, then
    ``values``), each value converted by its field as peewee converts it;
    the record comes back unchanged-marked, as ``create`` leaves it.
    """
    record = model(**values)
    data = record.__data__
    sql, converters = _insert_statement(model, tuple(data))
    _database_of(model).execute_sql(
        sql, tuple(convert(value) for convert, value in zip(converters, data.values(), strict=True))
    )
    record._dirty.clear()
    return record


def _insert_statement(model: Any, names: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    """``INSERT INTO <table> (<columns of names>) VALUES (...)`` and each field's converter, built once."""
    target = _database_of(model)
    key = (model, type(target), names)
    compiled = _INSERTS.get(key)
    if compiled is None:
        fields = tuple(model._meta.fields[name] for name in names)
        first, last = target.quote[0], target.quote[-1]  # the dialect's identifier quotes: '""' here
        columns = ", ".join(f"{first}{field.column_name}{last}" for field in fields)
        params = ", ".join([target.param] * len(fields))
        sql = f"INSERT INTO {first}{model._meta.table_name}{last} ({columns}) VALUES ({params})"
        compiled = _INSERTS[key] = (sql, tuple(field.db_value for field in fields))
    return compiled


def insert_rows(model: Any, names: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """``model.insert_many(...)`` of ``rows`` (values of the fields ``names``), one statement built once."""
    sql, converters = _insert_statement(model, names)
    converted = [tuple(convert(value) for convert, value in zip(converters, row, strict=True)) for row in rows]
    with _driver_errors:  # peewee's translation of driver errors (IntegrityError...), as execute_sql does
        _database_of(model).cursor().executemany(sql, converted)


def python_value(field: Any) -> Callable[[Any], Any]:
    """``field.python_value``, with the text of a date or date-time read by ``fromisoformat`` straight away.

    peewee tries ``fromisoformat`` too, after rewriting the text, and
    ``strptime`` with each of its formats when that fails: the fallback here.
    A page of 50 tasks holds 200 date-times.
    """
    slow = field.python_value
    if isinstance(field, peewee.DateTimeField):
        parse: Callable[[str], Any] = datetime.datetime.fromisoformat
    elif isinstance(field, peewee.DateField):
        parse = datetime.date.fromisoformat
    else:
        return slow  # type: ignore[no-any-return]

    def convert(value: Any) -> Any:
        if type(value) is str:
            try:
                return parse(value)
            except ValueError:
                pass
        return slow(value)

    return convert


def converters_of(model: Any) -> tuple[Callable[[Any], Any], ...]:
    """:func:`python_value` of each field of ``model``, in the order ``model.select()`` selects them."""
    converters: tuple[Callable[[Any], Any], ...] | None = _CONVERTERS.get(model)
    if converters is None:
        converters = _CONVERTERS[model] = tuple(python_value(field) for field in model._meta.sorted_fields)
    return converters


_CONVERTERS: dict[Any, tuple[Callable[[Any], Any], ...]] = {}


def database_of(model: Any) -> Any:
    """The database ``model`` works with now (the one behind the core's proxy)."""
    return _database_of(model)


_READERS: dict[tuple[Any, type], tuple[str, tuple[tuple[str, Any, str | None], ...]]] = {}


def read_rendered(resource: Resource, model: Any, record_id: str) -> dict[str, Any] | None:
    """The API representation of one record straight from its row: ``GET /<things>/{id}``.

    No model object: the column list, each column's converter and its output
    format are worked out once per model and dialect, so a read costs the
    query plus one pass over the row (peewee's model rows cost more than the
    query itself here).
    """
    target = _database_of(model)
    key = (model, type(target))
    reader = _READERS.get(key)
    if reader is None:
        fields = [model._meta.combined[f.name] for f in resource.fields]
        sql, _ = model.select(*fields).where(model.id == "").sql()
        plan = tuple(
            (f.name, python_value(field), f.schema.get("format"))
            for f, field in zip(resource.fields, fields, strict=True)
        )
        reader = _READERS[key] = (sql, plan)
    sql, plan = reader
    row = target.execute_sql(sql, (record_id,)).fetchone()
    if row is None:
        return None
    out: dict[str, Any] = {}
    for (name, convert, fmt), raw in zip(plan, row, strict=True):
        out[name] = present(None if raw is None else convert(raw), fmt)
    return out


#: The shape every tracker id has; anything else cannot exist, and is not worth a query (NUL bytes break PostgreSQL).
ANY_ID = re.compile(r"[A-Z]{1,2}-[A-Za-z0-9_-]{1,47}")


def require_possible_id(record_id: str, label: str) -> None:
    """404 for an id no record can have, before any query."""
    if not ANY_ID.fullmatch(record_id):
        raise NotFound(f"{label} {record_id!r} does not exist.")


def get_or_404(model: Any, record_id: str, label: str) -> Any:
    require_possible_id(record_id, label)
    record = by_id(model, record_id)
    if record is None:
        raise NotFound(f"{label} {record_id} does not exist.")
    return record


def check_version(record: Any, if_match: frozenset[int] | None) -> None:
    """``if_match`` is the set of versions the client's ``If-Match`` names (None: no condition)."""
    if if_match is not None and record.version not in if_match:
        raise PreconditionFailed(record.version)


def update_versioned(model: Any, record: Any, changes: Mapping[str, Any], now: datetime.datetime) -> bool:
    """``UPDATE ... SET ..., version = version + 1 WHERE id = ? AND version = ?``: False if it lost a race."""
    values = {model._meta.combined[name]: value for name, value in changes.items()}  # sprint_id too
    values[model.updated_at] = now
    values[model.version] = model.version + 1
    updated = model.update(values).where((model.id == record.id) & (model.version == record.version)).execute()
    if updated:
        for name, value in changes.items():
            setattr(record, name, value)
        record.updated_at = now
        record.version += 1
    return bool(updated)


def render(resource: Resource, record: Any) -> dict[str, Any]:
    """The API representation of ``record``: every field of ``resource``, dates as RFC 3339 strings."""
    out: dict[str, Any] = {}
    data = record.__data__
    for field in resource.fields:
        value = data.get(field.name if field.name in data else field.name.removesuffix("_id"))
        out[field.name] = present(value, field.schema.get("format"))
    return out
