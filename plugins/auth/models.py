"""The token table, bound to the core's database proxy (created by ``migrations/0001_tokens.py``)."""

from __future__ import annotations

import peewee

from taskman import database


class ApiToken(peewee.Model):  # type: ignore[misc]
    name = peewee.CharField(max_length=100, unique=True)
    prefix = peewee.CharField(max_length=16, unique=True)
    token_hash = peewee.CharField(max_length=64)
    scopes = peewee.CharField(max_length=100)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        database = database
        table_name = "auth_token"
