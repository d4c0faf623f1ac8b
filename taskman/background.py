"""What plugins that run background threads share: a wake-up that is never lost."""

from __future__ import annotations

import threading


class Wakeup:
    """Wakes the background threads that wait on it, all of them, and a ring sent while they are busy is kept.

    A shared :class:`threading.Event` that each thread clears after waiting
    loses rings: one thread clears what another never saw (a stop then waits
    out the whole poll interval), and a ring between a wait and its clear is
    gone.  Here each thread notes :meth:`rings` before its round and waits
    for a ring after that.
    """

    __slots__ = ("_changed", "_rings")

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._rings = 0

    def ring(self) -> None:
        with self._changed:
            self._rings += 1
            self._changed.notify_all()

    def rings(self) -> int:
        """How many rings so far: note it before a round, pass it to :meth:`wait` after."""
        return self._rings

    def wait(self, since: int, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a ring after ``since``; True if there was one."""
        with self._changed:
            return self._changed.wait_for(lambda: self._rings != since, timeout)
