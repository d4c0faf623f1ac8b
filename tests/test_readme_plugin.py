"""The README's plugin example and docs/plugins.md's "Testing a plugin" example work exactly as pasted."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from taskman_plugins.openapi import document_of

import taskman

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def readme_plugin() -> str:
    section = (ROOT / "README.md").read_text().split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    (block,) = python_blocks(section)
    return block


@pytest.fixture
def hello_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "hello.py").write_text(readme_plugin())
    return folder


def test_the_readme_plugin_works_as_pasted(
    hello_folder: Path, make_config: Callable[..., Any], asgi: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Loaded from a plugins folder, with auth refusing anonymous calls: it declares its access and its docs."""
    environ = {"APP_PLUGINS__DIRECTORY": str(hello_folder), "APP_AUTH__ALLOW_ANONYMOUS": "false"}
    app = taskman.create_app(make_config(environ=environ), asgi=asgi)
    taskman.start(app)
    try:
        client = falcon.testing.TestClient(app)
        result = client.simulate_get("/hello/world")
        assert result.status_code == 200, result.text
        assert result.json == {"message": "Hello, world!"}
        assert client.simulate_head("/hello/world").status_code == 200
        assert "/hello/{name}" in document_of(app)["paths"]
        assert not [
            r for r in caplog.records if r.getMessage() in ("openapi_undocumented_routes", "auth_undeclared_routes")
        ]
    finally:
        taskman.stop(app)
    greeted = taskman.create_app(make_config(environ={**environ, "APP_HELLO__GREETING": "Hi"}), asgi=asgi)
    taskman.start(greeted)
    try:
        assert falcon.testing.TestClient(greeted).simulate_get("/hello/you").json == {"message": "Hi, you!"}
    finally:
        taskman.stop(greeted)


def test_the_testing_a_plugin_example_passes(hello_folder: Path, tmp_path: Path) -> None:
    """docs/plugins.md's test, run by pytest against the README's plugin: two tests, one per flavour."""
    (block,) = [b for b in python_blocks((ROOT / "docs" / "plugins.md").read_text()) if "def test_greets" in b]
    (hello_folder / "test_hello.py").write_text(block)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(hello_folder / "test_hello.py")],
        cwd=hello_folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(hello_folder)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
