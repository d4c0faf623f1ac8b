"""A generated client (openapi-python-client) reads the API as typed objects: the document is good enough to use.

The client is generated once, from the document an app serves, with no
warning allowed; then each flavour answers it through httpx's in-process
transports (WSGI, and ASGI with the async functions), and a burndown comes
back as the generated ``Burndown`` class, dates as dates.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import falcon.testing
import httpx
import pytest

import taskman
from taskman.config import load_config
from tests.helpers import TEST_ENVIRON

PACKAGE = "taskman_test_client"
#: No post hooks: the code is used as generated (the hooks would run ruff from PATH, which is a system matter).
CONFIG = "post_hooks: []\n"


def generator() -> list[str]:
    script = Path(sys.executable).parent / "openapi-python-client"
    return [str(script)] if script.exists() else [sys.executable, "-m", "openapi_python_client"]


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("openapi-client")
    config = load_config(
        environ=TEST_ENVIRON,
        overrides={"environment": "testing", "database": {"url": f"sqlite:///{folder / 'doc.db'}"}},
    )
    app = taskman.create_app(config)
    taskman.start(app)
    try:
        document = falcon.testing.TestClient(app).simulate_get("/api/openapi.json").json
    finally:
        taskman.stop(app)
    (folder / "openapi.json").write_text(json.dumps(document))
    (folder / "config.yaml").write_text(CONFIG)
    command = [
        *generator(),
        "generate",
        "--path",
        str(folder / "openapi.json"),
        "--config",
        str(folder / "config.yaml"),
        "--meta",
        "none",
        "--output-path",
        str(folder / PACKAGE),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=folder)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def seed(client: falcon.testing.TestClient) -> None:
    sprint = {"id": "S-1", "project_id": "P-1", "name": "One", "start_date": "2026-11-09", "end_date": "2026-11-20"}
    task = {"id": "T-1", "title": "Build", "project_id": "P-1", "sprint_id": "S-1", "estimate_points": 5}
    for path, body in (
        ("/api/v1/projects", {"id": "P-1", "name": "Apollo", "mission": "Land", "owner": "ann"}),
        ("/api/v1/sprints", sprint),
        ("/api/v1/tasks", task),
    ):
        assert client.simulate_post(path, json=body).status_code == 201


def test_the_client_reads_a_burndown_as_a_typed_object(
    client_package: ModuleType, make_client: Callable[..., falcon.testing.TestClient], asgi: bool, clock: Any
) -> None:
    app_client = make_client()
    seed(app_client)
    burndown_api = importlib.import_module(f"{PACKAGE}.api.sprints.get_sprint_burndown")
    progress_api = importlib.import_module(f"{PACKAGE}.api.sprints.get_sprint_progress")
    models = importlib.import_module(f"{PACKAGE}.models")
    if asgi:
        transport: Any = httpx.ASGITransport(app=app_client.app)

        async def both() -> tuple[Any, Any]:
            client = client_package.Client(base_url="http://testserver", httpx_args={"transport": transport})
            return (
                await burndown_api.asyncio(client=client, sprint_id="S-1"),
                await progress_api.asyncio(client=client, sprint_id="S-1"),
            )

        burndown, progress = asyncio.run(both())
    else:
        client = client_package.Client(
            base_url="http://testserver", httpx_args={"transport": httpx.WSGITransport(app=app_client.app)}
        )
        burndown = burndown_api.sync(client=client, sprint_id="S-1")
        progress = progress_api.sync(client=client, sprint_id="S-1")
    assert isinstance(burndown, models.Burndown), burndown
    assert (
        burndown.sprint_id == "S-1" and burndown.total_points == 5.0 and burndown.as_of == datetime.date(2026, 11, 10)
    )
    assert isinstance(burndown.series[0], models.BurndownSeriesItem)
    assert [day.date for day in burndown.series] == [datetime.date(2026, 11, 9), datetime.date(2026, 11, 10)]
    assert burndown.on_track is False and burndown.status == models.BurndownStatus.PLANNED
    assert isinstance(progress, models.SprintProgress)
    assert progress.tasks_by_status.new == 1 and progress.committed_points == 5.0
