"""Per-plugin migrations: history, status, rollback, and what start-up does with them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
import peewee
import pytest

import taskman
from taskman import hookimpl
from taskman.app import PendingMigrationsError
from taskman.db import database, make_database
from taskman.migrations import HISTORY_TABLE, Migrations
from tests.conftest import disabling

#: Migration history is what these tests look at: they start with no tables at all.
pytestmark = pytest.mark.empty_database

CREATE_NOTES = """
from peewee import Model, TextField


def up(migrator, db):
    class Note(Model):
        text = TextField()

        class Meta:
            database = db
            table_name = "note"

    db.create_tables([Note])


def down(migrator, db):
    db.execute_sql("DROP TABLE note")
"""

ADD_DONE = """
from peewee import BooleanField


def up(migrator, db):
    migrator.migrate(migrator.add_column("note", "done", BooleanField(default=False)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("note", "done"))
"""

CREATE_TAGS = """
def up(migrator, db):
    db.execute_sql("CREATE TABLE tag (name VARCHAR(50) PRIMARY KEY)")


def down(migrator, db):
    db.execute_sql("DROP TABLE tag")
"""


class Note(peewee.Model):
    text = peewee.TextField()
    done = peewee.BooleanField(default=False)

    class Meta:
        database = database
        table_name = "note"


class NotesResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = [{"text": n.text, "done": n.done} for n in Note.select().order_by(Note.id)]

    def on_post(self, req: Any, resp: Any) -> None:
        Note.create(text=req.get_media()["text"])
        resp.status = falcon.HTTP_201


class MigratingPlugin:
    def __init__(self, name: str, folder: Path) -> None:
        self.taskman_plugin_name = name
        self.folder = folder

    @hookimpl
    def taskman_migrations(self) -> Path:
        return self.folder

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/notes", NotesResource())] if self.taskman_plugin_name == "notes" else []


@pytest.fixture
def make_config(make_config: Callable[..., Any]) -> Callable[..., Any]:
    """Without the plugins that have migrations: theirs would be pending beside these tests' sample plugins."""
    return disabling(make_config, "tracker", "auth", "events", "webhooks")


@pytest.fixture
def notes_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "notes_migrations"
    folder.mkdir()
    (folder / "0001_create_notes.py").write_text(CREATE_NOTES)
    (folder / "0002_add_done.py").write_text(ADD_DONE)
    return folder


@pytest.fixture
def tags_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tags_migrations"
    folder.mkdir()
    (folder / "0001_initial.py").write_text(CREATE_TAGS)
    return folder


@pytest.fixture
def migrations(make_config: Callable[..., Any], notes_folder: Path, tags_folder: Path) -> Migrations:
    config = make_config()
    return Migrations(make_database(config.database), [("notes", notes_folder), ("tags", tags_folder)])


def test_apply_runs_every_plugin_in_order_and_records_history(migrations: Migrations) -> None:
    assert migrations.pending() == ["notes:0001_create_notes", "notes:0002_add_done", "tags:0001_initial"]
    assert migrations.apply() == ["notes:0001_create_notes", "notes:0002_add_done", "tags:0001_initial"]
    assert migrations.pending() == []
    assert migrations.apply() == []
    db = migrations.database
    assert {c.name for c in db.get_columns("note")} >= {"text", "done"}
    assert db.table_exists("tag")
    names = [r[0] for r in db.execute_sql(f"SELECT name FROM {HISTORY_TABLE} ORDER BY id").fetchall()]
    assert names == ["notes:0001_create_notes", "notes:0002_add_done", "tags:0001_initial"]


def test_same_script_name_in_two_plugins_does_not_collide(
    make_config: Callable[..., Any], tmp_path: Path, tags_folder: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "0001_initial.py").write_text(CREATE_TAGS.replace("tag", "label"))
    runner = Migrations(make_database(make_config().database), [("tags", tags_folder), ("labels", other)])
    assert runner.apply() == ["tags:0001_initial", "labels:0001_initial"]


def test_status_lists_applied_and_pending(migrations: Migrations, notes_folder: Path) -> None:
    migrations.apply()
    (notes_folder / "0003_later.py").write_text("def up(migrator, db):\n    pass\n")
    fresh = Migrations(migrations.database, [("notes", notes_folder)])
    states = {s.qualified_name: s for s in fresh.status()}
    assert states["notes:0001_create_notes"].applied_at is not None
    assert states["notes:0003_later"].applied_at is None
    assert fresh.pending() == ["notes:0003_later"]


def test_rollback_reverts_one_step_at_a_time(migrations: Migrations) -> None:
    migrations.apply()
    assert migrations.rollback() == "tags:0001_initial"
    assert not migrations.database.table_exists("tag")
    assert migrations.rollback() == "notes:0002_add_done"
    assert "done" not in {c.name for c in migrations.database.get_columns("note")}
    assert migrations.pending() == ["notes:0002_add_done", "tags:0001_initial"]
    assert migrations.rollback() == "notes:0001_create_notes"
    assert migrations.rollback() is None


def test_startup_applies_pending_migrations_in_testing(make_client: Callable[..., Any], notes_folder: Path) -> None:
    client = make_client(plugins=(MigratingPlugin("notes", notes_folder),))
    assert client.simulate_post("/notes", json={"text": "ship it"}).status_code == 201
    assert client.simulate_get("/notes").json == [{"text": "ship it", "done": False}]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_startup_refuses_pending_migrations_outside_development(
    environment: str, asgi: bool, make_config: Callable[..., Any], notes_folder: Path
) -> None:
    plugin = MigratingPlugin("notes", notes_folder)
    config = make_config(plugins=(plugin,), overrides={"environment": environment})
    app = taskman.create_app(config, asgi=asgi, plugins=(plugin,))
    with pytest.raises(PendingMigrationsError) as exc:
        taskman.start(app)
    assert exc.value.pending == ["notes:0001_create_notes", "notes:0002_add_done"]
    assert "taskman migrate" in str(exc.value)
    app.taskman.migrations().apply()
    assert taskman.start(app)
    taskman.stop(app)
