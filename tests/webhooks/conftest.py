"""The webhooks tests use the events tests' client (their background work driven by the test)."""

from tests.events.conftest import api, make_api

__all__ = ["api", "make_api"]
