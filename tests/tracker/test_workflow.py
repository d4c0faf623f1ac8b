"""The task workflow is configuration (``[tracker] transitions``): its format, and the tables start-up refuses.

The transition suite itself runs on a configured table too (``workflow`` in test_tasks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from taskman_plugins.tracker.settings import TrackerSettings
from taskman_plugins.tracker.workflow import DEFAULT_TRANSITIONS, parse_transitions

from taskman.config import ConfigError, load_config
from tests.helpers import TEST_ENVIRON
from tests.sample_plugins import LifecyclePlugin
from tests.tracker.conftest import Api
from tests.tracker.test_tasks import REOPENING_SETTING


def test_the_default_is_the_earlier_versions_table() -> None:
    assert TrackerSettings().transition_table() == {
        "new": ("ready", "dropped"),
        "ready": ("in_progress", "dropped"),
        "in_progress": ("blocked", "review", "done", "dropped"),
        "blocked": ("in_progress", "dropped"),
        "review": ("in_progress", "done", "dropped"),
        "done": (),
        "dropped": (),
    }


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((*DEFAULT_TRANSITIONS, "done -> archived"), "unknown status 'archived' in 'done -> archived'"),
        ((*DEFAULT_TRANSITIONS, "done ready"), "'done ready' is not a transition"),
        ((*DEFAULT_TRANSITIONS, "new -> blocked"), "new is on the left of two entries"),
        ((*DEFAULT_TRANSITIONS, "done -> done"), "moves done to itself"),
        (("new -> ready | ready", *DEFAULT_TRANSITIONS[1:]), "names a status twice"),
        # Nothing leads to review any more:
        (
            (
                "new -> ready | dropped",
                "ready -> in_progress | dropped",
                "in_progress -> blocked | done | dropped",
                *DEFAULT_TRANSITIONS[3:],
            ),
            "review cannot be reached from new",
        ),
        # blocked is a dead end:
        (
            DEFAULT_TRANSITIONS[:3] + DEFAULT_TRANSITIONS[4:],
            "blocked cannot be left",
        ),
        # blocked and review only lead to each other once entered:
        (
            (*DEFAULT_TRANSITIONS[:3], "blocked -> review", "review -> blocked"),
            "blocked, review cannot be left: no moves lead from there to done or dropped",
        ),
    ],
)
def test_a_table_a_task_could_get_stuck_in_is_refused_naming_the_status(entries: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|")):
        parse_transitions(entries)


def test_spacing_is_free_and_done_may_be_reopened() -> None:
    table = parse_transitions([*(e.replace(" ", "") for e in DEFAULT_TRANSITIONS), "  done->ready  "])
    assert table["done"] == ("ready",) and table["in_progress"] == ("blocked", "review", "done", "dropped")


def config(tmp_path: Path, environ: dict[str, str] | None = None, toml: str | None = None) -> Any:
    file = None
    if toml is not None:
        file = tmp_path / "taskman.toml"
        file.write_text(toml)
    return load_config(file, environ={**TEST_ENVIRON, **(environ or {})}, overrides={"environment": "testing"})


def test_the_table_comes_from_the_toml_file_or_the_environment(tmp_path: Path) -> None:
    lines = ",\n  ".join(f'"{entry}"' for entry in (*DEFAULT_TRANSITIONS, "done -> ready"))
    from_file = config(tmp_path, toml=f"[tracker]\ntransitions = [\n  {lines},\n]\n")
    assert from_file.settings(TrackerSettings).transition_table()["done"] == ("ready",)
    from_env = config(tmp_path, environ={"APP_TRACKER__TRANSITIONS": ",".join([*DEFAULT_TRANSITIONS, "done->ready"])})
    expected = from_file.settings(TrackerSettings).transition_table()
    assert from_env.settings(TrackerSettings).transition_table() == expected


def test_start_up_names_the_status_that_cannot_be_left(tmp_path: Path, make_client: Callable[..., Any]) -> None:
    broken = ",".join(DEFAULT_TRANSITIONS[:3] + DEFAULT_TRANSITIONS[4:])
    with pytest.raises(ConfigError) as failed:
        config(tmp_path, environ={"APP_TRACKER__TRANSITIONS": broken})
    assert (
        "tracker.transitions (from env APP_TRACKER__TRANSITIONS): blocked cannot be left: "
        "no moves lead from there to done or dropped" in str(failed.value)
    )
    with pytest.raises(ConfigError, match="dropped cannot be reached from new"):
        make_client(environ={"APP_TRACKER__TRANSITIONS": "new->ready,ready->in_progress,in_progress->done"})


def test_a_reopened_task_loses_its_completion_time(make_client: Callable[..., Any]) -> None:
    api = Api(make_client(environ={"APP_TRACKER__TRANSITIONS": REOPENING_SETTING}), LifecyclePlugin())
    api.project()
    api.task()
    api.done("T-1")
    assert api.get("/tasks/T-1").json["completed_at"] is not None
    reopened = api.post("/tasks/T-1/status", {"status": "ready"})
    assert reopened.status_code == 200 and reopened.json["completed_at"] is None
    api.sprint()
    assert api.patch("/tasks/T-1", {"sprint_id": "S-1"}).status_code == 200
    # Closing a sprint carries over what is not finished, whatever the table calls terminal.
    assert api.post("/sprints/S-1/start").status_code == 200
    closed = api.post("/sprints/S-1/close")
    assert closed.status_code == 200 and api.get("/tasks/T-1").json["sprint_id"] is None
