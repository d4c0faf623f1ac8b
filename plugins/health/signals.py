"""Mark the process draining the moment SIGTERM (or SIGINT) arrives, then let the server handle it.

uvicorn and gunicorn run the app's shut-down hooks only after they stopped
serving, which is too late to tell a load balancer; so the health plugin
chains a handler in front of the server's own: it records the signal and
calls the previous handler unchanged.  Only the main thread may set signal
handlers; elsewhere this does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any]


class DrainOnSignals:
    """Chain ``on_signal(signum)`` in front of the current SIGTERM and SIGINT handlers."""

    def __init__(self, on_signal: Callable[[int], None], signals: tuple[signal.Signals, ...] = SIGNALS) -> None:
        self.on_signal = on_signal
        self.signals = signals
        self._installed: dict[int, tuple[Handler, Any]] = {}

    @property
    def installed(self) -> bool:
        return bool(self._installed)

    def install(self) -> bool:
        """Install the chained handlers; False (and nothing done) outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in self.signals:
            if sig in self._installed:
                continue
            previous = signal.getsignal(sig)
            if previous is None:  # set outside Python: we could neither chain nor restore it
                continue
            handler = self._chain(previous)
            signal.signal(sig, handler)
            self._installed[sig] = (handler, previous)
        return True

    def uninstall(self) -> None:
        """Put the previous handlers back where ours is still the current one."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, (handler, previous) in list(self._installed.items()):
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)
            del self._installed[sig]

    def _chain(self, previous: Any) -> Handler:
        on_signal = self.on_signal

        def handler(signum: int, frame: FrameType | None) -> Any:
            on_signal(signum)
            if callable(previous):
                return previous(signum, frame)
            if previous == signal.SIG_DFL:
                # Keep the default action (terminate) that we displaced.
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            return None  # SIG_IGN: ignored, as before

        handler.taskman_health_chained = previous  # type: ignore[attr-defined]
        return handler
