"""The request pipeline: every plugin's middleware, ordered by stage, compiled once per app.

Order comes from stages, never from plugin names.  A middleware object
declares its stage (``taskman_stage``, or :func:`staged`) and, inside the
stage, may ask to come before or after other plugins' (``taskman_before``,
``taskman_after``: plugin names, ``"*"`` for every other one).  Falcon calls
``process_request`` and ``process_resource`` in pipeline order and
``process_response`` in reverse, so the first stage wraps all the others:

=========== ====================================================================
observe     request ids, logs, traces, metrics: sees every request, and the
            response as sent (after shaping)
edge        cheap rejections before any other work: size, framing, URL and
            header length
identify    who is calling (auth); nothing is refused here but by budget
admit       admission: rate limits count every routed request, refused
            authentications included
authorize   the route's access rule: 401 and 403
handle      everything else (the default stage of middleware that declares none)
shape       headers and body of the response: CORS, security headers,
            compression
=========== ====================================================================

The ordered steps are compiled once per app into the middleware list Falcon
runs; under ASGI each method runs natively (``*_async``), inline on the
loop (``taskman.nonblocking``) or on the thread pool.  ``taskman middleware``
prints the chain, and ``docs/pipeline.md`` is tested against it.
"""

from __future__ import annotations

import heapq
import inspect
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import attrs

from taskman.asgi_adapters import LIFESPAN_METHODS, MIDDLEWARE_METHODS, adapt_middleware, is_nonblocking

T = TypeVar("T")

STAGES = ("observe", "edge", "identify", "admit", "authorize", "handle", "shape")
DEFAULT_STAGE = "handle"
EVERY_OTHER = "*"

#: A middleware object needs one of these (sync or async request methods, or an ASGI lifespan handler).
METHOD_NAMES = (*MIDDLEWARE_METHODS, *(f"{m}_async" for m in MIDDLEWARE_METHODS), *LIFESPAN_METHODS)


class PipelineError(ValueError):
    """A middleware declaration the pipeline cannot honour; ``plugin`` names who made it."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


def staged(component: T, stage: str, *, before: Iterable[str] = (), after: Iterable[str] = ()) -> T:
    """Put a middleware object in ``stage`` (see :data:`STAGES`), before or after other plugins' in that stage."""
    if stage not in STAGES:
        raise ValueError(f"unknown pipeline stage {stage!r} (stages: {', '.join(STAGES)})")
    component.taskman_stage = stage  # type: ignore[attr-defined]
    component.taskman_before = tuple(before)  # type: ignore[attr-defined]
    component.taskman_after = tuple(after)  # type: ignore[attr-defined]
    return component


@attrs.frozen
class Step:
    plugin: str
    component: object
    stage: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    #: False when the component declared no stage and sits in :data:`DEFAULT_STAGE`.
    declared: bool = True

    @property
    def name(self) -> str:
        return type(self.component).__name__

    def methods(self, *, asgi: bool) -> list[tuple[str, str]]:
        """``(method, how it runs)`` for each request method the component has."""
        found = []
        for name in MIDDLEWARE_METHODS:
            native = getattr(self.component, f"{name}_async", None)
            method = getattr(self.component, name, None)
            if method is None and native is None:
                continue
            if not asgi:
                found.append((name, "sync"))
            elif native is not None or inspect.iscoroutinefunction(method):
                found.append((name, "async"))
            elif is_nonblocking(self.component, method):
                found.append((name, "inline"))
            else:
                found.append((name, "thread"))
        return found


def _step(plugin: str, component: object) -> Step:
    if not any(hasattr(component, m) for m in METHOD_NAMES):
        raise PipelineError(plugin, f"{component!r} has no middleware method")
    stage = getattr(component, "taskman_stage", None)
    if stage is not None and stage not in STAGES:
        raise PipelineError(plugin, f"{component!r} declares unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    before = tuple(getattr(component, "taskman_before", ()) or ())
    after = tuple(getattr(component, "taskman_after", ()) or ())
    return Step(plugin, component, stage or DEFAULT_STAGE, before, after, declared=stage is not None)


def _order_stage(steps: Sequence[Step]) -> list[Step]:
    """Honour before/after inside one stage; otherwise plugin name, then contribution order (stable)."""
    index = {id(step): n for n, step in enumerate(steps)}
    edges: dict[int, set[int]] = {n: set() for n in range(len(steps))}

    def targets(names: Iterable[str], me: Step) -> list[int]:
        return [
            index[id(other)]
            for other in steps
            if other.plugin != me.plugin and (EVERY_OTHER in names or other.plugin in names)
        ]

    for n, step in enumerate(steps):
        for m in targets(step.before, step):
            if EVERY_OTHER not in step.before or EVERY_OTHER not in steps[m].before:
                edges[n].add(m)
        for m in targets(step.after, step):
            if EVERY_OTHER not in step.after or EVERY_OTHER not in steps[m].after:
                edges[m].add(n)
    incoming = {n: 0 for n in edges}
    for targets_of in edges.values():
        for m in targets_of:
            incoming[m] += 1
    ready = [(steps[n].plugin, n) for n, count in incoming.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[Step] = []
    while ready:
        _, n = heapq.heappop(ready)
        ordered.append(steps[n])
        for m in sorted(edges[n]):
            incoming[m] -= 1
            if incoming[m] == 0:
                heapq.heappush(ready, (steps[m].plugin, m))
    if len(ordered) < len(steps):
        stuck = sorted({steps[n].plugin for n, count in incoming.items() if count})
        raise PipelineError(stuck[0], f"middleware of plugins {', '.join(stuck)} order each other in a cycle")
    return ordered


@attrs.frozen
class Pipeline:
    """The ordered middleware of one app."""

    steps: tuple[Step, ...]

    @classmethod
    def compile(cls, contributions: Iterable[tuple[str, object]]) -> Pipeline:
        by_stage: dict[str, list[Step]] = {stage: [] for stage in STAGES}
        for plugin, component in contributions:
            step = _step(plugin, component)
            by_stage[step.stage].append(step)
        return cls(tuple(step for stage in STAGES for step in _order_stage(by_stage[stage])))

    def middleware(self, *, asgi: bool, body_timeout: float | None = None) -> list[object]:
        """What Falcon runs: each component, adapted for ASGI where it needs to be.

        ``body_timeout``: under ASGI, the body a sync ``process_resource`` may
        read is read on the event loop first, within this many seconds.
        """
        if not asgi:
            return [step.component for step in self.steps]
        return [adapt_middleware(step.component, body_timeout=body_timeout) for step in self.steps]

    def describe(self, *, asgi: bool) -> list[dict[str, Any]]:
        """One row per step, for ``taskman middleware`` and the docs."""
        return [
            {
                "stage": step.stage,
                "plugin": step.plugin,
                "middleware": step.name,
                "declared": step.declared,
                "methods": dict(step.methods(asgi=asgi)),
            }
            for step in self.steps
        ]
