"""A private PostgreSQL cluster that a test may stop and start: ``initdb`` into a folder, ``pg_ctl`` for the rest.

The fault tests take the database away under load; they must never do that to
the shared development or CI server, so they get a cluster of their own on a
free loopback port, with trust authentication and its unix socket in its own
folder.  PostgreSQL refuses to run as root: when the tests run as root (CI
containers do), every PostgreSQL command runs as the ``postgres`` user through
``runuser``, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from tests.helpers import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin"
PROGRAMS = ("initdb", "pg_ctl", "postgres")
SERVICE_USER = "postgres"
COMMAND_TIMEOUT = 120.0

#: Appended to postgresql.conf.  fsync is off: a clean stop (``pg_ctl -m fast``) still
#: writes everything out, and the tests never crash the machine, only the server.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
fsync = off
full_page_writes = off
log_min_messages = warning
"""


class PgClusterError(RuntimeError):
    """The private cluster could not be created, started or stopped; the message says why."""


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def postgres_bin_dir(pattern: str = BIN_GLOB) -> Path:
    """The ``bin`` folder of the highest PostgreSQL version installed that has every program needed."""
    candidates = sorted(
        (path for path in Path("/").glob(pattern.lstrip("/")) if all((path / p).exists() for p in PROGRAMS)),
        key=_version_key,
    )
    if not candidates:
        raise PgClusterError(
            f"no PostgreSQL server binaries ({', '.join(PROGRAMS)}) in {pattern}: "
            "install the postgresql server package to run the fault tests"
        )
    return candidates[-1]


def _runs_as_root() -> bool:
    return os.geteuid() == 0


class PgCluster:
    """One PostgreSQL cluster in ``folder`` (``data/``, ``socket/``, ``postgres.log``) on ``127.0.0.1:port``."""

    def __init__(self, folder: Path, *, port: int | None = None, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.folder = folder
        self.port = port or free_port()
        self.data_dir = folder / "data"
        self.socket_dir = folder / "socket"
        self.log_file = folder / "postgres.log"
        self.running = False

    @classmethod
    def create(cls, base: Path) -> PgCluster:
        """Initialise a new cluster under ``base`` (under the system temp folder instead when running as root).

        As root the server runs as ``postgres``, which cannot enter pytest's
        root-only temporary folders; a folder of its own in the system temp
        folder is used then, and :meth:`destroy` removes it.
        """
        if _runs_as_root():
            folder = Path(tempfile.mkdtemp(prefix="taskman-pg-"))
        else:
            folder = base / "pgcluster"
            folder.mkdir(parents=True)
        cluster = cls(folder)
        cluster.init()
        return cluster

    # -- commands -------------------------------------------------------------

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / program), *args]
        if _runs_as_root():
            return ["runuser", "-u", SERVICE_USER, "--", *command]
        return command

    def _run(self, program: str, *args: str) -> str:
        command = self._command(program, *args)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(f"{' '.join(command)} did not finish in {COMMAND_TIMEOUT}s\n{self.log()}") from exc
        if done.returncode != 0:
            raise PgClusterError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}{self.log()}"
            )
        return done.stdout

    def log(self) -> str:
        """The server's own log (empty before the first start)."""
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")
        return ""

    def init(self) -> None:
        """``initdb`` (trust authentication, UTF-8) and the settings above."""
        self.socket_dir.mkdir(exist_ok=True)
        if _runs_as_root():
            try:
                owner = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                raise PgClusterError(f"running as root needs a {SERVICE_USER!r} user to run PostgreSQL as") from None
            for path in (self.folder, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        settings = SETTINGS.format(port=self.port, socket_dir=self.socket_dir)
        # Written by the user running initdb (possibly not us): append through the service user when root.
        if _runs_as_root():
            subprocess.run(
                ["runuser", "-u", SERVICE_USER, "--", "tee", "-a", str(self.data_dir / "postgresql.conf")],
                input=settings,
                capture_output=True,
                text=True,
                check=True,
                timeout=COMMAND_TIMEOUT,
            )
        else:
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(settings)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, disconnect clients) and wait until it is gone."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def destroy(self) -> None:
        """Stop the server if it runs and remove the whole folder."""
        if self.running:
            with contextlib.suppress(PgClusterError):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- databases ------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create (or re-create, empty) database ``name``; return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)
