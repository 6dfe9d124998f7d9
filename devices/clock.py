"""Clocks for device timers: host time for free-running machines, virtual time for lockstep ones.

Devices only need "what time is it" and "call me at time T"; the machine decides whether time
is the host's monotonic clock (HostClock) or moves only when it says so (VirtualClock), so
that a character timeout or a modem-line poll is deterministic under test.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


class Timer:
    """A one-shot timer handle; cancel() is safe from any thread and idempotent."""

    __slots__ = ("deadline_ns", "callback", "cancelled", "fired", "_clock")

    def __init__(self, clock: _HeapClock, deadline_ns: int, callback: Callable[[], None]) -> None:
        self.deadline_ns = deadline_ns
        self.callback = callback
        self.cancelled = False
        self.fired = False
        self._clock = clock

    @property
    def active(self) -> bool:
        return not (self.cancelled or self.fired)

    def cancel(self) -> None:
        # lazily dropped from the heap; the clock only needs to know for wake-ups
        self.cancelled = True

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "fired" if self.fired else "armed"
        return f"<Timer at {self.deadline_ns} ns {state}>"


@runtime_checkable
class Clock(Protocol):
    """What a device model needs from time."""

    def now_ns(self) -> int: ...

    def call_at(self, deadline_ns: int, callback: Callable[[], None]) -> Timer: ...


class _HeapClock:
    """Shared timer heap; subclasses decide where time comes from and who fires timers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()

    def _push(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        timer = Timer(self, int(deadline_ns), callback)
        with self._lock:
            heapq.heappush(self._heap, (timer.deadline_ns, next(self._seq), timer))
        return timer

    def _pop_due(self, now: int) -> Timer | None:
        """Pop the earliest live timer due at or before now (caller holds no lock)."""
        with self._lock:
            heap = self._heap
            while heap:
                deadline, _, timer = heap[0]
                if timer.cancelled:
                    heapq.heappop(heap)
                    continue
                if deadline > now:
                    return None
                heapq.heappop(heap)
                timer.fired = True
                return timer
            return None

    def next_deadline(self) -> int | None:
        """The earliest armed deadline, or None when no timer is armed."""
        with self._lock:
            heap = self._heap
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            return heap[0][0] if heap else None

    @staticmethod
    def _fire(timer: Timer) -> None:
        try:
            timer.callback()
        except Exception:  # a device bug must not stop the clock
            log.exception("timer callback %r failed", timer.callback)


class HostClock(_HeapClock):
    """Monotonic host time; timers fire on one background thread, started on first use."""

    def __init__(self, name: str = "e2kchar-clock") -> None:
        super().__init__()
        self._name = name
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    #: the C builtin itself: devices call it on hot paths (no Python frame per call)
    now_ns = staticmethod(time.monotonic_ns)

    def call_at(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        if self._closed:
            raise RuntimeError("clock is closed")
        timer = self._push(deadline_ns, callback)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer

    def call_later(self, delay_ns: int, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.now_ns() + delay_ns, callback)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait_ns = self._heap[0][0] - time.monotonic_ns()
                if wait_ns > 0:
                    self._cond.wait(wait_ns / 1e9)
                    continue
            while (timer := self._pop_due(time.monotonic_ns())) is not None:
                self._fire(timer)

    def close(self) -> None:
        """Stop the timer thread; armed timers never fire."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)


class VirtualClock(_HeapClock):
    """Time moves only when the machine calls advance()/set_time(); due timers fire then,
    synchronously in the caller's thread, in deadline order, with now_ns() equal to each
    timer's deadline while it runs."""

    def __init__(self, start_ns: int = 0) -> None:
        super().__init__()
        self._now = int(start_ns)

    def now_ns(self) -> int:
        return self._now

    def call_at(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        return self._push(deadline_ns, callback)

    def call_later(self, delay_ns: int, callback: Callable[[], None]) -> Timer:
        return self.call_at(self._now + delay_ns, callback)

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("time cannot go backwards")
        self.set_time(self._now + ns)

    def set_time(self, ns: int) -> None:
        ns = int(ns)
        if ns < self._now:
            raise ValueError(f"time cannot go backwards ({ns} < {self._now})")
        while (timer := self._pop_due(ns)) is not None:
            if timer.deadline_ns > self._now:
                self._now = timer.deadline_ns
            self._fire(timer)
        self._now = ns
