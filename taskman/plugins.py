"""Plugin discovery and a typed facade over pluggy's manager.

Plugins are found through the ``taskman.plugins`` entry-point group (the
built-ins are listed there too).  Unlike pluggy's
``load_setuptools_entrypoints``, each plugin is loaded on its own so that a
broken one is reported by name, and a disabled one is never imported at all.
Hooks are called one implementation at a time so every contribution and
every failure is attributed to the plugin that made it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pluggy

from taskman import hookspecs
from taskman.hookspecs import PROJECT_NAME

ENTRY_POINT_GROUP = "taskman.plugins"


class PluginError(Exception):
    """A plugin failed to import, register or run a hook; one line names it."""

    def __init__(self, plugin: str, distribution: str, cause: BaseException | str, hook: str | None = None):
        self.plugin = plugin
        self.distribution = distribution
        self.hook = hook
        self.cause = cause
        where = f" in {hook}" if hook else ""
        reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else cause
        super().__init__(f"plugin {plugin!r} (distribution {distribution}){where} failed: {reason}")


class UnknownPluginError(ValueError):
    """``plugins.disable`` names a plugin that is not installed."""


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str
    version: str
    enabled: bool
    hooks: tuple[str, ...] = ()


@attrs.frozen
class RouteContribution:
    plugin: str
    uri_template: str
    resource: object
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class _Candidate:
    name: str
    distribution: str
    version: str
    entry_point: importlib.metadata.EntryPoint | None = None
    obj: object | None = None


def _entry_point_candidates() -> list[_Candidate]:
    seen: dict[str, _Candidate] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "unknown"
        other = seen.get(ep.name)
        if other is not None and other.distribution != dist:
            raise PluginError(ep.name, dist, f"the name is also claimed by distribution {other.distribution}")
        seen[ep.name] = _Candidate(ep.name, dist, version, entry_point=ep)
    return list(seen.values())


def _object_name(obj: object) -> str:
    name = getattr(obj, "taskman_plugin_name", None) or getattr(obj, "__name__", None)
    return str(name or type(obj).__name__)


class Plugins:
    """The enabled plugin set and one typed method per core hook."""

    def __init__(self, candidates: Sequence[_Candidate], disable: Iterable[str] = ()) -> None:
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self._candidates = {c.name: c for c in candidates}
        self.disabled = frozenset(disable)
        unknown = sorted(self.disabled - self._candidates.keys())
        if unknown:
            known = ", ".join(sorted(self._candidates)) or "none installed"
            raise UnknownPluginError(f"unknown plugin(s) {', '.join(unknown)} (installed: {known})")
        for name in self.disabled:
            self.manager.set_blocked(name)
        # pluggy calls the last registered first: register in reverse name
        # order so hooks run in alphabetical plugin order unless a plugin
        # asks for tryfirst/trylast.
        for candidate in sorted(candidates, key=lambda c: c.name, reverse=True):
            if candidate.name in self.disabled:
                continue
            obj = candidate.obj
            try:
                if obj is None:
                    assert candidate.entry_point is not None
                    obj = candidate.entry_point.load()
                extra_specs = getattr(obj, "taskman_hookspecs", None)
                if extra_specs is not None:
                    self.manager.add_hookspecs(extra_specs)
                self.manager.register(obj, name=candidate.name)
            except Exception as exc:
                raise PluginError(candidate.name, candidate.distribution, exc) from exc
        self._check_requirements()

    def _check_requirements(self) -> None:
        """A plugin may list the plugins it cannot work without in ``taskman_requires``."""
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:
                continue
            for needed in getattr(plugin, "taskman_requires", ()):
                if self.manager.get_plugin(needed) is None:
                    state = "disabled" if needed in self.disabled else "not installed"
                    raise PluginError(
                        name, self.distribution_of(name), f"it requires plugin {needed!r}, which is {state}"
                    )

    @classmethod
    def discover(cls, disable: Iterable[str] = (), extra: Iterable[object] = ()) -> Plugins:
        """Load every installed plugin except the disabled ones, plus ``extra`` plugin objects."""
        candidates = _entry_point_candidates()
        for obj in extra:
            candidates.append(_Candidate(_object_name(obj), "(passed to create_app)", "", obj=obj))
        return cls(candidates, disable)

    # -- introspection ------------------------------------------------------

    def distribution_of(self, name: str) -> str:
        candidate = self._candidates.get(name)
        return candidate.distribution if candidate else "unknown"

    def infos(self) -> list[PluginInfo]:
        rows = []
        for name, candidate in sorted(self._candidates.items()):
            plugin = self.manager.get_plugin(name)
            hooks: tuple[str, ...] = ()
            if plugin is not None:
                hooks = tuple(sorted(h.name for h in self.manager.get_hookcallers(plugin) or ()))
            rows.append(PluginInfo(name, candidate.distribution, candidate.version, name not in self.disabled, hooks))
        return rows

    @property
    def names(self) -> list[str]:
        return sorted(name for name, plugin in self.manager.list_name_plugin() if name and plugin is not None)

    # -- calling hooks ------------------------------------------------------

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook_name`` in pluggy's order; return ``(plugin, result)`` pairs.

        A failure raises :class:`PluginError` naming the plugin.  Concern
        plugins use this for the hooks they add.
        """
        caller = getattr(self.manager.hook, hook_name)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception as exc:
                raise PluginError(impl.plugin_name, self.distribution_of(impl.plugin_name), exc, hook_name) from exc
            results.append((impl.plugin_name, result))
        return results

    def configure(self, config: Any) -> None:
        self.call_each("taskman_configure", config=config, plugins=self)

    def serve(self, config: Any, workers: int) -> None:
        self.call_each("taskman_serve", config=config, workers=workers)

    def settings(self) -> dict[str, type]:
        sections: dict[str, type] = {}
        owners: dict[str, str] = {}
        for plugin, result in self.call_each("taskman_settings"):
            if result is None:
                continue
            try:
                name, settings_class = result
            except (TypeError, ValueError):
                raise PluginError(
                    plugin, self.distribution_of(plugin), "must return (section_name, attrs_class)", "taskman_settings"
                ) from None
            if name in sections:
                raise PluginError(
                    plugin,
                    self.distribution_of(plugin),
                    f"settings section [{name}] is already owned by plugin {owners[name]!r}",
                    "taskman_settings",
                )
            sections[name], owners[name] = settings_class, plugin
        return sections

    def routes(self, config: Any) -> list[RouteContribution]:
        contributions = []
        for plugin, result in self.call_each("taskman_routes", config=config):
            for item in result or ():
                if not isinstance(item, tuple) or len(item) not in (2, 3) or not isinstance(item[0], str):
                    raise PluginError(
                        plugin,
                        self.distribution_of(plugin),
                        f"route {item!r} is not (uri_template, resource[, kwargs])",
                        "taskman_routes",
                    )
                kwargs = item[2] if len(item) == 3 else {}
                contributions.append(RouteContribution(plugin, item[0], item[1], dict(kwargs)))
        return contributions

    def middleware(self, config: Any) -> list[tuple[str, object]]:
        return [
            (plugin, mw)
            for plugin, result in self.call_each("taskman_middleware", config=config)
            for mw in result or ()
        ]

    def responder_wrappers(self, config: Any) -> list[tuple[str, Any]]:
        """Every contributed responder decorator, outermost first, with the plugin that gave it."""
        wrappers = []
        for plugin, result in self.call_each("taskman_responder_wrappers", config=config):
            for wrapper in result or ():
                if not callable(wrapper):
                    raise PluginError(
                        plugin,
                        self.distribution_of(plugin),
                        f"{wrapper!r} is not callable",
                        "taskman_responder_wrappers",
                    )
                wrappers.append((plugin, wrapper))
        return wrappers

    def startup(self, app: Any, config: Any) -> None:
        self.call_each("taskman_startup", app=app, config=config)

    def shutdown(self, app: Any, config: Any) -> list[PluginError]:
        """Run every shutdown hook even if some fail; return the failures."""
        failures = []
        caller = self.manager.hook.taskman_shutdown
        for impl in reversed(caller.get_hookimpls()):
            args = {name: {"app": app, "config": config}[name] for name in impl.argnames}
            try:
                impl.function(**args)
            except Exception as exc:
                failures.append(
                    PluginError(impl.plugin_name, self.distribution_of(impl.plugin_name), exc, "taskman_shutdown")
                )
        return failures

    def migrations(self) -> list[tuple[str, Path]]:
        folders = []
        for plugin, result in self.call_each("taskman_migrations"):
            if result is not None:
                folders.append((plugin, Path(result)))
        return folders

    def event(self, name: str, payload: Mapping[str, Any]) -> None:
        self.manager.hook.taskman_event(name=name, payload=dict(payload))

    def cli(self, group: Any) -> None:
        self.call_each("taskman_cli", group=group)
