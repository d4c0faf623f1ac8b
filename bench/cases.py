"""The benchmark cases, as data.

A :class:`Case` names the app a server loads (a factory of :mod:`bench.apps`
plus taskman plugin settings), the request the load generator repeats, and
the case it is measured against (its ``floor``).  Adding a case is adding a
value to the list :func:`builtin_cases` returns; nothing else changes.  Cases
that need a plugin that is not installed yet (``requires``) are skipped with
a note, so cases for a future plugin can be listed before it exists::

    Case(
        name="tracker-get-sqlite",
        title="GET /api/v1/tasks/{id}, SQLite",
        group="database",
        app="taskman",
        request=Request("/api/v1/tasks/1"),
        requires=("tracker",),
        setup="bench.seed:tasks",          # module:function, run once before the servers start
        floor="rawdb-pk-sqlite",           # a bare Falcon app doing the same select with sqlite3
    )
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench.alive_plugin import ALIVE_PATH, THREADED_PATH

FLAVOURS = ("wsgi", "asgi")
ALIVE_PLUGIN = "bench.alive_plugin"
LIVE_PATH = "/health/live"
TASKMAN_DISTRIBUTION = "taskman"


@dataclass(frozen=True)
class Request:
    """One request, repeated by the load generator; ``expect_status`` is checked before the load starts."""

    path: str
    method: str = "GET"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    expect_status: int = 200
    #: A token in ``path`` and ``body`` replaced by a value unique to each request (ids of created records).
    fresh: str | None = None

    def with_fresh(self, value: str) -> Request:
        """This request with its ``fresh`` token replaced by ``value`` (itself when it has none)."""
        if self.fresh is None:
            return self
        body = None if self.body is None else self.body.replace(self.fresh, value)
        return replace(self, path=self.path.replace(self.fresh, value), body=body, fresh=None)


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    group: str
    app: str
    request: Request
    #: Extra plugin objects (``module:attribute`` or modules) passed to ``create_app``.
    plugins: tuple[str, ...] = ()
    #: Installed plugins switched off (``APP_PLUGINS__DISABLE``).
    disable: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    #: The case this one is a ratio of; None for a floor.
    floor: str | None = "bare"
    #: A second reference for the ratio column ``vs core`` (what a plugin costs on top of the core).
    also_vs: str | None = None
    #: Plugins that must be installed, else the case is skipped.
    requires: tuple[str, ...] = ()
    #: ``module:function(database_url)`` run once before the servers start (seed data).
    setup: str | None = None
    #: ``sqlite`` (a fresh file per run) or ``postgresql`` (needs ``--postgres-url``).
    database: str = "sqlite"
    flavours: tuple[str, ...] = FLAVOURS
    #: Folders put first on the server's ``PYTHONPATH`` (another version of taskman, see :func:`against`).
    pythonpath: tuple[str, ...] = ()


def installed_plugins() -> list[str]:
    """Every plugin name in the ``taskman.plugins`` entry-point group."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group="taskman.plugins")})


#: The rate of each route group in every bench server: the rate limiter runs (it is a default plugin)
#: and counts every request, but one client at full speed must never be refused.
BENCH_RATE = "1000000000/hour"

#: Settings every taskman case runs with, on top of its plugin selection: the load sends no token,
#: so anonymous calls may read and write (auth still decides every request), and the rate limiter
#: counts without refusing.
BENCH_SETTINGS: Mapping[str, str] = {
    "APP_AUTH__ALLOW_ANONYMOUS": "true",
    "APP_AUTH__ANONYMOUS_SCOPES": "read,write",
    "APP_RATELIMIT__READS": BENCH_RATE,
    "APP_RATELIMIT__WRITES": BENCH_RATE,
    # Calls without a token spend budgets of their own (issue 15): the load sends none.
    "APP_RATELIMIT__ANONYMOUS_READS": BENCH_RATE,
    "APP_RATELIMIT__ANONYMOUS_WRITES": BENCH_RATE,
}


def default_plugins() -> list[str]:
    """The plugins taskman itself ships: the default set."""
    return sorted(
        {
            ep.name
            for ep in importlib.metadata.entry_points(group="taskman.plugins")
            if ep.dist is not None and ep.dist.name == TASKMAN_DISTRIBUTION
        }
    )


def required_by(plugin: str) -> tuple[str, ...]:
    """The plugins ``plugin`` cannot start without (its ``taskman_requires``): they stay on in its "alone" case."""
    for ep in importlib.metadata.entry_points(group="taskman.plugins", name=plugin):
        try:
            return tuple(getattr(ep.load(), "taskman_requires", ()))
        except Exception:  # a plugin that does not load is reported by the case itself
            return ()
    return ()


def builtin_cases(defaults: Sequence[str], installed: Iterable[str] | None = None) -> list[Case]:
    """Cases 1-6 of the issue; ``defaults`` are the default plugins (one "alone" case each)."""
    everything = tuple(sorted(set(installed if installed is not None else defaults) | set(defaults)))
    alive = Request(ALIVE_PATH)
    cases = [
        Case("bare", "bare Falcon, {status: alive}", "floor", "bare", alive, floor=None),
        Case("core", "taskman, no plugins, GET /alive", "core", "taskman", alive, (ALIVE_PLUGIN,), everything),
        Case(
            "core-threaded",
            "taskman, no plugins, unmarked sync responder",
            "core",
            "taskman",
            Request(THREADED_PATH),
            (ALIVE_PLUGIN,),
            everything,
            also_vs="core",
        ),
        Case(
            "default",
            "taskman, default plugins, GET /health/live",
            "default",
            "taskman",
            Request(LIVE_PATH),
            disable=tuple(sorted(set(everything) - set(defaults))),
            also_vs="core",
        ),
    ]
    for plugin in defaults:
        cases.append(
            Case(
                f"only-{plugin}",
                f"taskman + {plugin} alone, GET /alive",
                "plugin",
                "taskman",
                alive,
                (ALIVE_PLUGIN,),
                tuple(p for p in everything if p != plugin and p not in required_by(plugin)),
                also_vs="core",
            )
        )
    return cases + database_cases(everything, defaults)


#: The databases of the database cases: (case-name suffix, ``Case.database``).
DATABASES = (("sqlite", "sqlite"), ("postgres", "postgresql"))
SEED = "bench.seed:tasks"
RAWDB_APP = "rawdb"
TASKS_PATH = "/api/v1/tasks"
FRESH = "@ID@"
#: The body of the POST case: a task with a fresh id in the seed's empty project, labelled and assigned.
POST_BODY = (
    '{"id": "T-' + FRESH + '", "title": "Benchmark task", "project_id": "P-2", "priority": "p1",'
    ' "labels": ["backend"], "assignees": ["alice"], "estimate_points": 3}'
)
LIST_QUERY = "project_id=P-1&status=ready&limit=50"


def database_cases(everything: Sequence[str], defaults: Sequence[str]) -> list[Case]:
    """The tracker's GET, POST and list on each database, each against a raw-driver floor of its own.

    The tracker cases run the default plugin set (as ``default``).  Each
    floor is a bare Falcon app doing the same work with the raw driver
    (:mod:`bench.rawdb`): ``rawdb-pk-<db>`` the GET's primary-key select,
    ``rawdb-post-<db>`` the POST's inserts in one transaction,
    ``rawdb-list-<db>`` the list's query rendered as the same JSON.  POST
    and list are also shown against ``tracker-get-<db>`` (the ``vs ref``
    column: what one costs in GETs).
    """
    from bench.seed import GET_TASK

    off = tuple(sorted(set(everything) - set(defaults)))
    get = Request(f"{TASKS_PATH}/{GET_TASK}")
    post = Request(
        TASKS_PATH,
        method="POST",
        body=POST_BODY,
        headers=(("Content-Type", "application/json"),),
        expect_status=201,
        fresh=FRESH,
    )
    listing = Request(f"{TASKS_PATH}?{LIST_QUERY}")
    cases = []
    for suffix, database in DATABASES:
        tracker_get = f"tracker-get-{suffix}"
        common: dict[str, Any] = {"requires": ("tracker",), "setup": SEED, "database": database}
        for kind, request, floor_title, title in (
            ("get", get, "SELECT task by id", "GET /api/v1/tasks/{id}"),
            ("post", post, "INSERT task and its links in one transaction", "POST /api/v1/tasks"),
            ("list", listing, f"the list query as JSON ({LIST_QUERY})", f"GET /api/v1/tasks?{LIST_QUERY}"),
        ):
            floor = f"rawdb-{'pk' if kind == 'get' else kind}-{suffix}"
            cases += [
                Case(
                    floor,
                    f"bare Falcon + raw driver, {floor_title}, {suffix}",
                    "database",
                    RAWDB_APP,
                    request,
                    floor=None,
                    **common,
                ),
                Case(
                    f"tracker-{kind}-{suffix}",
                    f"tracker, default plugins, {title}, {suffix}",
                    "database",
                    "taskman",
                    request,
                    disable=off,
                    floor=floor,
                    also_vs=None if kind == "get" else tracker_get,
                    **common,
                ),
            ]
    return cases


QUICK_CASES = ("bare", "core", "default")


def select(cases: Sequence[Case], names: Sequence[str] | None) -> list[Case]:
    """The cases named (shell-style patterns or a group name allowed) plus the floors and references they need."""
    import fnmatch

    if not names:
        return list(cases)
    by_name = {c.name: c for c in cases}

    def matches(case: Case, name: str) -> bool:
        return fnmatch.fnmatchcase(case.name, name) or case.group == name

    unknown = [n for n in names if not any(matches(c, n) for c in cases)]
    if unknown:
        groups = sorted({c.group for c in cases})
        raise ValueError(
            f"unknown case(s) {', '.join(unknown)}; known: {', '.join(by_name)}; groups: {', '.join(groups)}"
        )
    wanted = {c.name for c in cases if any(matches(c, n) for n in names)}
    for name in list(wanted):
        case = by_name[name]
        for reference in (case.floor, case.also_vs):
            if reference is not None and reference in by_name:
                wanted.add(reference)
    return [c for c in cases if c.name in wanted]


def runnable(cases: Sequence[Case], installed: Iterable[str], *, postgres: bool) -> tuple[list[Case], list[str]]:
    """The cases this machine can run, and one note per case it cannot."""
    have = set(installed)
    kept: list[Case] = []
    notes: list[str] = []
    for case in cases:
        missing = [p for p in case.requires if p not in have]
        if missing:
            notes.append(f"{case.name}: skipped, plugin(s) {', '.join(missing)} not installed")
        elif case.database == "postgresql" and not postgres:
            notes.append(f"{case.name}: skipped, needs --postgres-url")
        else:
            kept.append(case)
    return kept, notes


def disabling(cases: Sequence[Case], plugins: Iterable[str]) -> list[Case]:
    """Every taskman case with ``plugins`` switched off too (to measure a fixed plugin set)."""
    extra = set(plugins)
    if not extra:
        return list(cases)
    return [replace(c, disable=tuple(sorted(set(c.disable) | extra))) if c.app == "taskman" else c for c in cases]


def against(cases: Sequence[Case], ref: str, path: str, missing_plugins: Iterable[str]) -> list[Case]:
    """A ``name@ref`` copy of every taskman case, served from the taskman found at ``path``.

    Plugins the other version does not have are switched off in its copies.
    A copy keeps its floor and is compared with the copy of its ``also_vs``,
    so both versions are measured in the same rounds, one after the other.
    """
    missing = set(missing_plugins)
    copies = []
    names = {c.name for c in cases}
    for case in cases:
        if case.app != "taskman":
            continue
        also_vs = f"{case.also_vs}@{ref}" if case.also_vs in names else case.also_vs
        copies.append(
            replace(
                case,
                name=f"{case.name}@{ref}",
                title=f"{case.title} ({ref})",
                disable=tuple(sorted(set(case.disable) | missing)),
                also_vs=also_vs,
                pythonpath=(path, *case.pythonpath),
            )
        )
    return copies
