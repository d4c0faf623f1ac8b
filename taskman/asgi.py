"""ASGI entry point for servers: ``uvicorn taskman.asgi:app``; start-up runs on lifespan."""

from taskman.app import create_app

app = create_app(asgi=True)
