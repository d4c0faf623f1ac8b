"""Parse and validate bodies against :mod:`.schemas`; report one JSON Pointer per bad field.

jsonschema does the schema work; this module adds what a schema cannot say
or says too loosely: real RFC 3339 dates and date-times (jsonschema only
checks ``format`` when optional packages are installed), strings that no
database can store (NUL, lone surrogates), integers written as integers.

Every body costs time linear in its size, whatever it holds:

* :func:`parse_json` refuses a key repeated in one object and nesting deeper
  than :data:`MAX_DEPTH`, explicitly, so no recursive code further on (ours,
  jsonschema's, the JSON encoder's) can run out of stack on a client's body;
* every array a :class:`Schema` accepts must declare ``maxItems`` and a typed
  ``items`` schema, and a cheap pass checks those bounds and element types
  before jsonschema runs: its keywords then only ever see short arrays of
  the right kind;
* ``uniqueItems`` is a set lookup per item (jsonschema's own is quadratic
  for items it cannot sort, such as objects).
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker, validators

from .errors import Invalid, Malformed, Problem, counted

# [0-9], not \d: only ASCII digits are digits in this API (\d matches every script's).
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

#: How deeply a body may nest objects and arrays.  The deepest valid body (an
#: action list's items) has 3 levels; the margin lets a mistaken body still get
#: a precise 422 rather than a 400.
MAX_DEPTH = 32


# -- parsing ------------------------------------------------------------------------


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Last-one-wins would let a body say one thing to a proxy or a log and another to us.
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return found


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_is_list, _is_dict = functools.partial(operator.is_, list), functools.partial(operator.is_, dict)


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` deep; iterative, so any depth is safe.

    One level at a time, with the iteration in C (``chain``, ``map``,
    ``compress``): no Python bytecode runs per node, so the check costs
    about what parsing did.
    """
    lists = [value] if type(value) is list else []
    dicts = [value] if type(value) is dict else []
    depth = 0
    while lists or dicts:
        depth += 1
        if depth > limit:
            return True
        children = list(itertools.chain(itertools.chain.from_iterable(lists), *map(dict.values, dicts)))
        kinds = list(map(type, children))
        lists = list(itertools.compress(children, map(_is_list, kinds)))
        dicts = list(itertools.compress(children, map(_is_dict, kinds)))
    return False


def parse_json(raw: bytes | str) -> Any:
    """A request body as JSON, or :class:`Malformed`: bad syntax, a repeated key, nesting over :data:`MAX_DEPTH`."""
    try:
        body = json.loads(raw, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise Malformed(f"The body repeats the key {json.dumps(exc.key)} in one object; send each key once.") from None
    except RecursionError:
        raise Malformed(f"The body nests objects and arrays deeper than {MAX_DEPTH} levels.") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError; so is the 4300-digit limit
        raise Malformed(f"The body is not valid JSON: {exc}") from None
    if isinstance(body, (dict, list)) and nesting_exceeds(body, MAX_DEPTH):
        raise Malformed(f"The body nests objects and arrays deeper than {MAX_DEPTH} levels.")
    return body


def ascii_integer(text: str, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits, else None.

    Python's ``int()`` also takes other scripts' digits (fullwidth, Arabic-Indic...),
    signs, underscores and spaces, and refuses over 4300 digits with an error of
    its own; ``str.isdigit()`` is true for superscripts and circled digits, which
    ``int()`` refuses.  A number in this API is ASCII digits, and nothing else.
    """
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)


# -- formats ------------------------------------------------------------------------

_formats = FormatChecker(formats=())


@_formats.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return parse_date(value) is not None


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return parse_date_time(value) is not None


def parse_date(value: str) -> datetime.date:
    if not _DATE.fullmatch(value):
        raise ValueError("not an RFC 3339 date (YYYY-MM-DD)")
    return datetime.date.fromisoformat(value)


def parse_date_time(value: str) -> datetime.datetime:
    """An RFC 3339 date-time with its offset, as a naive UTC datetime."""
    if not _DATE_TIME.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time with an offset (2024-05-01T12:00:00Z)")
    parsed = datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    try:
        return parsed.astimezone(datetime.UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999 once in UTC") from None


def pointer(path: Any) -> str:
    """RFC 6901: ``/items/0/text``; ``""`` for the whole document."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _unstorable(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain the NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def _all_storable(value: Any) -> bool:
    """True when no string or key in ``value`` holds a NUL or a lone surrogate; one pass of C code, no paths.

    A False may be mistaken (a literal backslash-u0000 in a string):
    :func:`_string_problems` then looks for real problems.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, check_circular=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return "\\u0000" not in text


def _string_problems(value: Any, path: tuple[Any, ...] = ()) -> Iterator[Problem]:
    if isinstance(value, str):
        reason = _unstorable(value)
        if reason:
            yield Problem(pointer(path), reason)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _unstorable(key):
                yield Problem(pointer((*path, key.encode("utf-8", "replace").decode())), "is not a valid field name")
            else:
                yield from _string_problems(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_problems(item, (*path, index))


def _message(error: Any) -> str:
    validator = error.validator
    if validator == "type":
        expected = error.validator_value
        kinds = " or ".join(expected) if isinstance(expected, list) else expected
        return f"must be of type {kinds}"
    if validator == "enum":
        return "must be one of: " + ", ".join("null" if v is None else str(v) for v in error.validator_value)
    if validator == "pattern":
        return f"must match {error.validator_value}"
    if validator == "format":
        return f"must be an RFC 3339 {error.validator_value}"
    if validator in ("minLength", "maxLength"):
        bound = "at least" if validator == "minLength" else "at most"
        return f"must be {bound} {counted(error.validator_value, 'character')} long"
    if validator in ("minimum", "maximum"):
        return f"must be {'at least' if validator == 'minimum' else 'at most'} {error.validator_value}"
    if validator == "maxItems":
        return f"must have at most {counted(error.validator_value, 'item')}"
    if validator == "uniqueItems":
        return "must not repeat an item"
    if validator == "anyOf":
        return "matches none of the allowed forms"
    return str(error.message)


def _problems(error: Any) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        for name in error.instance:
            if name not in allowed:
                yield Problem(pointer((*path, name)), "is not a known field")
    elif error.validator == "required" and isinstance(error.instance, Mapping):
        for name in error.validator_value:
            if name not in error.instance:
                yield Problem(pointer((*path, name)), "is required")
    else:
        yield Problem(pointer(path), _message(error))


# -- bounds checked before jsonschema --------------------------------------------------


def _is_integer(value: Any) -> bool:
    # JSON Schema counts 1.0 as an integer; an index or a count written 1.0 is a client's mistake, and Python
    # would carry it on as a float (list[1.0] raises).
    return isinstance(value, int) and not isinstance(value, bool)


_IS_TYPE: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def _types(schema: Mapping[str, Any]) -> tuple[str, ...]:
    kind = schema.get("type", ())
    return (kind,) if isinstance(kind, str) else tuple(kind)


def _type_message(kinds: tuple[str, ...]) -> str:
    return f"must be of type {' or '.join(kinds)}"


def unbounded_arrays(schema: Any, path: str = "#") -> Iterator[str]:
    """Where ``schema`` allows an array without ``maxItems`` or without a typed ``items`` schema."""
    if isinstance(schema, list):
        for index, sub in enumerate(schema):
            yield from unbounded_arrays(sub, f"{path}/{index}")
        return
    if not isinstance(schema, Mapping):
        return
    if "array" in _types(schema):
        items = schema.get("items")
        if not isinstance(schema.get("maxItems"), int) or not isinstance(items, Mapping) or not _types(items):
            yield path
    for key in ("properties", "$defs"):
        for name, sub in (schema.get(key) or {}).items():
            yield from unbounded_arrays(sub, f"{path}/{key}/{name}")
    for key in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(schema.get(key), Mapping):
            yield from unbounded_arrays(schema[key], f"{path}/{key}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if key in schema:
            yield from unbounded_arrays(schema[key], f"{path}/{key}")


def _shape_problems(schema: Mapping[str, Any], value: Any, path: tuple[Any, ...]) -> Iterator[Problem]:
    """Over-long arrays and elements of the wrong type, found in time linear in the body.

    Only the parts of the body the schema describes are visited; what it
    does not describe is jsonschema's to refuse (it does not descend there).
    """
    if isinstance(value, list) and "array" in _types(schema):
        limit = schema["maxItems"]
        if len(value) > limit:
            yield Problem(pointer(path), f"must have at most {counted(limit, 'item')}")
            return
        item_schema = schema["items"]
        kinds = _types(item_schema)
        for index, item in enumerate(value):
            if not any(_IS_TYPE[kind](item) for kind in kinds):
                yield Problem(pointer((*path, index)), _type_message(kinds))
            elif isinstance(item, (dict, list)):
                yield from _shape_problems(item_schema, item, (*path, index))
    elif isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        for name, item in value.items():
            if name in properties and isinstance(item, (dict, list)):
                yield from _shape_problems(properties[name], item, (*path, name))


def _canonical(value: Any) -> Any:
    """A hashable stand-in equal for equal JSON values (1 and 1.0 alike, true and 1 not)."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    return ("null", None) if value is None else ("other", id(value))


def _linear_unique(validator: Any, unique: bool, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """``uniqueItems`` with one set lookup per item (jsonschema's compares unsortable items pairwise)."""
    if not unique or not isinstance(instance, list):
        return
    seen: set[Any] = set()
    for index, item in enumerate(instance):
        key = _canonical(item)
        if key in seen:
            yield jsonschema.ValidationError(f"item {index} repeats an earlier item")
            return
        seen.add(key)


@functools.cache
def _ecma_compiled(pattern: str) -> re.Pattern[str]:
    ends_at_end = pattern.endswith("$") and not pattern.endswith("\\$")
    return re.compile(pattern[:-1] + r"\Z" if ends_at_end else pattern)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` as JSON Schema means it: ``$`` ends the string (Python's also matches before a final newline)."""
    if not isinstance(instance, str):
        return
    if not _ecma_compiled(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda checker, value: _is_integer(value))
_Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {"pattern": _ecma_pattern, "uniqueItems": _linear_unique},
    type_checker=_TYPE_CHECKER,
)


#: The most problems one response lists: a body with a million bad fields gets a bounded answer, found in
#: bounded time (the search is lazy and stops there).
MAX_PROBLEMS = 50


def _first(problems: Iterable[Problem]) -> list[Problem]:
    """Up to :data:`MAX_PROBLEMS` problems with distinct pointers, in pointer order."""
    found: dict[str, Problem] = {}
    for problem in problems:
        found.setdefault(problem.pointer, problem)
        if len(found) >= MAX_PROBLEMS:
            break
    return sorted(found.values(), key=lambda p: p.pointer)


@functools.lru_cache(maxsize=1024)
def _check_schema(text: str) -> None:
    """Refuse a schema that is not valid JSON Schema or has an unbounded array.

    Keyed by the schema's JSON text: every app builds the same few hundred
    schemas, and checking one against the metaschema costs about 10 ms.
    """
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    unbounded = list(unbounded_arrays(schema))
    if unbounded:
        raise ValueError(f"arrays need maxItems and a typed items schema: {', '.join(unbounded)}")


class Schema:
    """A compiled schema: ``Schema(doc).check(body)`` raises :class:`Invalid` listing every bad field.

    A schema with an array that has no ``maxItems`` or no typed ``items`` is
    refused here, when the app is built: its validation cost would depend
    on what clients send.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        _check_schema(json.dumps(schema, sort_keys=True))
        self.schema = schema
        self.validator = _Validator(schema, format_checker=_formats)

    def problems(self, body: Any) -> list[Problem]:
        """The body's problems by pointer, at most :data:`MAX_PROBLEMS` of them (the search stops there)."""
        if not _all_storable(body):
            problems = _first(_string_problems(body))
            if problems:
                return problems
        problems = _first(_shape_problems(self.schema, body, ()))
        if problems:
            return problems
        return _first(problem for error in self.validator.iter_errors(body) for problem in _problems(error))

    def check(self, body: Any) -> dict[str, Any]:
        problems = self.problems(body)
        if len(problems) >= MAX_PROBLEMS:
            raise Invalid(
                problems, f"The request body failed validation; the first {MAX_PROBLEMS} problems are listed."
            )
        if problems:
            raise Invalid(problems)
        return dict(body)
