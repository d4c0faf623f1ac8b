"""The ``[openapi]`` settings section (``APP_OPENAPI__*``), validated by attrs."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from attrs import validators as v

from taskman import setting, settings_section


def _check_servers(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    for url in value:
        if not isinstance(url, str) or not url or any(c.isspace() for c in url):
            raise ValueError(f"'{attribute.name}' entries must be URLs without spaces: {url!r}")


@settings_section("openapi")
@attrs.frozen
class OpenApiSettings:
    """What ``info`` and ``servers`` say, and whether ``/api/docs`` is served."""

    title: str = setting("", "the document's info.title; empty: the app_name setting", v.instance_of(str))
    version: str = setting("", "the document's info.version; empty: taskman's version", v.instance_of(str))
    description: str = setting("", "the document's info.description (Markdown)", v.instance_of(str))
    docs: bool = setting(True, "serve the interactive API reference at /api/docs", v.instance_of(bool))
    servers: tuple[str, ...] = setting(
        (),
        "base URLs listed in the document's servers; empty: the host that served the document",
        _check_servers,
    )
