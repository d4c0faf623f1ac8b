"""Make plain synchronous resources and middleware run under falcon's ASGI app.

Falcon's ASGI app only accepts coroutine responders and ``*_async``
middleware.  Plugins may write plain sync code; here each sync method is
wrapped in a coroutine that runs it on the default thread pool (returning
that thread's database connection afterwards), unless the object is marked
:func:`nonblocking`, in which case it runs directly on the event loop.
The sync code receives a :class:`SyncRequest`, whose ``get_media()``,
``media`` and ``bounded_stream`` block the worker thread, not the loop.

Before a responder (or a ``process_resource``) runs on a thread, the rest
of the request body is read on the event loop (:func:`read_body`), within
the time bound plugins contribute (``body_timeout``): the thread then
reads it from memory, so a client trickling its body holds a coroutine,
never a thread the other requests need.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import falcon

from taskman.db import database, release_connection

T = TypeVar("T")

RESPONDER_PREFIX = "on_"
_NO_BODY: dict[str, Any] = {}
MIDDLEWARE_METHODS = ("process_request", "process_resource", "process_response")
LIFESPAN_METHODS = ("process_startup", "process_shutdown")


def nonblocking(obj: T) -> T:
    """Mark a responder, resource or middleware as safe to run on the event loop.

    Use it for sync code that does no I/O and does not read the request body:
    under ASGI it then skips the thread-pool hop.
    """
    obj.taskman_nonblocking = True  # type: ignore[attr-defined]
    return obj


def is_nonblocking(*objs: object) -> bool:
    return any(getattr(o, "taskman_nonblocking", False) for o in objs)


class _SyncStream:
    def __init__(self, stream: Any, request: SyncRequest) -> None:
        self._stream = stream
        self._request = request

    def read(self, size: int | None = None) -> bytes:
        return self._request._block_on(self._stream.read(size))  # type: ignore[no-any-return]

    def readall(self) -> bytes:
        return self._request._block_on(self._stream.readall())  # type: ignore[no-any-return]

    def exhaust(self) -> None:
        self._request._block_on(self._stream.exhaust())


class SyncRequest:
    """An ASGI request seen through the sync ``falcon.Request`` API."""

    __slots__ = ("_loop", "_loop_thread", "_req")

    def __init__(self, req: Any, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        object.__setattr__(self, "_req", req)
        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "_loop_thread", loop_thread)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._req, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._req, name, value)

    def _block_on(self, coro: Awaitable[Any]) -> Any:
        if threading.get_ident() == self._loop_thread:
            getattr(coro, "close", lambda: None)()
            raise RuntimeError("a nonblocking responder or middleware cannot read the request body")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def get_media(self, *args: Any, **kwargs: Any) -> Any:
        return self._block_on(self._req.get_media(*args, **kwargs))

    @property
    def media(self) -> Any:
        return self.get_media()

    @property
    def bounded_stream(self) -> _SyncStream:
        return _SyncStream(self._req.stream, self)

    stream = bounded_stream


class InlineRequest(SyncRequest):
    """The request a nonblocking responder or middleware gets: it runs on the loop, so it may not block.

    It needs neither the loop nor the thread id (every body read is refused),
    which keeps the per-request wrapping to one slot store.
    """

    __slots__ = ()

    def __init__(self, req: Any) -> None:
        object.__setattr__(self, "_req", req)

    def _block_on(self, coro: Awaitable[Any]) -> Any:
        getattr(coro, "close", lambda: None)()
        raise RuntimeError("a nonblocking responder or middleware cannot read the request body")


def body_timed_out(seconds: float) -> falcon.HTTPError:
    """The 408 for a body that did not arrive in time; the connection closes (what is left of the body is unknown)."""
    return falcon.HTTPError(
        falcon.HTTP_408,
        description=f"The request body did not arrive within {seconds:g} seconds.",
        headers={"Connection": "close"},
    )


async def read_body(req: Any, timeout: float | None) -> None:
    """Read what is left of ``req``'s body on the event loop, within ``timeout`` seconds; keep it in memory.

    falcon builds its body stream from the first ``http.request`` event and
    ``receive``: once the whole body is that first event, every later read
    (``req.stream``, ``get_media()``) is served from memory.  Size limits
    still apply: they bound ``receive``, which this reads through.
    """
    stream = req.stream
    try:
        if timeout is None:
            body = await stream.readall()
        else:
            async with asyncio.timeout(timeout):
                body = await stream.readall()
    except TimeoutError:
        raise body_timed_out(timeout or 0) from None
    req._first_event = {"type": "http.request", "body": body, "more_body": False}
    req._stream = None


def _call_and_release(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return func(*args, **kwargs)
    finally:
        release_connection(database)


def _sync_method(
    func: Callable[..., Any], *, inline: bool, reads_body: bool = False, body_timeout: float | None = None
) -> Callable[..., Awaitable[Any]]:
    """An adapter-class method (``self`` unused) that runs sync ``func(req, ...)`` under ASGI.

    Falcon wants bound methods on middleware, so adapters get real methods;
    each does its work itself rather than awaiting another coroutine, which
    keeps the request path to one coroutine frame per adapted call.  When
    ``reads_body`` (responders, ``process_resource``: every ``process_request``
    has run, so the size limits are in place), a body still on its way is
    read on the loop first (:func:`read_body`).
    """
    if inline:

        async def run_inline(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
            return func(InlineRequest(req), *args, **kwargs)

        method = run_inline
    else:

        async def run_in_thread(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
            # Requests without a body, or whose body came whole with the head, skip this: one dict lookup.
            if reads_body and (req._first_event or _NO_BODY).get("more_body"):
                await read_body(req, body_timeout)
            loop = asyncio.get_running_loop()
            sync_req = SyncRequest(req, loop, threading.get_ident())
            # run_in_executor does not carry contextvars (log context, trace
            # context) into the thread: run the call in a copy of this context.
            context = contextvars.copy_context()
            return await loop.run_in_executor(None, context.run, _call_and_release, func, (sync_req, *args), kwargs)

        method = run_in_thread
    method.__name__ = getattr(func, "__name__", method.__name__)
    method.__doc__ = getattr(func, "__doc__", None)
    return method


def to_coroutine(func: Callable[..., Any], *, inline: bool) -> Callable[..., Awaitable[Any]]:
    """Wrap a sync ``func(req, resp, ...)`` as a coroutine function for falcon's ASGI app."""
    method = _sync_method(func, inline=inline)

    @functools.wraps(func)
    async def call(req: Any, *args: Any, **kwargs: Any) -> Any:
        return await method(None, req, *args, **kwargs)

    return call


def _as_method(coro_func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await coro_func(*args, **kwargs)

    method.__name__ = getattr(coro_func, "__name__", "method")
    return method


def adapt_resource(resource: object, *, body_timeout: float | None = None) -> object:
    """Return ``resource`` itself if it is all-async, else an adapter with coroutine responders.

    A sync responder gets the request body read on the loop first, within ``body_timeout`` seconds.
    """
    names = [n for n in dir(resource) if n.startswith(RESPONDER_PREFIX) and callable(getattr(resource, n))]
    sync = [n for n in names if not inspect.iscoroutinefunction(getattr(resource, n)) and n != "on_websocket"]
    if not sync:
        return resource
    namespace: dict[str, Any] = {"wrapped": resource}
    for name in names:
        responder = getattr(resource, name)
        if name in sync:
            namespace[name] = _sync_method(
                responder, inline=is_nonblocking(resource, responder), reads_body=True, body_timeout=body_timeout
            )
        else:
            namespace[name] = _as_method(responder)
    adapter = type(f"Async{type(resource).__name__}", (), namespace)
    return adapter()


def adapt_middleware(component: object, *, body_timeout: float | None = None) -> object:
    """Return ``component`` if falcon's ASGI app accepts it as is, else an async adapter.

    A sync ``process_resource`` gets the request body read on the loop first, within ``body_timeout`` seconds.
    """
    namespace: dict[str, Any] = {"wrapped": component}
    changed = False
    for name in MIDDLEWARE_METHODS:
        async_version = getattr(component, f"{name}_async", None)
        method = getattr(component, name, None)
        if async_version is not None:
            namespace[f"{name}_async"] = _as_method(async_version)
        elif method is not None:
            if inspect.iscoroutinefunction(method):
                namespace[f"{name}_async"] = _as_method(method)
            else:
                changed = True
                namespace[f"{name}_async"] = _sync_method(
                    method,
                    inline=is_nonblocking(component, method),
                    reads_body=name == "process_resource",
                    body_timeout=body_timeout,
                )
    for name in LIFESPAN_METHODS:
        method = getattr(component, name, None)
        if method is not None:
            if not inspect.iscoroutinefunction(method):
                changed = True
                sync_method = method

                async def method(*args: Any, _sync: Callable[..., Any] = sync_method) -> Any:
                    return _sync(*args)

            namespace[name] = _as_method(method)
    if not changed:
        return component
    return type(f"Async{type(component).__name__}", (), namespace)()
