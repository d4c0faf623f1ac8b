"""Create the API token table (a frozen copy of the model as it was when this was written)."""

from __future__ import annotations

from typing import Any

import peewee

_database = peewee.DatabaseProxy()


class ApiToken(peewee.Model):  # type: ignore[misc]
    name = peewee.CharField(max_length=100, unique=True)
    prefix = peewee.CharField(max_length=16, unique=True)
    token_hash = peewee.CharField(max_length=64)
    scopes = peewee.CharField(max_length=100)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        database = _database
        table_name = "auth_token"


def up(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.create_tables([ApiToken], safe=False)


def down(migrator: Any, db: Any) -> None:
    _database.initialize(db)
    db.drop_tables([ApiToken], safe=False)
