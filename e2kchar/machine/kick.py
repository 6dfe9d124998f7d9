"""The kick protocol: how a request from another thread stops a running guest without
duplicating or losing an MMIO access (an emu_stop rolls the last access back and repeats it
on resume: docs/embedding.md, interrupts into a unicorn RISC-V CPU).

A kick sets `pending` under the lock. Every MMIO callback, after doing its access, looks at
`pending`; if set it calls `took()`, which stops the CPU and records the access, because
unicorn rolls the instruction back: the run loop then retires that instruction by hand
(retire.py) so it is never executed twice. A guest that makes no MMIO access is stopped by
the kicker thread (`step()`), but only once it provably runs guest code: no callback
completed for a grace period while the CPU thread used CPU time. Otherwise a stop could land
in the tail of a callback that already looked at `pending` (its thread waiting for the GIL
or descheduled) and roll back an access nobody recorded.
"""

from __future__ import annotations

import time

from .cpu import Hart
from .state import RunControl
from .stats import Stats

#: a kick waits this long for an MMIO callback to take it before stopping the CPU itself
KICK_GRACE = 0.0005
#: ... and the CPU thread must have run this long (CPU time) without an MMIO callback
KICK_CPU_NS = 200_000

#: one guest MMIO access: ("r" or "w", guest address, size, value)
Access = tuple[str, int, int, int]


class KickProtocol:
    """Kick state. `pending` and `last` are touched by every MMIO callback (CPU thread);
    everything else runs under the run control's lock."""

    def __init__(self, control: RunControl, stats: Stats, hart: Hart) -> None:
        self._control = control
        self._stats = stats
        self._hart = hart
        #: a kick is waiting for the CPU to stop
        self.pending = False
        #: the last 4-byte access: the first half of a split 64-bit access that a stop
        #: after its second half rolls back too
        self.last: Access | None = None
        self._stop_issued = False
        self._taken: list[Access] = []
        self._prev: Access | None = None
        self._since = 0.0           # the current grace window: start, MMIO count, CPU time
        self._since_count = 0
        self._since_cpu = 0

    def request(self) -> None:
        """Ask the CPU to come back to the run loop soon (call with the lock held)."""
        if not self.pending:
            self.pending = True
            self._since = time.monotonic()
            self._since_count = self._stats.mmio_reads + self._stats.mmio_writes
            self._since_cpu = self._cpu_time() if self._control.running else 0
            self._stats.kicks += 1
        self._control.cond.notify_all()

    def took(self, kind: str, addr: int, size: int, value: int) -> None:
        """An access completed while a kick is pending: stop here, and remember the access,
        because unicorn rolls the instruction back and would execute it again."""
        with self._control.lock:
            if not self.pending:
                return
            if not self._stop_issued:
                self._stop_issued = True
                self._hart.stop()
            if not self._taken:
                # the first half of a split 64-bit access may have completed before the
                # kick was seen; the rollback repeats both halves
                self._prev = self.last
            self._taken.append((kind, addr, size, value))

    def cancel(self) -> None:
        """The loop is at a safe point and acts on the requests itself (lock held)."""
        self.pending = False

    def arm(self) -> None:
        """Before emu_start (lock held): no kick taken, nothing recorded."""
        self.pending = False
        self._stop_issued = False
        self._taken = []

    def collect(self) -> tuple[bool, list[Access], Access | None]:
        """After emu_start (lock held): (was a kick pending, the accesses the stop rolled
        back, the 4-byte access before the first of them)."""
        taken, self._taken = self._taken, []
        return self.pending, taken, self._prev

    def stop_due(self) -> bool:
        """Is the kicker to watch for a stop (a kick no callback has taken, guest running)?"""
        return self.pending and self._control.in_guest and not self._stop_issued

    def step(self, now: float) -> float:
        """A kick no MMIO callback has taken yet. Stop the CPU only once it provably runs
        guest code: no callback completed during a grace period while the CPU thread used
        CPU time. Returns how long until the kicker looks again."""
        count = self._stats.mmio_reads + self._stats.mmio_writes
        cpu = self._cpu_time()
        due = self._since + KICK_GRACE
        if now < due:
            return due - now
        if count != self._since_count:
            # callbacks are completing: the next one takes the kick; watch a new window
            self._since, self._since_count, self._since_cpu = now, count, cpu
            return KICK_GRACE
        if cpu - self._since_cpu < KICK_CPU_NS:
            # the CPU thread has hardly run (a loaded host): keep the baseline so its CPU
            # time accumulates, and look again soon
            return KICK_GRACE / 2
        self._stats.kicker_stops += 1
        self._hart.stop()
        # a stop that lands between two emu_starts is lost; the next window retries
        self._since, self._since_cpu = now, cpu
        return KICK_GRACE

    def _cpu_time(self) -> int:
        """CPU time of the CPU thread (ns); without a per-thread clock, wall time."""
        try:
            return time.clock_gettime_ns(self._control.cpu_clock)  # type: ignore[arg-type]
        except (OSError, TypeError):
            return time.monotonic_ns()
