"""Plugin discovery and a typed facade over pluggy's manager.

Plugins are found through the ``taskman.plugins`` entry-point group (the
built-ins are listed there too), in a development folder
(``plugins.directory``, ``taskman serve --plugins-dir``) and among the
objects passed to ``create_app``.  Unlike pluggy's
``load_setuptools_entrypoints``, each plugin is loaded on its own so that a
broken one is reported by name, and a disabled one is never imported.

pluggy does the calling (``manager.hook.x(...)``), so ``wrapper=True``,
``firstresult`` and hook-call monitoring work.  Each implementation is
wrapped once, at registration, so that its results and its failures are
attributed to its plugin; the hooks in :data:`~taskman.hookspecs.ISOLATED_HOOKS`
contain their failures instead of raising them.  An implementation whose
``taskman_*`` name matches no hook is a start-up error, as pytest rejects
unknown ``pytest_*`` hooks.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import importlib.metadata
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pluggy

from taskman import hookspecs
from taskman.hookspecs import ISOLATED_HOOKS, PROJECT_NAME

ENTRY_POINT_GROUP = "taskman.plugins"
HOOK_PREFIX = "taskman_"

log = logging.getLogger("taskman.plugins")


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
    #: Why the plugin could not be loaded (``taskman plugins`` lists broken plugins too).
    error: str | None = None


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
    path: Path | None = None

    def load(self) -> object:
        if self.obj is not None:
            return self.obj
        if self.path is not None:
            return _load_file(self.name, self.path)
        assert self.entry_point is not None
        return self.entry_point.load()


#: Where a contribution came from when a hook wrapper made it up (no implementation returned that object).
WRAPPER = "(hook wrapper)"
FOLDER_DISTRIBUTION = "(plugins folder)"
OBJECT_DISTRIBUTION = "(passed to create_app)"


def _name_and_version(dist: importlib.metadata.Distribution | None) -> tuple[str, str]:
    if dist is None:
        return "unknown", "unknown"
    location = getattr(dist, "_path", None)
    if location is None:
        return dist.name, dist.version
    return _installed_name_and_version(str(location))


@functools.lru_cache(maxsize=512)
def _installed_name_and_version(location: str) -> tuple[str, str]:
    # Each app (and each config load) lists the entry points again, and reading
    # a distribution's name parses its whole METADATA file (~4 ms each): an
    # installed distribution's folder names one name and version for good.
    dist = importlib.metadata.PathDistribution(Path(location))
    return dist.name, dist.version


def _entry_point_candidates() -> list[_Candidate]:
    seen: dict[str, _Candidate] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist, version = _name_and_version(ep.dist)
        other = seen.get(ep.name)
        if other is not None and other.distribution != dist:
            raise PluginError(ep.name, dist, f"the name is also claimed by distribution {other.distribution}")
        seen[ep.name] = _Candidate(ep.name, dist, version, entry_point=ep)
    return list(seen.values())


def _folder_candidates(folder: Path) -> list[_Candidate]:
    """Every ``*.py`` of a development folder is a plugin named after its file (datasette's ``--plugins-dir``)."""
    if not folder.is_dir():
        raise PluginError(folder.name, FOLDER_DISTRIBUTION, f"plugins folder {folder} does not exist")
    return [
        _Candidate(path.stem, FOLDER_DISTRIBUTION, "", path=path)
        for path in sorted(folder.glob("*.py"))
        if not path.name.startswith("_")
    ]


def _load_file(name: str, path: Path) -> object:
    module_name = f"taskman_plugins_dir.{name}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        # Loaded once per process, as an installed module is: its classes (settings) stay the same objects.
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _reason(cause: BaseException | str) -> str:
    return f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else cause


def _object_name(obj: object) -> str:
    name = getattr(obj, "taskman_plugin_name", None) or getattr(obj, "__name__", None)
    return str(name or type(obj).__name__)


#: While a hook call collects contributions: ``(plugin, result)`` of each implementation, in call order.
_collector: contextvars.ContextVar[list[tuple[str, Any]] | None] = contextvars.ContextVar(
    "taskman_hook_results", default=None
)


class Plugins:
    """The enabled plugin set and one typed method per core hook."""

    def __init__(self, candidates: Sequence[_Candidate], disable: Iterable[str] = (), *, whole: bool = True) -> None:
        """Load and register ``candidates`` but the disabled ones.

        ``whole``: the candidates are the whole plugin set, so the checks that
        need all of it (unknown hooks, requirements) run too.
        """
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        #: Who adds each hook that is not the core's: ``{hook: plugin}``.
        self.spec_owners: dict[str, str] = {}
        self._candidates = {c.name: c for c in candidates}
        self.disabled = frozenset(disable)
        #: The runtime hooks receive; set by the runtime being built around this plugin set.
        self.runtime: Any = None
        #: Told of every failure an isolated hook contained (the runtime reports it to ``taskman_plugin_failed``).
        self.on_contained_failure: Callable[[str, str, BaseException], None] | None = None
        unknown = sorted(self.disabled - self._candidates.keys())
        if unknown:
            known = ", ".join(sorted(self._candidates)) or "none installed"
            raise UnknownPluginError(f"unknown plugin(s) {', '.join(unknown)} (installed: {known})")
        for name in self.disabled:
            self.manager.set_blocked(name)
        # pluggy calls the last registered first: register in reverse name
        # order so hooks run in alphabetical plugin order unless a plugin
        # asks for tryfirst/trylast.  (Middleware order comes from stages.)
        for candidate in sorted(candidates, key=lambda c: c.name, reverse=True):
            if candidate.name in self.disabled:
                continue
            try:
                obj = candidate.load()
                extra_specs = getattr(obj, "taskman_hookspecs", None)
                if extra_specs is not None:
                    self.manager.add_hookspecs(extra_specs)
                    self.spec_owners.update({n: candidate.name for n in dir(extra_specs) if n.startswith(HOOK_PREFIX)})
                self.manager.register(obj, name=candidate.name)
            except Exception as exc:
                raise PluginError(candidate.name, candidate.distribution, exc) from exc
        for name, plugin in self.manager.list_name_plugin():
            if plugin is not None:
                self._attribute(name, plugin)
        if whole:
            self._check_unknown_hooks()
            self._check_requirements()

    # -- registration -------------------------------------------------------------

    def _attribute(self, name: str, plugin: object) -> None:
        """Wrap each implementation so its results and failures carry the plugin's name."""
        for caller in self.manager.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    # HookImpl.function is typed Final; replacing it once, at registration, is the point.
                    setattr(impl, "function", self._attributed(impl, caller.name))  # noqa: B010

    def _attributed(self, impl: Any, hook: str) -> Callable[..., Any]:
        function = impl.function
        plugin = impl.plugin_name
        isolated = hook in ISOLATED_HOOKS
        if impl.wrapper or impl.hookwrapper:

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                try:
                    return (yield from function(*args, **kwargs))
                except PluginError:
                    raise
                except Exception as exc:
                    raise self.error(plugin, exc, hook) from exc

            return wrapper

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = function(*args, **kwargs)
            except PluginError:
                raise
            except Exception as exc:
                if isolated:
                    self._contain(plugin, hook, exc)
                    return None
                raise self.error(plugin, exc, hook) from exc
            collected = _collector.get()
            if collected is not None and result is not None:
                collected.append((plugin, result))
            return result

        return call

    def _contain(self, plugin: str, hook: str, exc: Exception) -> None:
        log.error(
            "plugin_hook_failed",
            exc_info=exc,
            extra={"plugin": plugin, "distribution": self.distribution_of(plugin), "hook": hook},
        )
        if self.on_contained_failure is not None and hook != "taskman_plugin_failed":
            self.on_contained_failure(plugin, hook, exc)

    def _check_unknown_hooks(self) -> None:
        """A ``taskman_*`` implementation no spec knows is a typo (or a hook of a disabled plugin's)."""
        unknown = [
            (impl.plugin_name, caller.name)
            for caller in self.manager.hook.__dict__.values()
            if isinstance(caller, pluggy.HookCaller) and caller.spec is None
            for impl in caller.get_hookimpls()
            if not impl.optionalhook
        ]
        if not unknown:
            return
        specs_of_disabled = self._hooks_of_disabled_plugins()
        for plugin, hook in unknown:
            if hook in specs_of_disabled:
                continue
            known = [
                name
                for name in dir(self.manager.hook)
                if name.startswith(HOOK_PREFIX) and getattr(self.manager.hook, name).spec is not None
            ]
            close = difflib.get_close_matches(hook, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise PluginError(plugin, self.distribution_of(plugin), f"{hook} is not a taskman hook{hint}", hook=None)

    def _hooks_of_disabled_plugins(self) -> frozenset[str]:
        """The hooks disabled plugins add: a plugin may implement them for when they are on.

        Read only when some implementation matched no spec, so disabled plugins
        are imported in that case alone (one that fails to import adds none).
        """
        names: set[str] = set()
        for name in self.disabled:
            try:
                specs = getattr(self._candidates[name].load(), "taskman_hookspecs", None)
            except Exception:
                continue
            if specs is not None:
                names.update(n for n in dir(specs) if n.startswith(HOOK_PREFIX))
        return frozenset(names)

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
    def candidates(cls, extra: Iterable[object] = (), folder: str | Path | None = None) -> list[_Candidate]:
        found = _entry_point_candidates()
        if folder:
            found += _folder_candidates(Path(folder))
        found += [_Candidate(_object_name(obj), OBJECT_DISTRIBUTION, "", obj=obj) for obj in extra]
        return found

    @classmethod
    def discover(
        cls, disable: Iterable[str] = (), extra: Iterable[object] = (), folder: str | Path | None = None
    ) -> Plugins:
        """Load every installed plugin except the disabled ones, plus ``extra`` objects and a folder's files."""
        return cls(cls.candidates(extra, folder), disable)

    @classmethod
    def survey(
        cls, disable: Iterable[str] = (), extra: Iterable[object] = (), folder: str | Path | None = None
    ) -> list[PluginInfo]:
        """What ``taskman plugins`` lists: every plugin, each loaded on its own, broken ones marked."""
        disabled = frozenset(disable)
        candidates = sorted(cls.candidates(extra, folder), key=lambda c: c.name)
        hooks: dict[str, tuple[str, ...]] = {}
        errors: dict[str, str] = {}
        for candidate in candidates:
            if candidate.name in disabled:
                continue
            try:
                hooks[candidate.name] = cls([candidate], whole=False).infos()[0].hooks
            except PluginError as exc:
                errors[candidate.name] = _reason(exc.cause)
        try:  # what only the whole set shows: a misspelled hook, a missing requirement
            cls([c for c in candidates if c.name not in errors], disabled)
        except PluginError as exc:
            errors.setdefault(exc.plugin, _reason(exc.cause))
        return [
            PluginInfo(
                c.name,
                c.distribution,
                c.version,
                c.name not in disabled,
                hooks.get(c.name, ()),
                errors.get(c.name),
            )
            for c in candidates
        ]

    # -- introspection ------------------------------------------------------

    def distribution_of(self, name: str) -> str:
        candidate = self._candidates.get(name)
        return candidate.distribution if candidate else "unknown"

    def error(self, plugin: str, cause: BaseException | str, hook: str | None = None) -> PluginError:
        """A :class:`PluginError` naming ``plugin`` and its distribution."""
        return PluginError(plugin, self.distribution_of(plugin), cause, hook)

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
        """Call ``hook_name`` through pluggy; return ``(plugin, result)`` for every result, in pluggy's order.

        ``runtime`` is passed for you.  A failure raises :class:`PluginError`
        naming the plugin (isolated hooks contain theirs).  A result a hook
        wrapper substituted is attributed to :data:`WRAPPER`.  Concern plugins
        call the hooks they add with this.
        """
        kwargs.setdefault("runtime", self.runtime)
        collected: list[tuple[str, Any]] = []
        token = _collector.set(collected)
        try:
            results = getattr(self.manager.hook, hook_name)(**kwargs)
        finally:
            _collector.reset(token)
        if not isinstance(results, list):  # a firstresult hook
            results = [] if results is None else [results]
        owners = {id(result): plugin for plugin, result in collected}
        return [(owners.get(id(result), WRAPPER), result) for result in results]

    def call_first(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` hook (or take the first result of another)."""
        found = self.call_each(hook_name, **kwargs)
        return found[0][1] if found else None

    def configure(self, config: Any) -> None:
        self.call_each("taskman_configure", config=config, plugins=self)

    def serve(self, config: Any, workers: int) -> None:
        self.call_each("taskman_serve", config=config, workers=workers)

    def settings(self) -> dict[str, type]:
        from taskman.config import section_name

        sections: dict[str, type] = {}
        owners: dict[str, str] = {}
        for plugin, result in self.call_each("taskman_settings"):
            if isinstance(result, type):
                name = section_name(result)
                settings_class = result
                if name is None:
                    raise self.error(
                        plugin, f"{result.__name__} is not declared with taskman.settings_section", "taskman_settings"
                    )
            else:
                try:
                    name, settings_class = result
                except (TypeError, ValueError):
                    raise self.error(
                        plugin, "must return a settings class or (section_name, attrs_class)", "taskman_settings"
                    ) from None
            if name in sections:
                raise self.error(
                    plugin, f"settings section [{name}] is already owned by plugin {owners[name]!r}", "taskman_settings"
                )
            sections[name], owners[name] = settings_class, plugin
        return sections

    def routes(self, config: Any) -> list[RouteContribution]:
        contributions = []
        for plugin, result in self.call_each("taskman_routes", config=config):
            for item in result or ():
                if not isinstance(item, tuple) or len(item) not in (2, 3) or not isinstance(item[0], str):
                    raise self.error(
                        plugin, f"route {item!r} is not (uri_template, resource[, kwargs])", "taskman_routes"
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
                    raise self.error(plugin, f"{wrapper!r} is not callable", "taskman_responder_wrappers")
                wrappers.append((plugin, wrapper))
        return wrappers

    def validate(self, config: Any) -> None:
        self.call_each("taskman_validate", config=config)

    def startup(self, app: Any, config: Any) -> None:
        self.call_each("taskman_startup", app=app, config=config)

    def shutdown(self, app: Any, config: Any) -> list[PluginError]:
        """Run every shutdown hook even if some fail; return the failures."""
        failures = []
        name = "taskman_shutdown"
        impls = self.manager.hook.taskman_shutdown.get_hookimpls()
        for impl in reversed([i for i in impls if not (i.wrapper or i.hookwrapper)]):
            # One implementation at a time, through pluggy (wrappers and monitoring included), so each runs.
            others = [i.plugin for i in impls if i is not impl and not (i.wrapper or i.hookwrapper)]
            try:
                self.manager.subset_hook_caller(name, remove_plugins=others)(
                    runtime=self.runtime, app=app, config=config
                )
            except PluginError as exc:
                failures.append(exc)
        return failures

    def migrations(self) -> list[tuple[str, Path]]:
        return [(plugin, Path(result)) for plugin, result in self.call_each("taskman_migrations") if result is not None]

    def event(self, name: str, payload: Mapping[str, Any]) -> None:
        """Tell every listener; each runs in isolation (see :data:`~taskman.hookspecs.ISOLATED_HOOKS`)."""
        self.manager.hook.taskman_event(runtime=self.runtime, name=name, payload=dict(payload))

    def plugin_failed(self, plugin: str, hook: str, error: BaseException) -> None:
        self.manager.hook.taskman_plugin_failed(runtime=self.runtime, plugin=plugin, hook=hook, error=error)

    def cli(self, group: Any) -> None:
        self.call_each("taskman_cli", group=group)


def hook_arguments(function: Callable[..., Any]) -> tuple[str, ...]:
    """The argument names of a hook function (``self`` excluded), as pluggy reads them."""
    return tuple(p for p in inspect.signature(function).parameters if p != "self")
