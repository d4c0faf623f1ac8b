"""WSGI entry point for servers: ``gunicorn taskman.wsgi:app``.

Imported in each worker (gunicorn's default, no ``--preload``), so start-up
runs once per worker, at import, before the first request.  A start-up
failure is one line on stderr (the traceback with ``--debug``) and exit
status 3, which gunicorn's arbiter reads as "worker failed to boot" and stops.
"""

import sys
import traceback

from taskman.app import create_app, start
from taskman.runtime import STARTUP_FAILURES, debugging, describe_failure

WORKER_BOOT_ERROR = 3

try:
    app = create_app(asgi=False)
    start(app)
except STARTUP_FAILURES as exc:
    if debugging():
        traceback.print_exc()
    print(f"taskman: error: {describe_failure(exc)}", file=sys.stderr, flush=True)
    sys.exit(WORKER_BOOT_ERROR)
