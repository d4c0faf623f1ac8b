"""Per-request cost of one case without a server or a socket: ``python -m bench.inproc``.

The app is built as its server would build it (same environment, same
plugins) and called directly: WSGI with a prepared environ, ASGI with a
prepared scope inside one event loop.  What is left is the app's own work
per request, in microseconds, steady enough to profile
(``pyinstrument -m bench.inproc --case default --flavour asgi``) and to
check a hot-path change before the server benchmark confirms it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import apps
from bench.cases import BENCH_SETTINGS, Case, builtin_cases, default_plugins, installed_plugins


def wsgi_environ(case: Case) -> dict[str, Any]:
    path, _, query = case.request.path.partition("?")
    body = (case.request.body or "").encode()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": case.request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in case.request.headers:
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return environ


def bodies(case: Case, number: int) -> list[bytes]:
    """The body of each of ``number`` requests: a fresh record id in each when the case creates records."""
    if case.request.fresh is None:
        return [(case.request.body or "").encode()] * number
    run = uuid.uuid4().hex[:12]
    return [(case.request.with_fresh(f"{run}-{n}").body or "").encode() for n in range(number)]


def wsgi_loop(app: Any, case: Case, number: int) -> float:
    """Seconds for ``number`` requests."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        statuses.append(status)
        return lambda data: None

    template = wsgi_environ(case)
    each = bodies(case, number)
    started = time.perf_counter()
    for body in each:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        for chunk in app(environ, start_response):
            del chunk
    elapsed = time.perf_counter() - started
    if not statuses[-1].startswith(str(case.request.expect_status)):
        raise RuntimeError(f"{case.name}: {statuses[-1]}")
    return elapsed


def asgi_scope(case: Case) -> dict[str, Any]:
    path, _, query = case.request.path.partition("?")
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")]
    headers += [(n.lower().encode(), v.encode()) for n, v in case.request.headers]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": case.request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _asgi_loop(app: Any, case: Case, number: int) -> float:
    each = bodies(case, number)
    body = each[0]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = asgi_scope(case)
    started = time.perf_counter()
    for body in each:
        request = dict(scope)
        if body:
            request["headers"] = [*scope["headers"], (b"content-length", str(len(body)).encode())]
        await app(request, receive, send)
    elapsed = time.perf_counter() - started
    if statuses[-1] != case.request.expect_status:
        raise RuntimeError(f"{case.name}: {statuses[-1]}")
    return elapsed


async def _lifespan(app: Any, kind: str) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if sent:
            await asyncio.sleep(3600)
        return {"type": f"lifespan.{kind}"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    while not sent:
        await asyncio.sleep(0)
    task.cancel()


def build(case: Case, flavour: str, workdir: Path, database_url: str | None = None) -> Any:
    """The case's app, built as its server builds it (same settings, seeded database); ``database_url``: PostgreSQL."""
    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    os.environ.update(BENCH_SETTINGS)
    os.environ.update(
        APP_ENVIRONMENT="production",
        APP_DATABASE__URL=url,
        **{apps.APP_ENV: case.app, apps.PLUGINS_ENV: ",".join(case.plugins)},
    )
    if case.disable:
        os.environ["APP_PLUGINS__DISABLE"] = ",".join(case.disable)
    os.environ.update(case.env)
    if case.setup:
        apps.load_object(case.setup)(url)
    if case.app == "taskman":
        from taskman import create_app

        app = create_app(asgi=flavour == "asgi", plugins=apps.extra_plugins())
        app.taskman.migrations().apply()
        app.taskman.database.close_all()
    return apps.factory(case.app)(flavour == "asgi")


def measure(case: Case, flavour: str, number: int, repeat: int, database_url: str | None = None) -> list[float]:
    """Microseconds per request, one figure per repeat."""
    if case.database == "postgresql" and database_url is None:
        raise SystemExit(f"{case.name} needs --postgres-url (a database of its own: it is migrated and seeded)")
    with tempfile.TemporaryDirectory(prefix="taskman-inproc-") as folder:
        app = build(case, flavour, Path(folder), database_url if case.database == "postgresql" else None)
        if flavour == "wsgi":
            wsgi_loop(app, case, 100)
            return [wsgi_loop(app, case, number) / number * 1e6 for _ in range(repeat)]

        async def run() -> list[float]:
            await _asgi_loop(app, case, 100)  # the first request starts the app (no lifespan here)
            return [await _asgi_loop(app, case, number) / number * 1e6 for _ in range(repeat)]

        return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="default")
    parser.add_argument("--flavour", choices=("wsgi", "asgi"), default="wsgi")
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres-url", help="the database of a PostgreSQL case (migrated and seeded; not dropped)")
    args = parser.parse_args(argv)
    cases = {c.name: c for c in builtin_cases(default_plugins(), installed_plugins())}
    # The app's log lines are part of the cost, but not of this output.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    figures = measure(cases[args.case], args.flavour, args.number, args.repeat, args.postgres_url)
    print(f"{args.flavour} {args.case}: {min(figures):.1f} us per request (best of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
