"""Clock implementations: virtual time is deterministic, host time fires on its own thread."""

from __future__ import annotations

import threading
import time

import pytest
from e2kchar.devices import Clock, HostClock, VirtualClock


def test_virtual_clock_fires_in_deadline_order_with_exact_now():
    clock = VirtualClock()
    assert isinstance(clock, Clock)
    seen: list[tuple[str, int]] = []
    clock.call_at(300, lambda: seen.append(("c", clock.now_ns())))
    clock.call_at(100, lambda: seen.append(("a", clock.now_ns())))
    clock.call_at(200, lambda: seen.append(("b", clock.now_ns())))
    assert clock.next_deadline() == 100
    clock.advance(250)
    assert seen == [("a", 100), ("b", 200)]
    assert clock.now_ns() == 250 and clock.next_deadline() == 300
    clock.set_time(1000)
    assert seen[-1] == ("c", 300) and clock.next_deadline() is None


def test_virtual_clock_cancel_and_timers_armed_from_callbacks():
    clock = VirtualClock(start_ns=10)
    seen: list[int] = []
    t = clock.call_at(20, lambda: seen.append(20))
    t.cancel()
    t.cancel()  # idempotent

    def chain() -> None:
        seen.append(clock.now_ns())
        if clock.now_ns() < 50:
            clock.call_at(clock.now_ns() + 10, chain)

    clock.call_at(30, chain)
    assert clock.next_deadline() == 30
    clock.advance(100)  # timers armed by callbacks fire in the same advance when due
    assert seen == [30, 40, 50]
    assert not t.active


def test_virtual_clock_rejects_going_backwards():
    clock = VirtualClock(start_ns=5)
    with pytest.raises(ValueError):
        clock.set_time(4)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_virtual_clock_survives_a_failing_callback():
    clock = VirtualClock()
    seen: list[int] = []

    def boom() -> None:
        raise RuntimeError("device bug")

    clock.call_at(1, boom)
    clock.call_at(2, lambda: seen.append(2))
    clock.advance(5)
    assert seen == [2]


def test_host_clock_fires_on_its_thread_and_cancels():
    clock = HostClock()
    try:
        fired = threading.Event()
        where: list[str] = []
        cancelled: list[int] = []

        def cb() -> None:
            where.append(threading.current_thread().name)
            fired.set()

        t = clock.call_at(clock.now_ns() + 50_000_000, lambda: cancelled.append(1))
        clock.call_at(clock.now_ns() + 1_000_000, cb)
        t.cancel()
        assert fired.wait(5)
        assert where and where[0] != threading.current_thread().name
        # a later timer fires after the cancelled one's deadline passed without a call
        later = threading.Event()
        clock.call_at(clock.now_ns() + 60_000_000, later.set)
        assert later.wait(5)
        assert cancelled == []
        assert clock.next_deadline() is None
        assert clock.now_ns() <= time.monotonic_ns()
    finally:
        clock.close()
    with pytest.raises(RuntimeError):
        clock.call_at(0, lambda: None)
