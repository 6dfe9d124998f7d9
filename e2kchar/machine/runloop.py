"""The CPU loop and the kicker thread, driven by an explicit run state (state.py).

run() executes the guest on the caller's thread (the CPU thread): at each safe point it acts
on the host's requests, applies interrupts, runs emu_start, then retires a rolled-back
access, delivers the trap an error stands for, or sleeps while the guest is in wfi. The
kicker thread turns requests, timer deadlines and the run timeout into kicks (kick.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from unicorn.unicorn_py3.unicorn import UcError

from .clock import GuestClock
from .cpu import Hart
from .errors import MachineError
from .idle import IdleMonitor
from .interrupts import MASKED_POLL, InterruptUnit, TimerWatch
from .kick import KickProtocol
from .result import RunResult
from .retire import Retirer
from .state import Request, RunControl, RunState
from .stats import Stats
from .traps import HookStop, TrapUnit

#: every change the CPU loop and the kicker wait for notifies the run control's condition;
#: this only bounds a wait should one be missed (a wake-up a second cost an idle Linux a
#: tenth of its CPU: docs/idle.md)
SAFETY_WAKE_S = 30.0
#: the guest computes (or is about to): the kicker samples the idle monitor
_COMPUTING = (RunState.RUNNING, RunState.IN_GUEST)


class RunLoop:
    """run(), the host's controls (stop/pause/resume/reset/close) and the kicker."""

    def __init__(self, control: RunControl, hart: Hart, traps: TrapUnit,
                 interrupts: InterruptUnit, retirer: Retirer, kick: KickProtocol, stats: Stats,
                 clock: GuestClock, reset: Callable[[], None], idle: IdleMonitor) -> None:
        self._control = control
        self._hart = hart
        self._traps = traps
        self._interrupts = interrupts
        self._retirer = retirer
        self._kick = kick
        self._stats = stats
        self._clock = clock
        self._reset = reset
        self._idle_mon = idle
        #: the exit device's last request: ("exit", code) or ("reset", 0)
        self._exit: tuple[str, int] | None = None
        self._kicker = threading.Thread(target=self._kicker_main, name="e2k-kicker", daemon=True)

    def start(self) -> None:
        self._kicker.start()

    def guest_exit(self, kind: str, code: int) -> None:
        """The exit device's callback (CPU thread): end the run."""
        self._exit = (kind, code)
        if self._control.in_guest:
            self._hart.stop()

    def clear(self) -> None:
        """On reset (lock held): no exit, no reset request."""
        self._control.requests &= ~Request.RESET
        self._exit = None
        self._idle_mon.reset()

    # ------------------------------------------------------------------------------------
    # host controls (any thread)

    def stop(self) -> None:
        with self._control.lock:
            self._control.requests |= Request.STOP
            self._kick.request()

    def pause(self, timeout: float) -> bool:
        control = self._control
        with control.lock:
            control.requests |= Request.PAUSE
            if not control.running:
                self._enter_pause()
                return True
            self._kick.request()
            if control.on_cpu_thread():
                return True  # asked from a device callback: the loop pauses when it returns
            return control.cond.wait_for(lambda: control.paused or not control.running, timeout)

    def resume(self) -> None:
        control = self._control
        with control.lock:
            control.requests &= ~Request.PAUSE
            if control.state is RunState.HALTED:
                self._leave_pause()
            control.cond.notify_all()

    def defer_reset(self) -> bool:
        """A reset asked while run() is active on another thread is done by the loop at its
        next safe point (True); otherwise the caller resets now (False)."""
        control = self._control
        with control.lock:
            if control.running and not control.on_cpu_thread():
                control.requests |= Request.RESET
                self._kick.request()
                return True
        return False

    def close(self) -> bool:
        """End an active run(), wait for it (up to 5 s) and stop the kicker; False if the
        machine was closed already."""
        control = self._control
        with control.lock:
            if control.closed:
                return False
            control.requests |= Request.CLOSE | Request.STOP
            self._kick.request()
            control.cond.notify_all()
            control.cond.wait_for(lambda: not control.running, timeout=5)
        if self._kicker.is_alive():
            self._kicker.join(timeout=5)
        return True

    def _enter_pause(self) -> None:
        control = self._control
        control.state = RunState.PAUSED if control.running else RunState.HALTED
        self._clock.pause()
        control.cond.notify_all()

    def _leave_pause(self) -> None:
        control = self._control
        control.state = RunState.RUNNING if control.state is RunState.PAUSED else RunState.STOPPED
        self._clock.resume()
        control.cond.notify_all()

    # ------------------------------------------------------------------------------------
    # the CPU loop

    def run(self, timeout: float | None) -> RunResult:
        control = self._control
        with control.lock:
            if control.running:
                raise MachineError("run() is already active on another thread")
            if control.closed:
                raise MachineError("the machine is closed")
            control.cpu_ident = threading.get_ident()
            control.cpu_clock = time.pthread_getcpuclockid(control.cpu_ident)
            control.deadline = time.monotonic() + timeout if timeout is not None else float("inf")
            self._idle_mon.reset()
            if control.state is RunState.HALTED:
                if Request.PAUSE in control.requests:
                    control.state = RunState.PAUSED
                else:
                    self._leave_pause()
                    control.state = RunState.RUNNING
            else:
                control.state = RunState.RUNNING
            control.cond.notify_all()
        try:
            return self._loop()
        finally:
            with control.lock:
                control.state = RunState.HALTED if control.paused else RunState.STOPPED
                control.deadline = float("inf")
                control.cond.notify_all()

    def _safe_point(self) -> RunResult | None:
        """Act on the host's requests (lock held); a result ends the run, None goes on."""
        control, kick = self._control, self._kick
        if Request.RESET in control.requests:
            control.lock.release()
            try:
                self._reset()
            finally:
                control.lock.acquire()
        if Request.STOP in control.requests:
            control.requests &= ~Request.STOP
            kick.cancel()
            return RunResult("stopped", 0, self._hart.pc, message="stopped by the host")
        if Request.PAUSE in control.requests and not control.paused:
            self._enter_pause()
        elif control.paused and Request.PAUSE not in control.requests:
            self._leave_pause()
        if time.monotonic() >= control.deadline:
            kick.cancel()
            return RunResult("timeout", 124, self._hart.pc,
                             message="the run timed out (the guest did not exit)")
        return None

    def _loop(self) -> RunResult:
        control, hart, traps, kick = self._control, self._hart, self._traps, self._kick
        idle = self._idle_mon
        while True:
            if self._exit is not None:
                kind, code = self._exit
                if kind == "reset":
                    self._exit = None
                    return RunResult("reset", 0, hart.pc, message="the guest asked for a reset")
                return RunResult("exit", code, hart.pc)
            if traps.report is not None:
                return traps.report
            with control.lock:
                result = self._safe_point()
                if result is not None:
                    return result
                if control.paused:
                    control.cond.wait(max(0.0, min(0.05, control.deadline - time.monotonic())))
                    continue
                kick.arm()
                if self._idle_mon.rechecking:
                    kick.request()  # stop at the first access: is it the same fruitless read?
            self._interrupts.apply()
            if traps.report is not None:
                return traps.report
            with control.lock:
                control.state = RunState.IN_GUEST
            err: UcError | None = None
            traps.begin()
            try:
                self._stats.emu_starts += 1
                hart.run()
            except UcError as exc:
                err = exc
            finally:
                with control.lock:
                    control.state = RunState.RUNNING
                    kicked, taken, prev = kick.collect()
            pc = hart.read_pc()
            if self._exit is not None:
                hart.pc = pc
                continue
            if err is not None:
                hart.pc = traps.after_error(err, pc)
                continue
            if taken:
                pc = self._retirer.retire(pc, taken, prev)
                hart.write_pc(pc)
            hart.pc = pc
            quiet = traps.hook_stop is HookStop.NONE and traps.report is None
            if idle.probing or idle.rechecking:
                with control.lock:
                    now = time.monotonic()
                    if idle.probing:
                        sleep = idle.after_probe(taken, now)
                    else:
                        sleep = idle.after_recheck(taken, now)
                    if sleep and quiet:
                        self._idle_poll()
                        continue
            if not kicked and quiet and hart.after_wfi(pc):
                self._idle()

    def _idle_poll(self) -> None:
        """The guest busy-polls a register that does not change (idle.py): sleep until
        an event (lock held)."""
        control, kick, irqs = self._control, self._kick, self._interrupts

        def deadline() -> float:
            timer = irqs.timer_host_deadline()
            return control.deadline if timer is None else min(timer, control.deadline)

        kick.cancel()  # the probe's kick, taken already
        control.state = RunState.WFI
        try:
            self._idle_mon.sleep(lambda: kick.pending or bool(control.requests), deadline)
        finally:
            control.state = RunState.RUNNING

    def _idle(self) -> None:
        """The guest is in wfi: sleep until an interrupt, a timer deadline, or a request."""
        if self._interrupts.wake_pending():
            return
        self._stats.wfi_sleeps += 1
        control = self._control
        with control.lock:
            control.state = RunState.WFI
            try:
                while not (self._kick.pending or control.requests):
                    now = time.monotonic()
                    wait = control.deadline - now
                    deadline = self._interrupts.timer_host_deadline()
                    if deadline is not None:
                        wait = min(wait, deadline - now)
                    if wait <= 0:
                        return
                    control.cond.wait(min(wait, SAFETY_WAKE_S))
            finally:
                control.state = RunState.RUNNING

    # ------------------------------------------------------------------------------------
    # the kicker thread

    def _kicker_main(self) -> None:
        """Stops a computing guest for kicks that no MMIO callback took, and turns timer
        deadlines and the run timeout into kicks."""
        control, kick, idle = self._control, self._kick, self._idle_mon
        with control.lock:
            while not control.closed:
                now = time.monotonic()
                wait = SAFETY_WAKE_S
                if control.running:
                    if now >= control.deadline:
                        kick.request()
                    else:
                        wait = min(wait, control.deadline - now)
                    deadline = self._interrupts.timer_host_deadline()
                    if deadline is not None:
                        if now >= deadline:
                            kick.request()
                        else:
                            wait = min(wait, deadline - now)
                    if (self._interrupts.watch is TimerWatch.MASKED
                            and control.state is not RunState.WFI):
                        # (a guest asleep in wfi cannot unmask anything: no need to look)
                        kick.request()
                        wait = min(wait, MASKED_POLL)
                    if kick.stop_due():
                        wait = min(wait, kick.step(now))
                    if idle.enabled and control.state in _COMPUTING:
                        if control.state is RunState.IN_GUEST and idle.sample(now):
                            kick.request()  # a probe: what does the guest read?
                        wait = min(wait, idle.interval)
                control.cond.wait(max(wait, 0.0001))
