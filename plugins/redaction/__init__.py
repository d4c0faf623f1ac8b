"""redaction: mask secrets in every log line before it is rendered.

Contributes a :class:`~.redactor.Redactor` to the logging plugin's
``taskman_log_processors`` hook.  The redactor is plain Python (see
:mod:`.redactor`); this module is only the wiring.  Disable the plugin
(``APP_PLUGINS__DISABLE=redaction``) or swap it for another one that
implements the same hook.
"""

from __future__ import annotations

from typing import Any

import attrs

from taskman import hookimpl, settings_section

from .redactor import DEFAULT_KEYS, REDACTED, Redactor, key_segments

SECTION = "redaction"

__all__ = ["DEFAULT_KEYS", "REDACTED", "SECTION", "RedactionSettings", "Redactor"]


def _valid_keys(instance: Any, attribute: Any, value: Any) -> None:
    for key in value:
        if not isinstance(key, str) or not key_segments(key):
            raise ValueError(f"each key needs at least one letter or digit, got {key!r}")


@settings_section("redaction")
@attrs.frozen
class RedactionSettings:
    """``[redaction]``: ``APP_REDACTION__EXTRA_KEYS=ssn,card_number``."""

    extra_keys: tuple[str, ...] = attrs.field(
        default=(),
        validator=_valid_keys,
        metadata={"help": "more sensitive key names, matched in any spelling like the built-in ones"},
    )


@hookimpl
def taskman_settings() -> type:
    return RedactionSettings


@hookimpl
def taskman_log_processors(config: Any) -> list[Redactor]:
    return [Redactor(config.settings(RedactionSettings).extra_keys)]
