"""What can go wrong in the tracker, in plain Python; :mod:`.http` maps each to a problem+json status."""

from __future__ import annotations

from collections.abc import Sequence

import attrs


@attrs.frozen
class Problem:
    """One bad field: a JSON Pointer into the request body (or query) and what is wrong there."""

    pointer: str
    detail: str


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 task``, ``2 tasks``, ``1 action list``: messages people read get their grammar right."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def listed(names: Sequence[str]) -> str:
    """``T-1``, ``T-1 and T-2``, ``T-1, T-2 and T-3``."""
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


class TrackerError(Exception):
    """Base class; ``str(error)`` is the problem's ``detail``."""


class Malformed(TrackerError):
    """The body is not JSON this API reads: bad syntax, a key repeated in one object, nesting too deep (400)."""


class Invalid(TrackerError):
    """The body is well-formed JSON but breaks the schema or a rule (422)."""

    def __init__(self, problems: Sequence[Problem], detail: str = "The request body failed validation.") -> None:
        super().__init__(detail)
        self.problems = list(problems)


class BadQuery(TrackerError):
    """An unknown query parameter, filter value, sort key or cursor (400)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.pointer}: {p.detail}" for p in problems))
        self.problems = list(problems)


class NotFound(TrackerError):
    """No such record (404)."""


class Conflict(TrackerError):
    """The request clashes with the current state: duplicate id, active sprint, dependants (409).

    ``pointer`` names the body's field that clashes, where one does (a
    batch reports it per item).
    """

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class Forbidden(TrackerError):
    """The caller may not do this to this record: another author's comment (403)."""


class PreconditionFailed(TrackerError):
    """``If-Match`` names a version that is no longer current (412)."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"The record has changed: its current version is {current_version}.")
        self.current_version = current_version


class IdempotencyMismatch(TrackerError):
    """An ``Idempotency-Key`` reused with another request (422)."""
