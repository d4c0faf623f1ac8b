"""The wheel built from this repository: what it ships and that it works without the editable install.

Slow but part of the normal run (about 3 s): it builds and installs a real
wheel, offline (``--no-build-isolation``: setuptools and wheel come from the
``test`` extra).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import pip

REPO_ROOT = Path(__file__).resolve().parent.parent

# The repo is copied before building: setuptools builds in the source tree and
# packs whatever is in build/lib, so a stale build/ (a module since renamed or
# removed) would end up in the wheel and hide exactly what this test is for.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".tox", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "taskman.db*"
)

PROBE = r"""
import importlib, importlib.metadata, json, sys

module = importlib.import_module("taskman_plugins.request_id")
import taskman

eps = importlib.metadata.entry_points(group="taskman.plugins")
scripts = importlib.metadata.entry_points(group="console_scripts")
print(json.dumps({
    "request_id_file": module.__file__,
    "taskman_file": taskman.__file__,
    "editable_modules": sorted(m for m in sys.modules if "editable" in m),
    "site_imported": "site" in sys.modules,
    "plugins": [
        {"name": ep.name, "value": ep.value, "dist": ep.dist.name, "location": str(ep.dist.locate_file(""))}
        for ep in eps
    ],
    "scripts": [{"name": ep.name, "value": ep.value, "dist": ep.dist.name} for ep in scripts if ep.name == "taskman"],
    "loaded_file": eps["request_id"].load().__file__,
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCE)
    out = work / "wheelhouse"
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source))
    (built,) = out.glob("taskman-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("target")
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    return target


def _dist_info_file(archive: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in archive.namelist() if n.endswith(f".dist-info/{name}") and n.count("/") == 1]
    return archive.read(path).decode()


def _ini_sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            assert current is not None, f"entry outside a section: {raw!r}"
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def test_wheel_ships_the_core_and_the_builtin_plugins(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for expected in (
        "taskman/__init__.py",
        "taskman/py.typed",
        "taskman_plugins/__init__.py",
        "taskman_plugins/request_id.py",
    ):
        assert expected in names, f"{expected} missing from {wheel.name}"
    assert not [n for n in names if n.startswith("plugins/")], "the plugins/ folder must ship as taskman_plugins/"
    assert not [n for n in names if n.startswith("tests/")], "tests must not be packaged"
    top_level = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"taskman", "taskman_plugins"}


def test_wheel_declares_the_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        entry_points = _ini_sections(_dist_info_file(archive, "entry_points.txt"))
    assert entry_points["taskman.plugins"]["request_id"] == "taskman_plugins.request_id"
    assert entry_points["console_scripts"]["taskman"] == "taskman.cli:main"


def _site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _run_isolated(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -S``: no site module, so the editable install's ``.pth`` finder is not active."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join([str(installed), *_site_packages()])
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_installed_wheel_finds_its_builtin_plugin_without_the_editable_install(installed: Path, tmp_path: Path) -> None:
    result = _run_isolated(installed, "-c", PROBE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert report["site_imported"] is False
    assert report["editable_modules"] == []
    assert Path(report["request_id_file"]).is_relative_to(installed)
    assert Path(report["taskman_file"]).is_relative_to(installed)
    assert not Path(report["taskman_file"]).is_relative_to(REPO_ROOT)

    (request_id,) = [ep for ep in report["plugins"] if ep["name"] == "request_id"]
    assert request_id["value"] == "taskman_plugins.request_id"
    assert request_id["dist"] == "taskman"
    assert Path(request_id["location"]) == installed, "found through the wheel's own metadata"
    assert Path(report["loaded_file"]).is_relative_to(installed)
    assert report["scripts"] == [{"name": "taskman", "value": "taskman.cli:main", "dist": "taskman"}]


def test_installed_wheel_cli_lists_its_builtin_plugin(installed: Path, tmp_path: Path) -> None:
    result = _run_isolated(installed, "-m", "taskman.cli", "plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["request_id"]["distribution"] == "taskman"
    assert rows["request_id"]["enabled"] is True
    assert rows["request_id"]["hooks"]
