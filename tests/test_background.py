"""taskman.Wakeup: what background threads of plugins wait on."""

from __future__ import annotations

import threading

from taskman import Wakeup


def test_a_ring_wakes_every_waiting_thread() -> None:
    wakeup = Wakeup()
    seen = wakeup.rings()
    woken: list[bool] = []
    waiting = threading.Barrier(4)

    def wait() -> None:
        waiting.wait()
        woken.append(wakeup.wait(seen, timeout=30))

    threads = [threading.Thread(target=wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    waiting.wait()
    wakeup.ring()
    for thread in threads:
        thread.join(30)
    # (one thread's wake-up does not consume another's, as clearing a shared Event did)
    assert woken == [True, True, True]


def test_a_ring_sent_during_a_round_is_not_lost() -> None:
    wakeup = Wakeup()
    seen = wakeup.rings()  # noted before the round
    wakeup.ring()  # arrives while the thread is busy
    assert wakeup.wait(seen, timeout=30) is True


def test_without_a_ring_the_wait_times_out() -> None:
    wakeup = Wakeup()
    assert wakeup.wait(wakeup.rings(), timeout=0.01) is False
