"""The index of every hook (the core's and those plugins add), as ``taskman hooks`` prints it.

``docs/hooks.md`` holds this index; a test regenerates it and compares, so
the documentation cannot drift from the hooks that exist.
"""

from __future__ import annotations

import inspect

import attrs
import pluggy

from taskman.plugins import HOOK_PREFIX, Plugins

CORE = "core"


@attrs.frozen
class HookEntry:
    name: str
    arguments: tuple[str, ...]
    owner: str
    summary: str
    firstresult: bool = False
    isolated: bool = False

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.arguments)})"


def hook_index(plugins: Plugins) -> list[HookEntry]:
    """Every hook with a spec in ``plugins``, sorted by name."""
    from taskman.hookspecs import ISOLATED_HOOKS

    entries = []
    for name in sorted(n for n in dir(plugins.manager.hook) if n.startswith(HOOK_PREFIX)):
        caller = getattr(plugins.manager.hook, name)
        if not isinstance(caller, pluggy.HookCaller) or caller.spec is None:
            continue
        function = caller.spec.function
        arguments = tuple(p for p in inspect.signature(function).parameters if p != "self")
        summary = (inspect.getdoc(function) or "").splitlines()[0] if function.__doc__ else ""
        entries.append(
            HookEntry(
                name,
                arguments,
                plugins.spec_owners.get(name, CORE),
                summary,
                bool(caller.spec.opts.get("firstresult")),
                name in ISOLATED_HOOKS,
            )
        )
    return entries


def markdown_table(entries: list[HookEntry]) -> str:
    rows = ["| hook | added by | what it is for |", "|---|---|---|"]
    for entry in entries:
        notes = [note for note, on in (("first result", entry.firstresult), ("isolated", entry.isolated)) if on]
        extra = f" ({', '.join(notes)})" if notes else ""
        rows.append(f"| `{entry.signature}` | {entry.owner} | {entry.summary}{extra} |")
    return "\n".join(rows) + "\n"
