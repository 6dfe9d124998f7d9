"""Idle back-off for guests that busy-poll a device register (docs/idle.md).

A guest waiting at a prompt with interrupts off reads a status register (16550 LSR,
Am85C30 RR0, LMS status) about a million times a second. Nothing here is device-specific:
the kicker thread samples the machine's counters and calls a stretch *quiet* when, for at
least `QUIET_S` of host time, the guest made at least `QUIET_READS` MMIO reads, densely
(`READS_PER_CPU_S` per second of the CPU thread's CPU time), and nothing else happened: no
MMIO write, interrupt edge, trap, kick, read of the guest clock (a timed busy-wait is not
idle) and no I/O-thread activity (input, output drained, a chardev timer). Then it
*probes*: a kick stops the guest right after its next MMIO access (kick.py), which the run
loop retires as usual. Two probes that both land on a read of the same register with the
same value (and the window still quiet) make the guest idle: the CPU thread sleeps until a
kick (an interrupt, a host request, a timer deadline) or I/O activity wakes it, or
`SLEEP_MAX_S` passes.

After a wake by an event the guest is stopped again at its first MMIO access (a
*re-check*): the same read with the same value means the event was not for it, and it
sleeps again until the same deadline. After `SLEEP_MAX_S` without an event it runs freely
and must look quiet for `QUIET_S` again before the next sleep, so a guest that really uses
status reads as a delay loop keeps making progress; one whose fruitless reads come in runs
of fewer than `QUIET_READS` (a write or any other event in between) is never slowed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .kick import Access
from .state import RunControl
from .stats import Stats

#: a stretch of fruitless polling must last this long (host time) before a probe ...
QUIET_S = 0.01
#: ... hold at least this many MMIO reads ...
QUIET_READS = 1000
#: ... at this many reads per second of the CPU thread's CPU time (a guest computing
#: between status reads reads far more rarely: at 1e9 instructions a second, 20k
#: instructions between reads is 50k reads a second)
READS_PER_CPU_S = 50_000
#: the kicker samples the counters this often while the guest runs ...
SAMPLE_S = QUIET_S
#: ... less and less often (doubling) while the guest is busy, down to this: a busy guest
#: costs the kicker a few wake-ups a second, a poller sleeps within this after its last
#: event
SAMPLE_MAX_S = 0.16
#: an idle sleep with no event lasts at most this long
SLEEP_MAX_S = 1.0


class IdleMonitor:
    """Quiet-window bookkeeping (kicker thread) and the probe/re-check decisions (CPU
    thread); everything runs under the run control's lock except `activity()`."""

    def __init__(self, control: RunControl, stats: Stats,
                 clock_reads: Callable[[], int]) -> None:
        self._control = control
        self._stats = stats
        self._clock_reads = clock_reads
        #: False: never back off
        self.enabled = True
        #: longest idle sleep without an event (SLEEP_MAX_S; tests make it long)
        self.sleep_max = SLEEP_MAX_S
        #: I/O-thread activity seen so far (a counter: only its changes matter)
        self.events = 0
        #: when the kicker samples again (SAMPLE_S .. SAMPLE_MAX_S)
        self.interval = SAMPLE_S
        #: a probe kick is out: the run loop hands what it took to after_probe()
        self.probing = False
        #: the next emu_start is a re-check after an event woke an idle sleep
        self.rechecking = False
        self._asleep = False
        self._sig: tuple[int, ...] = ()
        self._since = 0.0
        self._since_cpu = 0
        self._since_reads = 0
        self._last_probe: Access | None = None
        #: the run loop stopped the guest for us: the next sample begins a new window
        #: (keeping the last probe: the loop's own restart changes the counters)
        self._fresh = True
        #: the read an idle sleep waits behind, and when that sleep ends without an event
        self._idle_read: Access | None = None
        self._idle_until = 0.0

    def reset(self) -> None:
        """A new run or a machine reset: no probe out, no idle read."""
        self.probing = self.rechecking = False
        self._last_probe = self._idle_read = None
        self._fresh = True

    # ------------------------------------------------------------------------------------
    # any thread

    def activity(self) -> None:
        """The I/O thread did something a polling guest may wait for (input came, output
        drained, a chardev timer fired): wake an idle sleep."""
        self.events += 1
        if self._asleep:
            with self._control.lock:
                self._control.cond.notify_all()

    # ------------------------------------------------------------------------------------
    # lock held

    def _signature(self) -> tuple[int, ...]:
        s = self._stats
        return (s.mmio_writes, s.irqs, s.traps, s.kicks, s.emu_starts, self.events,
                self._clock_reads())

    def _cpu_ns(self) -> int:
        try:
            return time.clock_gettime_ns(self._control.cpu_clock)  # type: ignore[arg-type]
        except (OSError, TypeError):
            return time.monotonic_ns()

    def restart(self, now: float) -> None:
        """Begin a new quiet window here."""
        self._sig = self._signature()
        self._since = now
        self._since_cpu = self._cpu_ns()
        self._since_reads = self._stats.mmio_reads

    def sample(self, now: float) -> bool:
        """Kicker, guest running: True when the window is quiet and a probe is due."""
        if not self.enabled or self.probing or self.rechecking:
            return False
        if self._fresh:
            self._fresh = False
            self.interval = SAMPLE_S
            self.restart(now)
            return False
        if self._signature() != self._sig:
            self._busy(now)
            return False
        if now - self._since < QUIET_S:
            return False
        reads = self._stats.mmio_reads - self._since_reads
        cpu_s = (self._cpu_ns() - self._since_cpu) / 1e9
        if reads < QUIET_READS or reads < READS_PER_CPU_S * cpu_s:
            self._busy(now)  # too few or too sparse: a computing guest
            return False
        self.interval = SAMPLE_S
        self.probing = True
        return True

    def _busy(self, now: float) -> None:
        """Not quiet: a fresh window, looked at later."""
        self._last_probe = None
        self.interval = min(self.interval * 2, SAMPLE_MAX_S)
        self.restart(now)

    def after_probe(self, taken: list[Access], now: float) -> bool:
        """CPU thread: a probe stopped the guest after `taken`; True to sleep now."""
        self.probing = False
        access = taken[-1] if taken else None
        if access is None or access[0] != "r":
            self._last_probe = None
        elif access != self._last_probe:
            self._last_probe = access  # the next probe must land on the same read
        else:
            self._last_probe = None
            self._idle_read = access
            self._idle_until = now + self.sleep_max
            return True
        self._fresh = True
        return False

    def after_recheck(self, taken: list[Access], now: float) -> bool:
        """CPU thread: the first access after an event woke an idle sleep. True to sleep
        again (the same read, the same value: the event was not for this guest)."""
        self.rechecking = False
        if taken and taken[-1] == self._idle_read and now < self._idle_until:
            return True
        self._idle_read = None
        self._fresh = True
        return False

    def sleep(self, wake: Callable[[], bool], deadline: Callable[[], float]) -> None:
        """CPU thread: sleep until `wake()` (kicks, host requests), I/O activity, the
        time `deadline()` returns (timers, the run timeout) or the idle sleep's end.
        Woken before that end, the next emu_start is a re-check."""
        self._stats.idle_sleeps += 1
        control = self._control
        events = self.events
        self._asleep = True
        try:
            while not wake() and self.events == events:
                now = time.monotonic()
                until = min(self._idle_until, deadline())
                if until <= now:
                    break
                control.cond.wait(until - now)
        finally:
            self._asleep = False
        now = time.monotonic()
        if now < self._idle_until:
            self.rechecking = True
        else:
            self._idle_read = None  # slept the whole time: run freely for a new window
            self._fresh = True
            control.cond.notify_all()  # the kicker samples again
