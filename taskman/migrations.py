"""Per-plugin migrations on top of peewee's ``playhouse.migrations`` runner.

Each plugin returns a folder of numbered scripts (``0001_create_tasks.py``
defining ``up(migrator, db)`` and ``down(migrator, db)``) from
``taskman_migrations``.  All plugins share one history table; a row's name is
``plugin:script`` so two plugins may both have a ``0001_initial``.
Applying takes a lock (a PostgreSQL advisory lock, or a lock file beside the
SQLite file) so workers that start together do not race.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import peewee
from playhouse.migrations import Migration, MigrationError, Runner

from taskman.db import release_connection

HISTORY_TABLE = "taskman_migrations"
_ADVISORY_LOCK_KEY = 0x7A5C3A11  # arbitrary, constant: "taskman migrations"

__all__ = ["HISTORY_TABLE", "MigrationError", "MigrationState", "Migrations"]


class _PluginRunner(Runner):  # type: ignore[misc]
    """peewee's runner, scoped to one plugin's folder and rows."""

    def __init__(self, database: peewee.Database, plugin: str, directory: Path) -> None:
        super().__init__(database, str(directory), table_name=HISTORY_TABLE)
        self.prefix = f"{plugin}:"

    def migrations(self) -> list[Migration]:
        return [m._replace(name=self.prefix + m.name) for m in super().migrations()]

    def applied(self) -> dict[str, datetime.datetime]:
        return {name: at for name, at in super().applied().items() if name.startswith(self.prefix)}


@attrs.frozen
class MigrationState:
    plugin: str
    name: str
    applied_at: datetime.datetime | None
    file_missing: bool = False

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"


class Migrations:
    """The migrations of every enabled plugin against one database."""

    def __init__(self, database: peewee.Database, folders: Sequence[tuple[str, Path]]) -> None:
        self.database = database
        self.runners = {plugin: _PluginRunner(database, plugin, folder) for plugin, folder in folders}

    def status(self) -> list[MigrationState]:
        rows = []
        try:
            for plugin, runner in self.runners.items():
                for m in runner.status():
                    name = m.name[len(runner.prefix) :]
                    rows.append(MigrationState(plugin, name, m.applied, file_missing=m.path is None))
        finally:
            release_connection(self.database)
        return rows

    def pending(self) -> list[str]:
        return [row.qualified_name for row in self.status() if row.applied_at is None]

    def apply(self) -> list[str]:
        """Apply every pending migration, plugin by plugin; return the names applied."""
        applied: list[str] = []
        try:
            with self._lock():
                for runner in self.runners.values():
                    applied.extend(runner.up())
        finally:
            release_connection(self.database)
        return applied

    def rollback(self) -> str | None:
        """Revert the most recently applied migration; return its name, or None if none is applied."""
        try:
            with self._lock():
                if not self.database.table_exists(HISTORY_TABLE):
                    return None
                rows = self.database.execute_sql(f'SELECT name FROM "{HISTORY_TABLE}" ORDER BY id DESC').fetchall()
                for (name,) in rows:
                    plugin = name.split(":", 1)[0]
                    runner = self.runners.get(plugin)
                    if runner is not None:
                        runner.down(target=name)
                        return str(name)
                return None
        finally:
            release_connection(self.database)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        if isinstance(self.database, peewee.PostgresqlDatabase):
            self.database.execute_sql("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
            try:
                yield
            finally:
                self.database.execute_sql("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
            return
        path = self.database.database
        if not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
