"""The ``[logging]`` settings section."""

from __future__ import annotations

import logging
from typing import Any, Literal

import attrs
from attrs import validators as v

from taskman import settings_section

FORMATS = ("auto", "json", "console")
LEVELS = ("debug", "info", "warning", "error", "critical")


def _is_level(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or value.lower() not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)} (any case), got {value!r}")


@settings_section("logging")
@attrs.frozen
class LoggingSettings:
    """``[logging]``: ``APP_LOGGING__FORMAT``, ``APP_LOGGING__LEVEL``."""

    format: Literal["auto", "json", "console"] = attrs.field(
        default="auto",
        validator=v.in_(FORMATS),
        metadata={"help": "auto (console in development, JSON elsewhere), json or console"},
    )
    level: str = attrs.field(
        default="info",
        validator=_is_level,
        metadata={"help": "lowest level logged: debug, info, warning, error or critical"},
    )

    def resolved_format(self, environment: str) -> Literal["json", "console"]:
        """The format in force: ``auto`` is coloured console in development and JSON lines elsewhere."""
        if self.format == "auto":
            return "console" if environment == "development" else "json"
        return self.format

    @property
    def level_number(self) -> int:
        return int(getattr(logging, self.level.upper()))
