"""Plugin discovery, switching off, and start-up errors that name the culprit."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import pytest

import taskman
from taskman.app import RouteConflictError
from taskman.plugins import PluginError, Plugins, UnknownPluginError, _Candidate
from tests.sample_plugins import ExplodingPlugin, RoutePlugin, SettingsPlugin


def test_builtin_plugins_are_found_through_the_entry_point_group() -> None:
    infos = {info.name: info for info in Plugins.discover().infos()}
    request_id = infos["request_id"]
    assert request_id.distribution == "taskman"
    assert request_id.version == taskman.__version__
    assert request_id.enabled
    assert "taskman_middleware" in request_id.hooks
    entry_points = importlib.metadata.entry_points(group="taskman.plugins")
    assert "request_id" in entry_points.names


def test_hookimpl_is_the_one_import_a_plugin_needs() -> None:
    from taskman import hookimpl
    from taskman.hookspecs import PROJECT_NAME

    assert hookimpl.project_name == PROJECT_NAME == "taskman"


def test_disabled_plugins_are_blocked_and_listed() -> None:
    plugins = Plugins.discover(disable=["request_id"])
    assert plugins.manager.is_blocked("request_id")
    assert "request_id" not in plugins.names
    (info,) = [i for i in plugins.infos() if i.name == "request_id"]
    assert not info.enabled
    assert info.hooks == ()


def test_unknown_disabled_name_is_an_error() -> None:
    with pytest.raises(UnknownPluginError, match="typo_plugin"):
        Plugins.discover(disable=["typo_plugin"])


def test_plugin_that_fails_to_import_is_named_with_its_distribution() -> None:
    entry_point = importlib.metadata.EntryPoint("ghost", "taskman_no_such_module", "taskman.plugins")
    with pytest.raises(PluginError) as exc:
        Plugins([_Candidate("ghost", "taskman-ghost", "1.0", entry_point=entry_point)])
    message = str(exc.value)
    assert "\n" not in message
    assert "plugin 'ghost'" in message
    assert "taskman-ghost" in message
    assert "ModuleNotFoundError" in message


def test_disabled_plugin_is_never_imported() -> None:
    entry_point = importlib.metadata.EntryPoint("ghost", "taskman_no_such_module", "taskman.plugins")
    plugins = Plugins([_Candidate("ghost", "taskman-ghost", "1.0", entry_point=entry_point)], disable=["ghost"])
    assert plugins.names == []


def test_plugin_that_raises_in_a_hook_is_named(make_config: Callable[..., Any]) -> None:
    config = make_config(plugins=(ExplodingPlugin(),))
    with pytest.raises(PluginError) as exc:
        taskman.create_app(config, plugins=(ExplodingPlugin(),))
    assert str(exc.value) == (
        "plugin 'exploding' (distribution (passed to create_app)) in taskman_routes failed: ValueError: kaboom"
    )


def test_two_plugins_claiming_one_route_are_both_named(make_config: Callable[..., Any]) -> None:
    first, second = RoutePlugin("alpha", "/things/{id}"), RoutePlugin("beta", "/things/{thing_id}/")
    config = make_config(plugins=(first, second))
    with pytest.raises(RouteConflictError) as exc:
        taskman.create_app(config, plugins=(first, second))
    assert "'alpha'" in str(exc.value) and "'beta'" in str(exc.value)


def test_two_plugins_owning_one_settings_section_fail() -> None:
    other = SettingsPlugin()
    other.taskman_plugin_name = "greeter2"  # type: ignore[misc]
    plugins = Plugins.discover(extra=[SettingsPlugin(), other])
    with pytest.raises(PluginError, match=r"\[greeter\] is already owned"):
        plugins.settings()


def test_middleware_without_methods_is_a_named_error(make_config: Callable[..., Any]) -> None:
    class Useless:
        taskman_plugin_name = "useless"

        @taskman.hookimpl
        def taskman_middleware(self, config: Any) -> list[object]:
            return [object()]

    with pytest.raises(PluginError, match=r"plugin 'useless'.*no middleware method"):
        taskman.create_app(make_config(plugins=(Useless(),)), plugins=(Useless(),))


class GreetSpecs:
    @taskman.hookspec
    def taskman_greet(self, name: str) -> str:  # type: ignore[empty-body]
        """Return a greeting."""


class GreetHost:
    """A concern plugin that adds a hook of its own."""

    taskman_plugin_name = "greet_host"
    taskman_hookspecs = GreetSpecs


class GreetImpl:
    taskman_plugin_name = "greet_impl"

    @taskman.hookimpl
    def taskman_greet(self, name: str) -> str:
        return f"hi {name}"


def test_a_plugin_can_add_hookspecs() -> None:
    plugins = Plugins.discover(extra=[GreetImpl(), GreetHost()])
    assert plugins.call_each("taskman_greet", name="ada") == [("greet_impl", "hi ada")]
    assert plugins.manager.hook.taskman_greet.spec is not None


def test_configure_runs_whenever_an_app_is_built(make_config: Callable[..., Any]) -> None:
    seen: list[Any] = []

    class Configurable:
        taskman_plugin_name = "configurable"

        @taskman.hookimpl
        def taskman_configure(self, config: Any) -> None:
            seen.append(config)

    config = make_config(plugins=(Configurable(),))
    taskman.create_app(config, plugins=(Configurable(),))
    assert seen == [config]


class NeedsRequestId:
    taskman_plugin_name = "needy"
    taskman_requires = ("request_id",)


def test_a_plugin_needing_a_disabled_one_is_a_clear_error() -> None:
    assert "needy" in Plugins.discover(extra=[NeedsRequestId()]).names
    with pytest.raises(PluginError) as exc:
        Plugins.discover(disable=["request_id"], extra=[NeedsRequestId()])
    assert str(exc.value) == (
        "plugin 'needy' (distribution (passed to create_app)) failed: "
        "it requires plugin 'request_id', which is disabled"
    )
