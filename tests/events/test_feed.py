"""The change feed: keyset pages in id order, filters, strict parameters, a bounded long poll, concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from taskman_plugins.events.outbox import write_transaction
from taskman_plugins.tracker.store import Store
from taskman_plugins.tracker.tasks import Tasks

import taskman
from tests.events.conftest import EventsApi


def seed(api: EventsApi) -> None:
    api.project()
    api.project("P-2")
    api.sprint()
    for n in range(3):
        api.task(f"T-{n}")
    api.task("T-9", project_id="P-2")


def test_pages_hand_out_every_event_once_in_id_order(api: EventsApi) -> None:
    seed(api)
    everything = api.feed(limit=500)["items"]
    walked = api.walk(limit=2)
    assert walked == everything and len(everything) == 11
    ids = [event["id"] for event in walked]
    assert ids == sorted(set(ids))
    page = api.feed(limit=2)
    assert page["has_more"] and page["next_after"] == ids[1]
    last = api.feed(after=ids[-1])
    assert last == {"items": [], "next_after": ids[-1], "has_more": False}


def test_filters_by_type_prefix_and_project(api: EventsApi) -> None:
    seed(api)
    tasks = api.walk(type="task.")
    assert {e["type"] for e in tasks} == {"task.created"} and len(tasks) == 4
    assert [e["type"] for e in api.walk(type="sprint.,project.created")] == [
        "project.created",
        "project.created",
        "sprint.created",
    ]
    other = api.walk(project_id="P-2")
    assert {e["project_id"] for e in other} == {"P-2"}
    assert {e["type"] for e in other} == {"project.created", "task.created", "project.health_changed"}


def test_a_filtered_page_that_is_not_full_moves_the_reader_to_the_newest_event(api: EventsApi) -> None:
    seed(api)
    newest = api.walk()[-1]["id"]
    page = api.feed(type="nothing.")
    assert page == {"items": [], "next_after": newest, "has_more": False}


@pytest.mark.parametrize(
    "params",
    [
        {"after": "-1"},
        {"after": "١٢"},  # Arabic-Indic digits: int() takes them, this API does not
        {"after": "\uff11"},  # fullwidth one
        {"after": "1e3"},
        {"after": "1_000"},
        {"after": "9" * 19},
        {"after": ""},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "2.5"},
        {"wait": "21"},
        {"type": "Task."},
        {"type": "task.*"},
        {"type": ",".join(["task."] * 11)},
        {"project_id": "P 1"},
        {"project_id": "x" * 51},
        {"cursor": "abc"},
        {"after": ["1", "2"]},
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(api: EventsApi, params: dict[str, object]) -> None:
    result = api.get("/events", params=params)
    assert result.status_code == 400, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["errors"][0]["parameter"] == next(iter(params))


def tasks_of(api: EventsApi) -> Tasks:
    """The tracker's tasks, written the way its responders write them (falcon's ASGI test client is one thread's)."""
    runtime = api.runtime
    return Tasks(Store(taskman.database, runtime.fire_event, record=runtime.record_events))


def create_task(api: EventsApi, task_id: str) -> None:
    with api.runtime.activated():
        try:
            tasks_of(api).create({"id": task_id, "title": "t", "project_id": "P-1"})
        finally:
            taskman.release_connection(api.runtime.database)


def test_a_long_poll_answers_when_an_event_arrives(api: EventsApi) -> None:
    api.project()
    after = api.feed()["next_after"]
    writer = threading.Timer(0.2, create_task, args=(api, "T-1"))
    writer.start()
    page = api.feed(after=after, wait=20)
    writer.join(30)
    if not page["items"]:  # the write landed between the poll's last look and its end: read on
        page = api.feed(after=after)
    assert [e["type"] for e in page["items"]] == ["project.health_changed", "task.created"]


def test_a_long_poll_with_nothing_new_ends_empty(api: EventsApi) -> None:
    api.project()
    after = api.feed()["next_after"]
    assert api.feed(after=after, wait=1) == {"items": [], "next_after": after, "has_more": False}


def test_the_feed_walked_while_several_writers_commit_sees_every_event_once(
    make_api: Callable[..., EventsApi],
) -> None:
    """Writers on their own threads (and connections); a reader follows next_after over HTTP as it goes."""
    api = make_api()
    api.project()
    writers, per_writer = 4, 12
    failures: list[str] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            try:
                create_task(api, f"T-{n}-{i}")
            except Exception as exc:  # reported below: a thread's exception would pass unseen
                failures.append(repr(exc))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    after = 0
    while any(thread.is_alive() for thread in threads) or after < api.feed(after=after)["next_after"]:
        page = api.feed(after=after, limit=7)
        seen += [event["id"] for event in page["items"]]
        after = page["next_after"]
    for thread in threads:
        thread.join()
    seen += [event["id"] for event in api.walk(after=after)]
    assert not failures
    everything = [event["id"] for event in api.walk()]
    assert len(everything) == 1 + 2 * writers * per_writer  # project.created; task.created and health each
    assert seen == everything, "each event once, none missed, in id order"


def test_an_id_taken_by_a_transaction_still_open_is_never_overtaken(make_api: Callable[..., EventsApi]) -> None:
    """PostgreSQL's sequences hand out ids that may commit out of order; the outbox must not let them.

    Transaction A records its event (taking id n) and stays open; transaction
    B records one after it.  B may not commit id n+1 while A is open, or a
    reader who saw n+1 would move past n and never see it: B waits for A, and
    the reader sees nothing of either until A commits, then both in order.
    """
    api = make_api()
    runtime = api.runtime
    recorded, release, b_done = threading.Event(), threading.Event(), threading.Event()
    failures: list[str] = []

    def transaction(name: str, hold: bool) -> None:
        try:
            with runtime.activated():
                with write_transaction(taskman.database):
                    committed = runtime.record_events([(name, {"thing_id": name})])
                    if hold:
                        recorded.set()
                        assert release.wait(30)
                committed()
                taskman.release_connection(runtime.database)
        except Exception as exc:  # reported below
            failures.append(f"{name}: {exc!r}")
        finally:
            if not hold:
                b_done.set()

    a = threading.Thread(target=transaction, args=("thing.a", True))
    a.start()
    assert recorded.wait(30)
    b = threading.Thread(target=transaction, args=("thing.b", False))
    b.start()
    assert not b_done.wait(0.5), "B committed while A, holding a smaller id, was still open"
    assert api.feed()["items"] == []
    release.set()
    a.join(30)
    b.join(30)
    assert not failures
    events = api.walk()
    assert [e["type"] for e in events] == ["thing.a", "thing.b"] and events[0]["id"] < events[1]["id"]
