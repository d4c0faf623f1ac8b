"""Serve one bench app the way ``taskman serve`` serves taskman: ``python -m bench.serve``.

``taskman serve`` always loads ``taskman.asgi:app`` / ``taskman.wsgi:app``,
built from installed plugins only; the bench needs other apps (the bare
floor, taskman plus a plugin from ``bench/``), so this mirrors what
``taskman.cli`` does around the server: build the app once in the parent
(which configures logging and refuses pending migrations in production),
run the ``taskman_serve`` hooks, then start uvicorn or gunicorn with the
same settings (taskman's gunicorn worker and uvicorn protocol with the
``[server]`` defaults, no server access log, server lines through the root
logger when a plugin configured it, no gunicorn control socket).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench import apps
from taskman.servers import run_gunicorn, run_uvicorn


def preflight(asgi: bool) -> None:
    """What ``taskman serve`` does before the workers start, for a taskman app."""
    from taskman import create_app
    from taskman.app import AUTO_MIGRATE_ENVIRONMENTS, PendingMigrationsError

    app: Any = create_app(asgi=asgi, plugins=apps.extra_plugins())
    runtime = app.taskman
    try:
        migrations = runtime.migrations()
        if migrations.runners:
            if runtime.config.environment in AUTO_MIGRATE_ENVIRONMENTS:
                migrations.apply()
            elif pending := migrations.pending():
                raise PendingMigrationsError(pending)
    finally:
        runtime.database.close_all()
    runtime.plugins.serve(runtime.config, 1)


def serve_uvicorn(port: int) -> None:
    run_uvicorn("bench.apps:asgi_app", "127.0.0.1", port, 1, factory=True)


def serve_gunicorn(port: int) -> None:
    run_gunicorn("127.0.0.1", port, 1, load_app=apps.wsgi_app, proc_name="taskman-bench")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("--flavour", choices=("asgi", "wsgi"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asgi = args.flavour == "asgi"
    if os.environ.get(apps.APP_ENV, "bare") == "taskman":
        preflight(asgi)
    if asgi:
        serve_uvicorn(args.port)
    else:
        serve_gunicorn(args.port)


if __name__ == "__main__":
    main()
