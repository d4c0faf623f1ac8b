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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import apps
from bench.cases import Case, builtin_cases, default_plugins, installed_plugins


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
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def wsgi_loop(app: Any, case: Case, number: int) -> float:
    """Seconds for ``number`` requests."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        statuses.append(status)
        return lambda data: None

    template = wsgi_environ(case)
    body = (case.request.body or "").encode()
    started = time.perf_counter()
    for _ in range(number):
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
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
    body = (case.request.body or "").encode()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = asgi_scope(case)
    started = time.perf_counter()
    for _ in range(number):
        await app(dict(scope), receive, send)
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


def build(case: Case, flavour: str, workdir: Path) -> Any:
    os.environ.update(
        APP_ENVIRONMENT="production",
        APP_DATABASE__URL=f"sqlite:///{workdir / 'bench.db'}",
        **{apps.APP_ENV: case.app, apps.PLUGINS_ENV: ",".join(case.plugins)},
    )
    if case.disable:
        os.environ["APP_PLUGINS__DISABLE"] = ",".join(case.disable)
    os.environ.update(case.env)
    if case.app == "taskman":
        from taskman import create_app

        app = create_app(asgi=flavour == "asgi", plugins=apps.extra_plugins())
        app.taskman.migrations().apply()
        app.taskman.database.close_all()
    return apps.factory(case.app)(flavour == "asgi")


def measure(case: Case, flavour: str, number: int, repeat: int) -> list[float]:
    """Microseconds per request, one figure per repeat."""
    with tempfile.TemporaryDirectory(prefix="taskman-inproc-") as folder:
        app = build(case, flavour, Path(folder))
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
    args = parser.parse_args(argv)
    cases = {c.name: c for c in builtin_cases(default_plugins(), installed_plugins())}
    # The app's log lines are part of the cost, but not of this output.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    figures = measure(cases[args.case], args.flavour, args.number, args.repeat)
    print(f"{args.flavour} {args.case}: {min(figures):.1f} us per request (best of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
