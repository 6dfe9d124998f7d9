"""Interrupts into the hart.

The PLIC output drives mip.SEIP (written on the CPU thread: directly from an MMIO callback,
or at the next safe point before emu_start) and unicorn takes that trap natively. The M-mode
timer and software interrupts (and MEIP for guests that enable MEIE but not SEIE) cannot be
set in mip, so `apply()` injects them by hand at a safe point through the trap unit; while
one is raised but masked, the kicker looks again every MASKED_POLL (see `TimerWatch`).
"""

from __future__ import annotations

import enum

from unicorn import riscv_const as R

from .clint import Clint
from .clock import GuestClock
from .cpu import Hart
from .kick import KickProtocol
from .plic import Plic
from .rvpriv import (
    IRQ_MEI,
    IRQ_MSI,
    IRQ_MTI,
    MIP_MEIP,
    MIP_MSIP,
    MIP_MTIP,
    MIP_SEIP,
    MSTATUS_MIE,
    PRIV_M,
)
from .state import RunControl
from .stats import Stats
from .traps import TrapUnit

#: while an interrupt the loop injects is raised but masked, look again this often
MASKED_POLL = 0.001


class TimerWatch(enum.Enum):
    """What the kicker waits for on the interrupt side."""

    DEADLINE = "deadline"    # the CLINT's mtimecmp deadline (if any)
    MASKED = "masked"        # an injected interrupt is raised but masked: poll
    RAISED = "raised"        # mtip is raised already: nothing until mtimecmp changes


class InterruptUnit:
    """PLIC/CLINT outputs into the hart; `plic_output` and `timer_changed` are the board's
    callbacks, `apply` and `wake_pending` the run loop's."""

    def __init__(self, hart: Hart, traps: TrapUnit, control: RunControl, kick: KickProtocol,
                 stats: Stats, plic: Plic, clint: Clint, clock: GuestClock) -> None:
        self._hart = hart
        self._traps = traps
        self._control = control
        self._kick = kick
        self._stats = stats
        self._plic = plic
        self._clint = clint
        self._clock = clock
        self._seip = False          # what we last wrote to mip.SEIP
        self.watch = TimerWatch.DEADLINE

    def reset(self) -> None:
        self._seip = False
        self.watch = TimerWatch.DEADLINE

    # ------------------------------------------------------------------------------------
    # device side (any thread)

    def plic_output(self, ctx: int, level: bool) -> None:
        if level:
            self._stats.irqs += 1
        control = self._control
        if control.on_cpu_thread():
            if control.in_guest:
                self._apply_seip_in_callback()
            return  # the CPU loop applies it before the next emu_start
        with control.lock:
            self._kick.request()

    def timer_changed(self) -> None:
        control = self._control
        with control.lock:
            self.watch = TimerWatch.DEADLINE
            if self._clint.msip or self._clint.mtip():
                # raised now (msip set, or mtimecmp already passed): the loop delivers it
                # at the next safe point, which only a kick brings while the guest runs
                self._kick.request()
                return
            deadline = self.timer_host_deadline()
            if (deadline is not None and deadline < control.kicker_wake) or not \
                    control.on_cpu_thread():
                # the kicker must wake earlier than it planned (a later deadline it finds
                # when it wakes: an idle Linux writes mtimecmp twice a tick)
                control.cond.notify_all()

    def timer_host_deadline(self) -> float | None:
        """Host time when the timer interrupt is due, if the guest waits for one."""
        if self.watch is not TimerWatch.DEADLINE:
            return None
        g = self._clint.timer_deadline()
        if g is None:
            return None
        return self._clock.host_deadline(g)

    def _apply_seip_in_callback(self) -> None:
        want = any(self._plic.output)
        if want == self._seip:
            return
        hart = self._hart
        if hart.priv != PRIV_M:
            with self._control.lock:
                self._kick.request()  # M-CSRs are not writable from here; let the loop do it
            return
        mip = hart.reg(R.UC_RISCV_REG_MIP)
        hart.set_reg(R.UC_RISCV_REG_MIP, mip | MIP_SEIP if want else mip & ~MIP_SEIP)
        self._seip = want
        if want and hart.reg(R.UC_RISCV_REG_MIE) & (MIP_MEIP | MIP_SEIP) == MIP_MEIP:
            # a guest that enabled only MEIE: unicorn cannot raise MEIP, the loop injects it
            with self._control.lock:
                self._kick.request()

    # ------------------------------------------------------------------------------------
    # CPU thread, at a safe point (not inside emu_start)

    def apply(self) -> None:
        """Mirror the PLIC into mip.SEIP and inject a pending M interrupt (moves hart.pc)."""
        hart, plic, clint = self._hart, self._plic, self._clint
        if not (self._seip or clint.msip or any(plic.output) or clint.mtip()):
            # nothing raised and SEIP low already: no CSR to read or write (this runs
            # before every emu_start; an idle Linux makes a dozen a timer tick)
            if self.watch is not TimerWatch.DEADLINE:
                with self._control.lock:
                    self.watch = TimerWatch.DEADLINE
            return
        priv = hart.enter_m()
        want = any(plic.output)
        mip = hart.reg(R.UC_RISCV_REG_MIP)
        if bool(mip & MIP_SEIP) != want:
            hart.set_reg(R.UC_RISCV_REG_MIP, mip | MIP_SEIP if want else mip & ~MIP_SEIP)
        self._seip = want
        mie = hart.reg(R.UC_RISCV_REG_MIE)
        mstatus = hart.reg(R.UC_RISCV_REG_MSTATUS)
        hart.restore_priv(priv)
        pending = 0
        if plic.output[0] and mie & MIP_MEIP and not mie & MIP_SEIP:
            pending |= MIP_MEIP
        if clint.msip and mie & MIP_MSIP:
            pending |= MIP_MSIP
        mtip = clint.mtip()
        if mtip and mie & MIP_MTIP:
            pending |= MIP_MTIP
        enabled = priv < PRIV_M or mstatus & MSTATUS_MIE
        meip_only = plic.output[0] and mie & (MIP_MEIP | MIP_SEIP) == MIP_MEIP
        raised = mtip or bool(clint.msip) or meip_only
        with self._control.lock:
            # a raised timer/software interrupt (or MEIP the loop injects) that the guest
            # masks now (mie or mstatus.MIE, which we cannot watch) is looked at again
            # every MASKED_POLL; a raised mtip has no deadline to wait for. Below M the
            # mask is mie's alone, which only M-mode code changes, and the hart gets
            # there through a trap the loop sees (this runs again then): no polling (an
            # idle Linux: OpenSBI clears MTIE until the next SBI set_timer, docs/idle.md)
            if raised and not (pending and enabled) and priv == PRIV_M:
                if self.watch is not TimerWatch.MASKED:
                    self.watch = TimerWatch.MASKED
                    self._control.cond.notify_all()  # the kicker starts polling
            elif mtip:
                self.watch = TimerWatch.RAISED
            else:
                self.watch = TimerWatch.DEADLINE
        if not pending or not enabled:
            return
        for bit, cause in ((MIP_MEIP, IRQ_MEI), (MIP_MSIP, IRQ_MSI), (MIP_MTIP, IRQ_MTI)):
            if pending & bit:
                if self._traps.deliver(cause, hart.pc, 0, interrupt=True):
                    hart.pc = hart.read_pc()
                return

    def wake_pending(self) -> bool:
        """Is an interrupt enabled in mie pending (wfi must not sleep)? Besides what the
        CLINT and PLIC raise, the bits software sets in mip itself (OpenSBI sets SSIP and
        STIP from M-mode code, and the guest may execute wfi with them pending while its
        own interrupts are off: unicorn's wfi halts regardless)."""
        hart = self._hart
        priv = hart.enter_m()
        mie = hart.reg(R.UC_RISCV_REG_MIE)
        mip = hart.reg(R.UC_RISCV_REG_MIP)
        hart.restore_priv(priv)
        clint = self._clint
        return bool((clint.mtip() and mie & MIP_MTIP) or (clint.msip and mie & MIP_MSIP)
                    or (any(self._plic.output) and mie & (MIP_SEIP | MIP_MEIP))
                    or mip & mie)
