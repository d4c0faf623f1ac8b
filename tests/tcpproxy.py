"""A loopback TCP proxy whose latency can be raised and lowered, and whose connections can be cut, at run time.

Put between a server and its database, it makes the database slow or gone
without touching the database itself.  Threaded: one accept thread, and two
pump threads per connection (one each way).  Every chunk read from either
side waits :attr:`TcpProxy.delay` seconds before it is forwarded, so a
request/response round trip costs about twice the delay.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

CHUNK = 65536
#: How often idle threads look at the stop flag (also the upper bound of a delay's granularity).
TICK = 0.05


class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target``; see the module docstring."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(TICK)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.delay = 0.0
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    # -- control ------------------------------------------------------------------

    def set_delay(self, seconds: float) -> None:
        """From now on, hold each chunk ``seconds`` before forwarding it (0 for none)."""
        self.delay = max(0.0, seconds)

    def cut(self) -> None:
        """Drop every open connection at once (the peers see a reset); new ones are still accepted."""
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            for sock in pair:
                _abort(sock)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- life cycle ------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._spawn(self._accept_loop, "tcpproxy-accept")
        return self

    def close(self) -> None:
        self._stopping.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the work ----------------------------------------------------------------

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
                client.settimeout(None)
            except OSError:
                _abort(client)  # the target is down: so are we, for this client
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.accepted += 1
            self._spawn(self._pump, "tcpproxy-up", client, upstream, pair)
            self._spawn(self._pump, "tcpproxy-down", upstream, client, pair)

    def _pump(self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([source], [], [], TICK)
                if not readable:
                    continue
                data = source.recv(CHUNK)
                if not data:
                    break
                self._wait(self.delay)
                sink.sendall(data)
        except (OSError, ValueError):  # reset by a peer, or cut (closed) under our feet
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                _abort(sock)

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, TICK))


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` at once, with a reset rather than an orderly FIN when possible."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
