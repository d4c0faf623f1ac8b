"""Cost of the rate limiter's decision per request: ``python -m bench.ratelimit``.

Times the plugin's plain part, :class:`RateLimiter` over the backend its
settings pick (``decide``: count one hit, read the window back), at a rate no
run reaches, so every decision is an allowed one:

* **window**: one client, with 10 and with 100,000 hits already counted in
  its window (in-process storage): what a request costs must not depend on
  how many came before it in the window;
* **clients**: 100 tokens taking turns, in-process and on Redis (sync and
  asyncio clients): a Redis server of the run's own (``redis-server`` on a
  free loopback port, no persistence) unless ``--redis-url`` names one; the
  Redis figures are skipped with a note when neither is there.

Prints microseconds per decision (best of the repeats); :func:`measure`
returns them for ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import timeit
from collections.abc import Iterator
from typing import Any

# taskman_plugins is mapped from plugins/: not found from an editable install, untyped from a wheel.
from taskman_plugins.ratelimit import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
    RateLimiter,
    open_backend,
    parse_rate,
)

#: No run of this module comes near it: every decision counts a hit and allows it.
RATE = "1000000000/hour"
WINDOW_SIZES = (10, 100_000)
CLIENTS = 100
REDIS_BOOT_SECONDS = 10.0


def limiter(url: str = "memory://") -> RateLimiter:
    backend = open_backend(url, timeout=2.0, key_prefix=f"bench{time.time_ns()}")
    return RateLimiter({"reads": parse_rate(RATE)}, backend)


def _best_us(call: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def window_cost(hits: int, number: int = 2000, repeat: int = 5, url: str = "memory://") -> float:
    """µs per decision for one client with ``hits`` hits already in its window."""
    limits = limiter(url)
    for _ in range(hits):
        limits.decide("ip:192.0.2.1", "reads")
    return _best_us(lambda: limits.decide("ip:192.0.2.1", "reads"), number, repeat)


def clients_cost(url: str, number: int = 2000, repeat: int = 5) -> float:
    """µs per decision with :data:`CLIENTS` tokens taking turns."""
    limits = limiter(url)
    identities = [f"token:tm_{n:08d}" for n in range(CLIENTS)]
    turn = iter(range(1 << 62))

    def one() -> None:
        limits.decide(identities[next(turn) % CLIENTS], "reads")

    for _ in range(CLIENTS):  # every client's key exists before the clock starts
        one()
    try:
        return _best_us(one, number, repeat)
    finally:
        limits.close()


def clients_cost_async(url: str, number: int = 2000, repeat: int = 5) -> float:
    """The same through ``decide_async`` (the ASGI path), in one event loop."""
    limits = limiter(url)
    identities = [f"token:tm_{n:08d}" for n in range(CLIENTS)]

    async def run() -> float:
        for identity in identities:
            await limits.decide_async(identity, "reads")
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for n in range(number):
                await limits.decide_async(identities[n % CLIENTS], "reads")
            best = min(best, time.perf_counter() - started)
        await limits.aclose()
        return best / number * 1e6

    return asyncio.run(run())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def private_redis() -> Iterator[str | None]:
    """The URL of a ``redis-server`` of this run's own (stopped afterwards); None when it is not installed."""
    executable = shutil.which("redis-server")
    if executable is None:
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="taskman-bench-redis-") as folder:
        proc = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + REDIS_BOOT_SECONDS
            while not _answers_ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    yield None
                    return
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def measure(redis_url: str | None = None) -> dict[str, Any]:
    """Every figure of the module docstring; Redis ones are None (with a note) when there is no Redis."""
    result: dict[str, Any] = {
        "window_us": {str(hits): window_cost(hits) for hits in WINDOW_SIZES},
        "clients_us": {"memory": clients_cost("memory://")},
        "notes": [],
    }
    window = result["window_us"]
    result["window_growth"] = window[str(WINDOW_SIZES[-1])] / window[str(WINDOW_SIZES[0])]
    with contextlib.ExitStack() as stack:
        url = redis_url or stack.enter_context(private_redis())
        if url is None:
            result["clients_us"].update(redis=None, redis_async=None)
            result["notes"].append("Redis figures skipped: no redis-server on PATH and no --redis-url")
        else:
            result["clients_us"].update(redis=clients_cost(url), redis_async=clients_cost_async(url))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a Redis to use instead of a private redis-server")
    args = parser.parse_args()
    result = measure(args.redis_url)
    for hits, us in result["window_us"].items():
        print(f"one client, {int(hits):>7,} hits in the window: {us:6.1f} us per decision")
    print(f"growth from {WINDOW_SIZES[0]:,} to {WINDOW_SIZES[-1]:,} hits: x{result['window_growth']:.2f}")
    for storage, us in result["clients_us"].items():
        figure = "skipped" if us is None else f"{us:6.1f} us per decision"
        print(f"{CLIENTS} tokens in turn, {storage:<11}: {figure}")
    for note in result["notes"]:
        print(note)


if __name__ == "__main__":
    main()
