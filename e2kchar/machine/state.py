"""The run state of the machine and the host's requests, shared under one lock.

The CPU thread (run()), the kicker thread and host threads (stop/pause/resume/reset/close,
device callbacks) meet here. Only the run loop moves `state` while run() is active; the
host moves it between STOPPED and HALTED while no run() is active. Requests are what the
host asked for and the run loop has not yet acted on.
"""

from __future__ import annotations

import enum
import threading


class RunState(enum.Enum):
    STOPPED = "stopped"      # no run() active
    HALTED = "halted"        # paused while no run() is active (QMP stop before run())
    RUNNING = "running"      # run() active, the CPU thread between two emu_starts
    IN_GUEST = "in-guest"    # inside emu_start: hooks and MMIO callbacks fire
    WFI = "wfi"              # run() active, asleep in wfi
    PAUSED = "paused"        # run() active, paused by the host


_ACTIVE = frozenset({RunState.RUNNING, RunState.IN_GUEST, RunState.WFI, RunState.PAUSED})


class Request(enum.Flag):
    NONE = 0
    STOP = enum.auto()       # end run() at the next safe point
    PAUSE = enum.auto()      # be paused until resume() (stays set while paused)
    RESET = enum.auto()      # reset at the next safe point (asked from another thread)
    CLOSE = enum.auto()      # the machine is closed (stays set)


class RunControl:
    """State, requests and the CPU thread's identity; `lock` guards them, `cond` signals
    every change of them (and of kicks and timer deadlines)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.state = RunState.STOPPED
        self.requests = Request.NONE
        #: host time when the active run() times out
        self.deadline = float("inf")
        #: host time the kicker thread wakes up next by itself (a change due later needs
        #: no notify)
        self.kicker_wake = float("inf")
        #: the thread of the last run() and its CPU-time clock
        self.cpu_ident: int | None = None
        self.cpu_clock: int | None = None

    @property
    def running(self) -> bool:
        return self.state in _ACTIVE

    @property
    def paused(self) -> bool:
        return self.state is RunState.PAUSED or self.state is RunState.HALTED

    @property
    def in_guest(self) -> bool:
        return self.state is RunState.IN_GUEST

    @property
    def closed(self) -> bool:
        return Request.CLOSE in self.requests

    def on_cpu_thread(self) -> bool:
        return threading.get_ident() == self.cpu_ident
