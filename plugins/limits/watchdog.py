"""A per-process watchdog thread that interrupts calls running past their deadline.

:meth:`Watchdog.call` runs a function with a time limit.  One daemon thread
per process (started on first use, started again in a forked child) sleeps
until the earliest deadline; when a deadline passes it raises
:class:`ResponderTimeout` inside the late thread with
``PyThreadState_SetAsyncExc``.  CPython delivers such an exception only when
that thread next runs Python bytecode: a thread blocked in C (a socket read,
a lock, one long ``time.sleep``) gets it when the C call returns.

The one hazard of asynchronous exceptions is a late one: the watchdog fires
just as the call finishes, and the exception surfaces after ``call``
returned, in whatever the thread does next.  Deadlines are added, removed
and fired under one lock, each fires at most once, and removing a fired one
clears the thread's pending exception inside that lock; an exception already
delivered while removing is caught there and re-raised from ``call``.  So
once ``call`` returns or raises, nothing is pending for the thread.

Per call the cost is one small object, a clock read and two lock round trips
with a dict insert and delete: no thread, timer or condition wait per call.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any, TypeVar

T = TypeVar("T")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.restype = ctypes.c_int


class ResponderTimeout(BaseException):
    """Raised inside a thread whose call ran past its deadline.

    A ``BaseException``, like ``asyncio.CancelledError``, so that the usual
    ``except Exception`` of the interrupted code does not swallow it;
    ``with`` blocks and ``finally`` clauses (a database transaction's
    rollback) still run.
    """


def interrupt(thread_id: int, exception: type[BaseException] | None) -> bool:
    """Make ``exception`` pending in thread ``thread_id`` (None clears it); False if there is no such thread."""
    target = ctypes.c_ulong(thread_id)
    if exception is None:
        return bool(_set_async_exc(target, None))
    return bool(_set_async_exc(target, ctypes.py_object(exception)))


class _Deadline:
    __slots__ = ("at", "fired", "thread_id")

    def __init__(self, thread_id: int, at: float) -> None:
        self.thread_id = thread_id
        self.at = at
        self.fired = False


class Watchdog:
    """Time limits for calls, enforced by one watchdog thread per process.

    One deadline per thread: a :meth:`call` made inside another one in the
    same thread runs under the outer call's deadline.
    """

    def __init__(self, exception: type[BaseException] = ResponderTimeout, name: str = "taskman-watchdog") -> None:
        self.exception = exception
        self.name = name
        self._start_afresh()
        # A forked child has no watchdog thread, and the lock may have been
        # held by the parent's at the moment of the fork: start afresh there.
        os.register_at_fork(after_in_child=functools.partial(_start_afresh_in_child, weakref.ref(self)))

    def _start_afresh(self) -> None:
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._deadlines: dict[int, _Deadline] = {}
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether this process's watchdog thread has been started."""
        return self._thread is not None and self._thread.is_alive()

    def watching(self) -> bool:
        """Whether the calling thread is inside :meth:`call`, under a deadline."""
        return threading.get_ident() in self._deadlines

    def pending(self) -> int:
        """How many calls are being watched right now."""
        with self._lock:
            return len(self._deadlines)

    def call(self, seconds: float, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Return ``func(*args, **kwargs)``, or raise :attr:`exception` in it once ``seconds`` have passed."""
        deadline = _Deadline(threading.get_ident(), monotonic() + seconds)
        try:
            self._arm(deadline)
            return func(*args, **kwargs)
        finally:
            # Every point where the watchdog's exception can surface is
            # inside this try: the first bytecode of _disarm included.
            try:
                self._disarm(deadline)
            except self.exception:
                # It surfaced while disarming; it fires once, so this second
                # disarm cannot be interrupted, and the call did time out.
                self._disarm(deadline)
                raise

    def _arm(self, deadline: _Deadline) -> None:
        with self._lock:
            if deadline.thread_id in self._deadlines:
                return  # nested in another call of this thread: the outer deadline applies
            self._deadlines[deadline.thread_id] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
                self._thread.start()
            elif deadline.at < self._wake_at:
                self._wakeup.notify()

    def _disarm(self, deadline: _Deadline) -> None:
        with self._lock:
            if self._deadlines.get(deadline.thread_id) is deadline:
                del self._deadlines[deadline.thread_id]
            if deadline.fired:
                interrupt(deadline.thread_id, None)

    def _watch(self) -> None:
        with self._lock:
            while True:
                now = monotonic()
                earliest = math.inf
                for deadline in self._deadlines.values():
                    if deadline.fired:
                        continue
                    if deadline.at <= now:
                        deadline.fired = True
                        interrupt(deadline.thread_id, self.exception)
                    elif deadline.at < earliest:
                        earliest = deadline.at
                self._wake_at = earliest
                self._wakeup.wait(None if earliest == math.inf else earliest - now)


def _start_afresh_in_child(ref: weakref.ref[Watchdog]) -> None:
    watchdog = ref()
    if watchdog is not None:
        watchdog._start_afresh()


#: The process's watchdog for responders.
watchdog = Watchdog(name="taskman-limits-watchdog")
