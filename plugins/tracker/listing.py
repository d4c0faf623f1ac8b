"""Lists: strict query parsing, filters that combine with AND, whitelisted sorts, keyset cursors.

A cursor holds the sort values of the last row returned plus its id, so the
next page starts strictly after it: walking every page yields each row
exactly once, also while rows are being added, and page 10,000 costs what
page 1 costs.  Nullable sort fields become two keys (``IS NULL`` first, then
the value with NULLs coalesced away) so every key compares, NULLs last.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import peewee

from .errors import BadQuery, Problem
from .validation import ascii_integer, parse_date, parse_date_time

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Parameters every list takes besides its filters.
PAGING_PARAMETERS = ("limit", "cursor", "sort", "count")

Filter = Callable[[str], Any]  # the query value -> a peewee expression; raises ValueError when bad


@attrs.frozen
class Sortable:
    column: Any
    kind: str  # text | number | datetime | date
    nullable: bool = False


@attrs.frozen
class ListDefinition:
    """What one resource's list accepts."""

    model: Any
    filters: Mapping[str, Filter]
    sortable: Mapping[str, Sortable]
    default_sort: tuple[str, ...] = ("created_at",)


@attrs.frozen
class Page:
    rows: list[Any]
    next_cursor: str | None
    #: How many rows match the filters, on every page: only when asked for (``count=true``), as it costs a
    #: count of every matching row where a page costs ``limit`` rows.
    total: int | None = None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


_SENTINELS = {
    "text": "",
    "number": 0.0,
    "datetime": datetime.datetime(1, 1, 1),
    "date": datetime.date(1, 1, 1),
}


def _single(params: Mapping[str, Any], name: str) -> str:
    value = params[name]
    if isinstance(value, list):
        raise BadQuery([Problem(name, "must be given at most once")])
    return str(value)


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    limit = ascii_integer(raw)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadQuery([Problem("limit", f"must be an integer from 1 to {MAX_LIMIT}")])
    return limit


def _parse_flag(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise BadQuery([Problem(name, "must be true or false")])
    return raw == "true"


def _parse_sort(raw: str | None, definition: ListDefinition) -> list[tuple[str, bool]]:
    names = raw.split(",") if raw is not None else list(definition.default_sort)
    keys: list[tuple[str, bool]] = []
    for name in names:
        descending = name.startswith("-")
        bare = name[1:] if descending else name
        if bare not in definition.sortable:
            allowed = ", ".join(sorted(definition.sortable))
            raise BadQuery(
                [Problem("sort", f"{name!r} is not a sort key; use {allowed}, each optionally prefixed by -")]
            )
        if any(bare == k for k, _ in keys):
            raise BadQuery([Problem("sort", f"{bare!r} is given twice")])
        keys.append((bare, descending))
    return keys


def _sort_keys(definition: ListDefinition, sort: list[tuple[str, bool]]) -> list[tuple[Any, bool, str]]:
    """``(expression, descending, kind)`` for each key, the id last as the tie-breaker."""
    keys: list[tuple[Any, bool, str]] = []
    for name, descending in sort:
        spec = definition.sortable[name]
        if spec.nullable:
            keys.append((spec.column.is_null(), False, "flag"))
            keys.append((peewee.fn.COALESCE(spec.column, _SENTINELS[spec.kind]), descending, spec.kind))
        else:
            keys.append((spec.column, descending, spec.kind))
    if not any(name == "id" for name, _ in sort):
        keys.append((definition.model.id, sort[-1][1] if sort else False, "text"))
    return keys


def _value_of(row: Any, definition: ListDefinition, sort: list[tuple[str, bool]]) -> list[Any]:
    values: list[Any] = []
    for name, _ in sort:
        spec = definition.sortable[name]
        value = row.__data__.get(spec.column.name)
        if spec.nullable:
            values.append(value is None)
            values.append(_SENTINELS[spec.kind] if value is None else value)
        else:
            values.append(value)
    if not any(name == "id" for name, _ in sort):
        values.append(row.id)
    return values


def _encode_value(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


def _decode_value(value: Any, kind: str) -> Any:
    """A cursor's value, refused (ValueError) unless it is of a kind this list gives out: cursors can be forged."""
    if kind == "datetime":
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is not None:  # the columns hold naive UTC, and so do the cursors made from them
            raise ValueError("bad date-time")
        return moment
    if kind == "date":
        return datetime.date.fromisoformat(value)
    if kind == "flag":
        if not isinstance(value, bool):
            raise ValueError("bad flag")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("bad number")
        # The number columns are floats: an integer no database integer holds (SQLite overflows past 2**63)
        # becomes the float it would be compared as; one no float holds raises OverflowError.
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("bad number")
        return number
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("bad text")
    value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    return value


def _fingerprint(sort: list[tuple[str, bool]], filters: Mapping[str, str]) -> str:
    canonical = json.dumps([sort, sorted(filters.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(values: Sequence[Any], fingerprint: str) -> str:
    raw = json.dumps([fingerprint, [_encode_value(v) for v in values]], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str, kinds: Sequence[str]) -> list[Any]:
    bad = BadQuery([Problem("cursor", "is not a cursor this list gave out")])
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        given, values = json.loads(raw)
    except (ValueError, TypeError, RecursionError, binascii.Error):
        raise bad from None
    if given != fingerprint:
        raise BadQuery([Problem("cursor", "was given out for other filters or another sort; start again without it")])
    if not isinstance(values, list) or len(values) != len(kinds):
        raise bad
    try:
        return [_decode_value(v, k) for v, k in zip(values, kinds, strict=True)]
    except (ValueError, TypeError, OverflowError):
        raise bad from None


def _after(keys: list[tuple[Any, bool, str]], values: list[Any]) -> Any:
    """Rows strictly after ``values`` in the sort order of ``keys``."""
    if len({descending for _, descending, _ in keys}) == 1:
        # One direction: a row-value comparison, which both databases run as an index range.
        left = peewee.Tuple(*(expr for expr, _, _ in keys))
        right = peewee.Tuple(*values)
        return left < right if keys[0][1] else left > right
    clauses = []
    for i, (expr, descending, _) in enumerate(keys):
        clause = expr < values[i] if descending else expr > values[i]
        for prior, value in zip((k[0] for k in keys[:i]), values[:i], strict=True):
            clause = (prior == value) & clause
        clauses.append(clause)
    return _or_all(clauses)


def _or_all(clauses: list[Any]) -> Any:
    result = clauses[0]
    for clause in clauses[1:]:
        result = result | clause
    return result


def list_page(definition: ListDefinition, params: Mapping[str, Any], base_query: Any = None) -> Page:
    """Run the list query ``params`` asks for; raise :class:`BadQuery` for anything not understood."""
    unknown = sorted(set(params) - set(definition.filters) - set(PAGING_PARAMETERS))
    if unknown:
        allowed = ", ".join(sorted((*definition.filters, *PAGING_PARAMETERS)))
        raise BadQuery([Problem(name, f"is not a parameter of this list; use {allowed}") for name in unknown])
    values = {name: _single(params, name) for name in params}
    limit = _parse_limit(values.get("limit"))
    sort = _parse_sort(values.get("sort"), definition)
    counted = _parse_flag(values.get("count"), "count")
    filters = {name: value for name, value in values.items() if name in definition.filters}

    query = base_query if base_query is not None else definition.model.select()
    problems: list[Problem] = []
    for name, value in filters.items():
        try:
            query = query.where(definition.filters[name](value))
        except ValueError as exc:
            problems.append(Problem(name, str(exc)))
    if problems:
        raise BadQuery(problems)

    # Counted before the cursor narrows the query: the total is the same on every page of one walk.
    total = int(query.count()) if counted else None
    keys = _sort_keys(definition, sort)
    fingerprint = _fingerprint(sort, filters)
    if "cursor" in values:
        after = decode_cursor(values["cursor"], fingerprint, [kind for _, _, kind in keys])
        query = query.where(_after(keys, after))
    query = query.order_by(*(expr.desc() if descending else expr.asc() for expr, descending, _ in keys))
    rows = list(query.limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(_value_of(rows[-1], definition, sort), fingerprint)
    return Page(rows, next_cursor, total)


# -- filter builders ------------------------------------------------------------


def one_of(column: Any, allowed: Sequence[str]) -> Filter:
    """A comma list of allowed values (``status=new,ready``)."""

    def build(value: str) -> Any:
        chosen = value.split(",")
        bad = [v for v in chosen if v not in allowed]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} not allowed; use {', '.join(allowed)}")
        return column.in_(chosen)

    return build


def _text(value: str, max_length: int) -> str:
    if not value or len(value) > max_length or "\x00" in value:
        raise ValueError(f"must be 1 to {max_length} characters")
    return value


def equals(column: Any, max_length: int = 200) -> Filter:
    def build(value: str) -> Any:
        return column == _text(value, max_length)

    return build


def optional_reference(column: Any, pattern: Any) -> Filter:
    """An id, or ``none`` for rows without one (``sprint_id=none``: the backlog)."""

    def build(value: str) -> Any:
        if value == "none":
            return column.is_null()
        if not pattern.fullmatch(value):
            raise ValueError(f"must be an id ({pattern.pattern}) or none")
        return column == value

    return build


def reference(column: Any, pattern: Any) -> Filter:
    def build(value: str) -> Any:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be an id ({pattern.pattern})")
        return column == value

    return build


def moment(value: str) -> datetime.datetime:
    """A date-time with offset, or a date meaning its midnight UTC."""
    try:
        return parse_date_time(value)
    except ValueError:
        pass
    try:
        return datetime.datetime.combine(parse_date(value), datetime.time())
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time (2024-05-01T12:00:00Z) or date") from None


def before(column: Any) -> Filter:
    return lambda value: column < moment(value)


def at_or_after(column: Any) -> Filter:
    return lambda value: column >= moment(value)


def member_of(link_model: Any, link_column: Any, owner_column: Any, max_length: int) -> Filter:
    """Rows whose list (labels, assignees) holds the value, through its indexed link table."""

    def build(value: str) -> Any:
        linked = link_model.select(link_model.task).where(link_column == _text(value, max_length))
        return owner_column.in_(linked)

    return build


def text_search(*columns: Any) -> Filter:
    def build(value: str) -> Any:
        text = _text(value, 200)
        return _or_all([column.contains(text) for column in columns])

    return build
