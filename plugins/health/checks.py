"""The checks the health plugin contributes itself: ``database``."""

from __future__ import annotations

from typing import Any

from taskman import ping


class DatabaseCheck:
    """One ``SELECT 1`` round trip on the app's database; raises when it is not there."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def __call__(self) -> None:
        ping(self.db)

    def __repr__(self) -> str:
        return f"DatabaseCheck({type(self.db).__name__})"
