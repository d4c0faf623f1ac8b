"""Validate bodies against :mod:`.schemas` and report one JSON Pointer per bad field.

jsonschema does the schema work; this module adds what a schema cannot say
or says too loosely: real RFC 3339 dates and date-times (jsonschema only
checks ``format`` when optional packages are installed), and strings that
no database can store (NUL, lone surrogates).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker, validators

from .errors import Invalid, Problem, counted

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")

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


_Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})  # type: ignore[no-untyped-call]


class Schema:
    """A compiled schema: ``Schema(doc).check(body)`` raises :class:`Invalid` listing every bad field."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self.validator = _Validator(schema, format_checker=_formats)

    def problems(self, body: Any) -> list[Problem]:
        problems = list(_string_problems(body))
        if problems:
            return problems
        found: dict[str, Problem] = {}
        for error in self.validator.iter_errors(body):
            for problem in _problems(error):
                found.setdefault(problem.pointer, problem)
        return sorted(found.values(), key=lambda p: p.pointer)

    def check(self, body: Any) -> dict[str, Any]:
        problems = self.problems(body)
        if problems:
            raise Invalid(problems)
        return dict(body)
