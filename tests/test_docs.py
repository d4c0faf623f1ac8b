"""Meta-tests: every hook is typed, documented and tested; the config reference is complete."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import attrs
import pytest

from taskman.config import CORE_SECTIONS, dotted, env_name
from taskman.plugins import Plugins

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Core hooks and those the built-in plugins add, from the plugin manager itself.
_MANAGER = Plugins.discover().manager
SPECS = {
    name: caller.spec.function
    for name in dir(_MANAGER.hook)
    if name.startswith("taskman_") and (caller := getattr(_MANAGER.hook, name)).spec is not None
}
HOOKS = sorted(SPECS)


def hook_reference() -> dict[str, str]:
    """``### `hook(args)``` headings in the README's hook reference and in docs/."""
    texts = [README.split("## Hook reference", 1)[1].split("\n## ", 1)[0]]
    texts += [p.read_text() for p in sorted((ROOT / "docs").rglob("*.md"))]
    found: dict[str, str] = {}
    for text in texts:
        found.update(re.findall(r"^### `(taskman_\w+)(\([^)]*\))`", text, flags=re.M))
    return found


def test_there_are_hooks() -> None:
    assert {
        "taskman_routes",
        "taskman_middleware",
        "taskman_settings",
        "taskman_startup",
        "taskman_shutdown",
        "taskman_migrations",
        "taskman_event",
        "taskman_cli",
    } <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_typed_and_has_a_docstring(hook: str) -> None:
    spec = SPECS[hook]
    assert spec.__doc__ and spec.__doc__.strip()
    signature = inspect.signature(spec)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    assert signature.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in params)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_in_the_reference_with_its_signature(hook: str) -> None:
    reference = hook_reference()
    assert hook in reference, f"{hook} is missing from the README's hook reference"
    expected = "(" + ", ".join(p for p in inspect.signature(SPECS[hook]).parameters if p != "self") + ")"
    assert reference[hook] == expected


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    here = Path(__file__).name
    used = [p for p in (ROOT / "tests").rglob("*.py") if p.name != here and hook in p.read_text()]
    assert used, f"no test exercises {hook}"


@pytest.mark.parametrize(
    "key,var", [(dotted(s, f.name), env_name(s, f.name)) for s, c in CORE_SECTIONS.items() for f in attrs.fields(c)]
)
def test_every_core_setting_is_in_the_readme(key: str, var: str) -> None:
    assert f"| `{key}` | `{var}` |" in README
