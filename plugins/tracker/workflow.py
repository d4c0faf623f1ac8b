"""The task workflow: which status may follow which, read from configuration and checked at start-up.

The table is ``[tracker] transitions``: one entry per status that can be
left, ``"from -> to | to"``.  The same text works in the TOML file (a list
of strings) and in the environment (``APP_TRACKER__TRANSITIONS``, entries
separated by commas).  A status no entry names on its left is terminal.

:func:`parse_transitions` refuses a table a task could get stuck in: every
status must be reachable from ``new``, and from every status some path
must lead to ``done`` or ``dropped``, the statuses where work ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .schemas import TASK_STATUSES

#: A task is created in this status.
INITIAL = "new"
#: Where work ends: a sprint's tasks in these stay in it when it closes; every status must be able to reach one.
FINISHED = frozenset({"done", "dropped"})

Table = Mapping[str, tuple[str, ...]]

#: The earlier version's table, the default.
DEFAULT_TRANSITIONS = (
    "new -> ready | dropped",
    "ready -> in_progress | dropped",
    "in_progress -> blocked | review | done | dropped",
    "blocked -> in_progress | dropped",
    "review -> in_progress | done | dropped",
)

_ENTRY = re.compile(r"\s*([a-z_]+)\s*->\s*([a-z_]+(?:\s*\|\s*[a-z_]+)*)\s*")


def _known(status: str, entry: str) -> str:
    if status not in TASK_STATUSES:
        raise ValueError(f"unknown status {status!r} in {entry!r}; the statuses are {', '.join(TASK_STATUSES)}")
    return status


def _reachable(table: Table, starts: Iterable[str]) -> set[str]:
    seen = set(starts)
    frontier = list(seen)
    while frontier:
        for target in table.get(frontier.pop(), ()):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def parse_transitions(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``{status: allowed next statuses}`` for every task status; ValueError naming what is wrong.

    Each entry is ``"from -> to"`` or ``"from -> to | to | ..."``; a status
    is on the left of one entry at most.
    """
    table: dict[str, tuple[str, ...]] = {status: () for status in TASK_STATUSES}
    given: set[str] = set()
    for entry in entries:
        match = _ENTRY.fullmatch(entry) if isinstance(entry, str) else None
        if match is None:
            raise ValueError(f"{entry!r} is not a transition; write 'from -> to' or 'from -> to | other'")
        source = _known(match.group(1), entry)
        targets = [_known(target.strip(), entry) for target in match.group(2).split("|")]
        if source in given:
            raise ValueError(f"{source} is on the left of two entries; list all its moves in one ('{source} -> a | b')")
        if source in targets:
            raise ValueError(f"{entry!r} moves {source} to itself; leave that out (setting the same status is no move)")
        if len(set(targets)) != len(targets):
            raise ValueError(f"{entry!r} names a status twice")
        given.add(source)
        table[source] = tuple(targets)
    unreachable = [s for s in TASK_STATUSES if s not in _reachable(table, [INITIAL])]
    if unreachable:
        raise ValueError(f"{', '.join(unreachable)} cannot be reached from {INITIAL}: no move leads there")
    # A status is left for good only through a path to where work ends; a dead end or a closed loop traps tasks.
    trapped = [s for s in TASK_STATUSES if s not in FINISHED and not _reachable(table, [s]) & FINISHED]
    if trapped:
        ends = " or ".join(sorted(FINISHED))
        raise ValueError(f"{', '.join(trapped)} cannot be left: no moves lead from there to {ends}")
    return table


def terminal(table: Table) -> frozenset[str]:
    """The statuses no move leaves."""
    return frozenset(status for status, moves in table.items() if not moves)
