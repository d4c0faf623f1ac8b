"""Races the tracker must win: against real multi-worker servers, and in-process on the plain-Python layer.

Every race releases its requests together from a :class:`threading.Barrier`;
over HTTP each thread has its own connection, opened before the barrier, so
the requests reach both workers of a real ``taskman serve --workers 2`` at
once.  The outcome is checked by status codes and by the database itself,
never by timing.  Runs on SQLite, or on PostgreSQL when
``TASKMAN_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import http.client
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import peewee
import pytest
from taskman_plugins import tracker
from taskman_plugins.tracker import idempotency
from taskman_plugins.tracker.errors import PreconditionFailed
from taskman_plugins.tracker.models import IdempotencyKey, Task
from taskman_plugins.tracker.projects import Projects
from taskman_plugins.tracker.store import Store
from taskman_plugins.tracker.tasks import Tasks

from taskman import db as taskman_db
from taskman.migrations import Migrations
from tests.conftest import database_for
from tests.servers import Reply, ServerLauncher, ServerProcess

API = "/api/v1"
T = TypeVar("T")

#: Seconds any one thread may wait at the barrier or for its reply (a deadlock fails, it does not hang).
PATIENCE = 60.0


# -- racing helpers ----------------------------------------------------------------------


def race(n: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """Run ``work(i, barrier)`` on ``n`` threads at once; each calls ``barrier.wait()`` right before it acts."""
    barrier = threading.Barrier(n, timeout=PATIENCE)
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(work, i, barrier) for i in range(n)]
        return [future.result(timeout=PATIENCE) for future in futures]


def send(
    server: ServerProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    barrier: threading.Barrier | None = None,
) -> Reply:
    """One request on a connection of its own; with ``barrier``, connect first, then wait, then send."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
    try:
        conn.connect()
        sent = {"Connection": "close", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = content_type
        if barrier is not None:
            barrier.wait()
        conn.request(method, API + path, body=data, headers=sent)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def racer(
    server: ServerProcess,
    method: str,
    path_of: Callable[[int], str],
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Callable[[int, threading.Barrier], Reply]:
    """What thread ``i`` of a :func:`race` does: send ``method path_of(i)`` the moment the barrier opens."""
    return lambda i, barrier: send(server, method, path_of(i), body, headers=headers, barrier=barrier)


def created(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = send(server, "POST", path, body)
    assert reply.status == 201, reply.body
    return dict(reply.json())


def statuses(replies: list[Reply]) -> list[int]:
    return sorted(reply.status for reply in replies)


def problem(reply: Reply) -> dict[str, Any]:
    assert reply.headers["content-type"] == "application/problem+json", reply.body
    return dict(reply.json())


@pytest.fixture
def db(database_url: str) -> Iterator[peewee.Database]:
    """A second, direct handle on the database the servers (or the plain-Python layer) use."""
    database = database_for(database_url)
    yield database
    database.close_all()


def scalar(database: peewee.Database, sql: str, *params: Any) -> Any:
    try:
        return database.execute_sql(sql, params).fetchone()[0]
    finally:
        database.close()


def column(database: peewee.Database, sql: str, *params: Any) -> list[Any]:
    try:
        return [row[0] for row in database.execute_sql(sql, params).fetchall()]
    finally:
        database.close()


# -- real servers ------------------------------------------------------------------------


@pytest.fixture(params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest, database_url: str, server_launcher: ServerLauncher) -> ServerProcess:
    """``taskman serve --<flavour> --workers 2`` on the test's database (testing: migrations auto-apply)."""
    started = server_launcher.start(
        [f"--{request.param}", "--workers", "2"],
        pythonpath=[],
        env={"APP_ENVIRONMENT": "testing", "APP_DATABASE__URL": database_url},
    )
    started.wait_for_http("/health/ready", 200)
    return started


def project(server: ServerProcess, project_id: str = "P-1") -> dict[str, Any]:
    return created(server, "/projects", {"id": project_id, "name": "Apollo", "mission": "Land", "owner": "ann"})


def sprint(server: ServerProcess, sprint_id: str, project_id: str = "P-1") -> dict[str, Any]:
    # The server runs on the real clock: a sprint around today (a week either side, so midnight cannot end it).
    today = datetime.datetime.now(datetime.UTC).date()
    dates = {"start_date": str(today - datetime.timedelta(days=7)), "end_date": str(today + datetime.timedelta(days=7))}
    return created(server, "/sprints", {"id": sprint_id, "project_id": project_id, "name": sprint_id, **dates})


def task(server: ServerProcess, task_id: str, project_id: str = "P-1", **fields: Any) -> dict[str, Any]:
    return created(server, "/tasks", {"id": task_id, "title": f"Task {task_id}", "project_id": project_id, **fields})


#: Races per test: one race overlaps only now and then (the requests of a pair are processed a few
#: milliseconds apart more often than not), so each test runs many of them.
ROUNDS = 20


@pytest.mark.servers
def test_concurrent_patches_with_the_same_if_match_let_exactly_one_win(server: ServerProcess) -> None:
    project(server)
    version = task(server, "T-1")["version"]
    for round_ in range(ROUNDS):

        def patch(i: int, barrier: threading.Barrier, v: int = version, r: int = round_) -> Reply:
            return send(
                server,
                "PATCH",
                "/tasks/T-1",
                {"title": f"round {r} by {i}"},
                headers={"If-Match": f'"{v}"'},
                content_type="application/merge-patch+json",
                barrier=barrier,
            )

        replies = race(2, patch)
        assert statuses(replies) == [200, 412], (round_, [r.body for r in replies])
        winner = next(r for r in replies if r.status == 200)
        loser = next(r for r in replies if r.status == 412)
        assert winner.json()["version"] == version + 1
        assert winner.headers["etag"] == f'"{version + 1}"'
        stale = problem(loser)
        assert stale["status"] == 412 and stale["current_version"] == version + 1, (round_, stale)
        assert loser.headers["etag"] == f'"{version + 1}"'
        current = send(server, "GET", "/tasks/T-1").json()
        assert current["version"] == version + 1
        assert current["title"] == winner.json()["title"]  # the loser wrote nothing
        version += 1


@pytest.mark.servers
def test_concurrent_sprint_starts_leave_exactly_one_active_sprint(server: ServerProcess, db: peewee.Database) -> None:
    winners: dict[str, str] = {}
    for round_ in range(ROUNDS // 2):
        # Two different planned sprints of one project ...
        ids = [f"S-{round_}-a", f"S-{round_}-b"]
        project(server, f"P-{round_}")
        for sprint_id in ids:
            sprint(server, sprint_id, f"P-{round_}")
        paths = [f"/sprints/{sprint_id}/start" for sprint_id in ids]
        replies = race(2, racer(server, "POST", paths.__getitem__))
        assert statuses(replies) == [200, 409], (round_, [r.body for r in replies])
        winner = ids[[r.status for r in replies].index(200)]
        assert replies[ids.index(winner)].json()["status"] == "active"
        assert problem(next(r for r in replies if r.status == 409))["status"] == 409
        winners[f"P-{round_}"] = winner

        # ... and one planned sprint, started three times at once.
        project(server, f"P-{round_}-same")
        sprint(server, f"S-{round_}-c", f"P-{round_}-same")
        same = f"/sprints/S-{round_}-c/start"
        replies = race(3, racer(server, "POST", lambda i, path=same: path))
        assert statuses(replies) == [200, 409, 409], (round_, [r.body for r in replies])
        assert send(server, "GET", f"/sprints/S-{round_}-c").json()["version"] == 2  # started once
        winners[f"P-{round_}-same"] = f"S-{round_}-c"

    active = db.execute_sql("SELECT project_id, id FROM sprint WHERE status = 'active'").fetchall()
    db.close()
    assert sorted(active) == sorted(winners.items())  # exactly one active sprint per project, the winner
    assert scalar(db, "SELECT COUNT(*) FROM sprint WHERE status = 'planned'") == ROUNDS // 2
    listed = send(server, "GET", "/sprints?project_id=P-0&status=active").json()["items"]
    assert [s["id"] for s in listed] == [winners["P-0"]]


@pytest.mark.servers
def test_an_idempotent_post_retried_concurrently_creates_one_task(server: ServerProcess, db: peewee.Database) -> None:
    project(server)
    rounds = ROUNDS // 2
    for round_ in range(rounds):
        body = {"id": f"T-{round_}", "title": "Only once", "project_id": "P-1", "labels": ["x"]}
        headers = {"Idempotency-Key": f"create-T-{round_}"}

        replies = race(8, racer(server, "POST", lambda i: "/tasks", body, headers))

        assert statuses(replies) == [201] * 8, (round_, [r.body for r in replies])
        first = replies[0].json()
        assert all(reply.json() == first for reply in replies)
        assert first["id"] == f"T-{round_}" and first["version"] == 1
        assert {reply.headers["location"] for reply in replies} == {f"/api/v1/tasks/T-{round_}"}
        replayed = [reply.headers.get("idempotent-replayed") for reply in replies]
        assert sorted(replayed, key=str) == [None] + ["true"] * 7

    assert scalar(db, "SELECT COUNT(*) FROM task") == rounds
    assert scalar(db, "SELECT COUNT(*) FROM task_label") == rounds
    assert scalar(db, "SELECT COUNT(*) FROM idempotency_key") == rounds

    body = {"id": "T-0", "title": "Only once", "project_id": "P-1", "labels": ["x"]}
    headers = {"Idempotency-Key": "create-T-0"}
    again = send(server, "POST", "/tasks", body, headers=headers)
    assert again.status == 201 and again.headers["idempotent-replayed"] == "true"
    other = send(server, "POST", "/tasks", {**body, "title": "Something else"}, headers=headers)
    assert other.status == 422
    assert "Idempotency-Key" in problem(other)["detail"]
    assert scalar(db, "SELECT COUNT(*) FROM task") == rounds


#: Each walk: the sort asked for, and the key its pages must be ordered by (nulls sort last in either direction).
WALKS = ("created_at", "due_at", "-created_at", "-due_at")


def _order_key(item: Mapping[str, Any], sort: str) -> tuple[Any, ...]:
    name = sort.lstrip("-")
    value = item[name]
    return (value is None, value or "")


def _walk(server: ServerProcess, sort: str, after_page: Callable[[], None]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    path = f"/tasks?limit=7&sort={sort}"
    cursor = None
    while True:
        reply = send(server, "GET", path + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status == 200, reply.body
        page = reply.json()
        assert len(page["items"]) <= 7
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            return seen
        after_page()


class Inserter(threading.Thread):
    """Keeps adding tasks until stopped; :meth:`wait_for_more` lets a reader interleave with it by construction."""

    def __init__(self, server: ServerProcess, prefix: str, due: Callable[[int], str | None]) -> None:
        super().__init__(daemon=True)
        self.server, self.prefix, self.due = server, prefix, due
        self.inserted: list[str] = []
        self.failures: list[BaseException] = []
        self.added = threading.Condition()
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            n = 0
            while not self.stopping.is_set():
                task_id = f"{self.prefix}-{n:04d}"
                task(self.server, task_id, due_at=self.due(n))
                n += 1
                with self.added:
                    self.inserted.append(task_id)
                    self.added.notify_all()
        except BaseException as exc:  # reported by the reader
            with self.added:
                self.failures.append(exc)
                self.added.notify_all()

    def wait_for_more(self, count: int) -> None:
        """Return once more than ``count`` tasks were added (not a timing: a deadlock or a failure ends it)."""
        with self.added:
            assert self.added.wait_for(lambda: len(self.inserted) > count or bool(self.failures), timeout=PATIENCE)
        assert not self.failures, self.failures

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=PATIENCE)


@pytest.mark.servers
def test_a_pagination_walk_sees_every_existing_task_once_while_tasks_are_added(
    server: ServerProcess, db: peewee.Database
) -> None:
    project(server)
    base = datetime.datetime(2026, 11, 2, 9, 0)

    def due(n: int) -> str | None:
        # A third without due_at, and many ties among the rest (the id breaks them).
        return None if n % 3 == 0 else (base + datetime.timedelta(days=n % 7)).isoformat() + "Z"

    for n in range(120):
        task(server, f"T-pre-{n:03d}", due_at=due(n))

    for walk_number, sort in enumerate(WALKS):
        existing = set(column(db, "SELECT id FROM task"))
        inserter = Inserter(server, f"T-new-{walk_number}", due)
        marks: list[int] = []

        def between_pages(inserter: Inserter = inserter, marks: list[int] = marks) -> None:
            # At least one task lands between two pages, while the next page is being read.
            marks.append(len(inserter.inserted))
            inserter.wait_for_more(marks[-1])

        inserter.start()
        try:
            inserter.wait_for_more(0)
            seen = _walk(server, sort, between_pages)
        finally:
            inserter.stop()
        assert not inserter.failures, inserter.failures
        ids = [item["id"] for item in seen]
        assert len(ids) == len(set(ids)), f"{sort}: seen twice: {sorted(i for i in set(ids) if ids.count(i) > 1)}"
        assert existing <= set(ids), f"{sort}: never seen: {sorted(existing - set(ids))}"
        assert set(ids) <= existing | set(inserter.inserted)
        assert len(marks) >= 120 // 7, sort  # the walk really went page by page while tasks were added
        keys = [_order_key(item, sort) for item in seen]
        if sort.startswith("-"):
            nulls = [k for k in keys if k[0]]
            values = [k for k in keys if not k[0]]
            assert keys == values + nulls, f"{sort}: nulls are not last"
            assert values == sorted(values, reverse=True), f"{sort}: pages out of order"
        else:
            assert keys == sorted(keys), f"{sort}: pages out of order"


# -- in process: the plain-Python layer from threads ----------------------------------------


class EventLog:
    """The event sink of an in-process :class:`Store`: remembers what fired."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, payload: Mapping[str, Any]) -> None:
        self.fired.append((name, dict(payload)))


@pytest.fixture
def store(db: peewee.Database) -> Iterator[Store]:
    """A :class:`Store` over a migrated database, with the tracker's models bound to it; events are recorded."""
    Migrations(db, [("tracker", Path(tracker.__file__).parent / "migrations")]).apply()
    previous = taskman_db.database.obj
    taskman_db.database.initialize(db)
    yield Store(db, EventLog())
    taskman_db.database.initialize(previous)


def in_thread(store: Store, work: Callable[[], T]) -> Callable[[], T]:
    """``work`` that gives its thread's connection back to the pool when done."""

    def run() -> T:
        try:
            return work()
        finally:
            taskman_db.release_connection(store.database)

    return run


def seed(store: Store) -> None:
    in_thread(store, lambda: Projects(store).create({"id": "P-1", "name": "A", "mission": "M", "owner": "ann"}))()


def test_in_process_patches_with_the_same_if_match_let_exactly_one_win(store: Store) -> None:
    seed(store)
    tasks = Tasks(store)
    in_thread(store, lambda: tasks.create({"id": "T-1", "title": "t", "project_id": "P-1"}))()

    for version in range(1, ROUNDS + 1):

        def patch(i: int, barrier: threading.Barrier, v: int = version) -> int:
            def work() -> int:
                barrier.wait()
                try:
                    return int(tasks.patch("T-1", {"title": f"{v} by {i}"}, frozenset({v})).version)
                except PreconditionFailed as stale:
                    return -stale.current_version

            return in_thread(store, work)()

        outcomes = race(4, patch)
        assert sorted(outcomes) == [-(version + 1)] * 3 + [version + 1], (version, outcomes)
        record = in_thread(store, lambda: Task.get_by_id("T-1"))()
        assert record.version == version + 1 and record.title == f"{version} by {outcomes.index(version + 1)}"
    assert isinstance(store.emit, EventLog)
    assert [name for name, _ in store.emit.fired].count("task.updated") == ROUNDS  # only winners fired


def test_in_process_patches_without_if_match_all_apply_in_turn(store: Store) -> None:
    seed(store)
    tasks = Tasks(store)
    in_thread(store, lambda: tasks.create({"id": "T-1", "title": "t", "project_id": "P-1"}))()

    def patch(i: int, barrier: threading.Barrier) -> int:
        def work() -> int:
            barrier.wait()
            return int(tasks.patch("T-1", {"title": f"by {i}"}, None).version)

        return in_thread(store, work)()

    assert sorted(race(6, patch)) == [2, 3, 4, 5, 6, 7]  # each saw the one before it: no update lost
    assert in_thread(store, lambda: Task.get_by_id("T-1").version)() == 7


def test_in_process_run_once_runs_the_work_once_for_concurrent_duplicates(store: Store) -> None:
    seed(store)
    tasks = Tasks(store)
    body = {"id": "T-1", "title": "Only once", "project_id": "P-1"}
    calls: list[int] = []

    def create() -> idempotency.StoredResponse:
        calls.append(1)
        record = tasks.create(dict(body))
        return idempotency.StoredResponse(201, tasks.render(record), f"{API}/tasks/{record.id}")

    def post(i: int, barrier: threading.Barrier, fingerprint: str = idempotency.fingerprint("POST", "/t", body)) -> Any:
        def work() -> idempotency.StoredResponse:
            barrier.wait()
            return idempotency.run_once(
                store,
                key="k-1",
                scope="POST /api/v1/tasks",
                request_fingerprint=fingerprint,
                ttl=datetime.timedelta(hours=1),
                work=create,
            )

        return in_thread(store, work)()

    responses = race(8, post)
    assert len(calls) == 1
    assert sorted(r.replayed for r in responses) == [False] + [True] * 7
    assert {r.status_code for r in responses} == {201}
    assert all(r.body == responses[0].body and r.location == f"{API}/tasks/T-1" for r in responses)
    assert in_thread(store, lambda: (Task.select().count(), IdempotencyKey.select().count()))() == (1, 1)
