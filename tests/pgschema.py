"""The PostgreSQL run's per-test database: rows emptied between tests, the schema re-created only when needed.

Migrating the default plugins' schema costs about 100 DDL statements, a
quarter of a second on PostgreSQL, before every test.  Instead, the
schema the default plugins migrate to is kept from one test to the next
as long as it is exactly that schema: after each test its fingerprint
(tables, columns, defaults, indexes, constraints, triggers, functions and
the rows of the migration history) is compared with the one taken after a
clean migration.  The next test then gets it with every row deleted and
every sequence restarted; otherwise, or when a test is marked
``empty_database``, the ``public`` schema is dropped and re-created.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

#: One line per part of the schema's shape; their digest is the fingerprint.
SHAPE = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
    SELECT 'relation ' || c.relname || ' ' || c.relkind::text AS item
      FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'type ' || t.typname || ' ' || t.typtype::text FROM pg_type t
     WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r')
) shape
"""

#: Where taskman records the migrations it applied (taskman.migrations.HISTORY_TABLE).
HISTORY_TABLE = "taskman_migrations"


class ReusableSchema:
    """The ``public`` schema of the session's database, handed to one test after another."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None
        self._baseline: str | None = None
        self._emptying: str | None = None
        #: Whether the schema is the baseline's, with whatever rows the last test left.
        self._reusable = False

    @property
    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self._admin

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()

    def record_baseline(self, migrate: Callable[[], None]) -> None:
        """Migrate an empty schema with ``migrate`` (the default plugins); its shape is the one kept."""
        self.recreate()
        migrate()
        self._baseline = self.fingerprint()
        tables = [
            row[0]
            for row in self.admin.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> %s",
                (HISTORY_TABLE,),
            )
        ]
        history_ids = f"public.{HISTORY_TABLE}"
        sequences = [
            row[0]
            for row in self.admin.execute(
                "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public' "
                "AND 'public.' || sequencename IS DISTINCT FROM pg_get_serial_sequence(%s, 'id')",
                (history_ids,),
            )
        ]
        (superuser,) = self.admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() or (
            False,
        )
        if superuser:
            # Deleting from a handful of nearly empty tables beats TRUNCATE's new files by a factor of ten;
            # the replica role skips the foreign-key triggers, so the order of the tables does not matter.
            statements = ["SET LOCAL session_replication_role = replica"]
            statements += [f"DELETE FROM {table}" for table in tables]
            statements += [f"ALTER SEQUENCE {sequence} RESTART" for sequence in sequences]
        else:
            statements = [f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"] if tables else []
        self._emptying = "; ".join(statements)
        self._reusable = True

    def fingerprint(self) -> str:
        (shape,) = self.admin.execute(SHAPE).fetchone() or ("",)
        history = ""
        if self.admin.execute("SELECT to_regclass(%s)", (f"public.{HISTORY_TABLE}",)).fetchone() != (None,):
            history = "\n".join(
                str(row[0]) for row in self.admin.execute(f"SELECT name FROM {HISTORY_TABLE} ORDER BY name")
            )
        return f"{shape}\n{history}"

    def recreate(self) -> None:
        self.admin.execute("DROP SCHEMA IF EXISTS public CASCADE")
        self.admin.execute("CREATE SCHEMA public")

    def prepare(self, *, empty: bool) -> None:
        """Before a test: the baseline schema without rows, or (``empty``, or a changed shape) no schema at all."""
        if self._reusable and not empty and self._emptying is not None:
            with self.admin.transaction():
                self.admin.execute(self._emptying)
        else:
            self.recreate()
        self._reusable = False  # until the test is over and its shape checked

    def settle(self) -> None:
        """After a test: note whether the schema is still the baseline's."""
        self._reusable = self._baseline is not None and self.fingerprint() == self._baseline
