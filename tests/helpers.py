"""Helpers for tests that install fixture distributions and run the real ``taskman`` command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CLI_TIMEOUT = 60.0

#: Settings every test app starts from (a test's own ``environ`` wins): requests
#: without a token may do anything and no test of another concern meets a rate
#: limit.  The auth and ratelimit plugins' own tests set their own values (the events tests their long polls).
TEST_ENVIRON = {
    "APP_AUTH__ALLOW_ANONYMOUS": "true",
    "APP_AUTH__ANONYMOUS_SCOPES": "read,write,admin",
    "APP_RATELIMIT__READS": "1000000/minute",
    "APP_RATELIMIT__WRITES": "1000000/minute",
    # Long polls of the change feed end within a second: schemathesis asks for every wait= the document allows.
    "APP_EVENTS__MAX_WAIT": "1",
    "APP_RATELIMIT__ANONYMOUS_READS": "1000000/minute",
    "APP_RATELIMIT__ANONYMOUS_WRITES": "1000000/minute",
}


def pip(*args: str) -> None:
    """Run this environment's pip quietly; if it fails, fail the test with pip's output."""
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"


def install_fixture_dist(name: str, target: Path) -> Path:
    """pip-install ``tests/fixtures/<name>`` into ``target`` (offline) and return ``target``.

    The source is copied first so the in-tree build (``build/``, ``*.egg-info``)
    happens in a temporary folder: a stale ``build/lib`` in the fixture would
    otherwise end up in the wheel, and parallel sessions would race on it.
    """
    source = target.parent / f"{target.name}-src"
    shutil.copytree(FIXTURES / name, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip("install", "--no-deps", "--no-build-isolation", "--target", str(target), str(source))
    return target


def taskman_command() -> list[str]:
    """The ``taskman`` console script of the running environment (``python -m taskman.cli`` if absent)."""
    script = Path(sys.executable).parent / "taskman"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "taskman.cli"]


def subprocess_env(pythonpath: Sequence[Path], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment (``APP_*`` already removed by conftest) with ``PYTHONPATH`` set to ``pythonpath``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(TEST_ENVIRON)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_taskman(
    args: Sequence[str], *, cwd: Path, pythonpath: Sequence[Path], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``taskman ARGS`` in its own process group; on a timeout kill the whole group (a server may hide there)."""
    command = [*taskman_command(), *args]
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=subprocess_env(pythonpath, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{command} did not finish in {CLI_TIMEOUT}s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the command failed with exactly one line on stderr, ``taskman: error: ...``; return it."""
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{result.stderr}"
    assert lines[0].startswith("taskman: error: "), lines[0]
    return lines[0]


def plugins_json(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter from the repository root: a fork there runs single-threaded."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=root, timeout=60, check=False
    )
