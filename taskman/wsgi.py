"""WSGI entry point for servers: ``gunicorn taskman.wsgi:app``.

Imported in each worker (gunicorn's default, no ``--preload``), so start-up
runs once per worker, at import, before the first request.
"""

from taskman.app import create_app, start

app = create_app(asgi=False)
start(app)
