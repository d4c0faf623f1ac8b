"""Plain helpers for comma-separated HTTP header values (part of the plugin API: ``taskman.with_vary``)."""

from __future__ import annotations


def split_header_list(value: str | None) -> list[str]:
    """The items of a comma-separated header value (``"GET, POST"``), blanks dropped."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def with_vary(existing: str | None, field: str) -> str:
    """``existing`` Vary value with ``field`` added unless it (or ``*``) is already there."""
    present = {item.lower() for item in split_header_list(existing)}
    if field.lower() in present or "*" in present:
        return existing or field
    return f"{existing}, {field}" if existing else field
