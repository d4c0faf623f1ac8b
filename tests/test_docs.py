"""Meta-tests: every hook is typed, documented and tested; the config reference is complete."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import attrs
import pytest

from taskman import hookspecs
from taskman.config import CORE_SECTIONS, dotted, env_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("taskman_"))


def hook_reference() -> dict[str, str]:
    section = README.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^### `(taskman_\w+)(\([^)]*\))`", section, flags=re.M))


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
    spec = getattr(hookspecs, hook)
    assert spec.__doc__ and spec.__doc__.strip()
    signature = inspect.signature(spec)
    assert signature.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_in_the_reference_with_its_signature(hook: str) -> None:
    reference = hook_reference()
    assert hook in reference, f"{hook} is missing from the README's hook reference"
    expected = "(" + ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters) + ")"
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
