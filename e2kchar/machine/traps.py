"""Trap delivery: guest exceptions unicorn reports (or ends emu_start with) become traps to
mtvec/stvec as the privileged spec says; `rdtime` is emulated from the CLINT's mtime.

When no handler is installed or the handler cannot recover (the same trap repeating), the
run ends with a report (`report`). Each pc write from a hook ends that emu_start: a later
stop in the same emu_start would not be precise (see `_after_pc_write`). An emulated
`rdtime` ends its emu_start too (docs/idle.md, "An idle Linux").
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from unicorn import (
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_INSN_INVALID,
)
from unicorn import riscv_const as R
from unicorn.unicorn_py3.unicorn import Uc, UcError

from . import ucfast
from .cpu import Access, Hart
from .result import RunResult
from .rvinsn import decode_amo_base, decode_mem, decode_rdtime, insn_length, is_amo_store
from .rvpriv import (
    C_EBREAK,
    CAUSE_BREAKPOINT,
    CAUSE_ECALL_M,
    CAUSE_ECALL_S,
    CAUSE_ECALL_U,
    CAUSE_FETCH_PAGE,
    CAUSE_ILLEGAL,
    CAUSE_INSN_ACCESS,
    CAUSE_LOAD_ACCESS,
    CAUSE_LOAD_MISALIGNED,
    CAUSE_LOAD_PAGE,
    CAUSE_NAMES,
    CAUSE_STORE_ACCESS,
    CAUSE_STORE_MISALIGNED,
    CAUSE_STORE_PAGE,
    EBREAK,
    INTERRUPT_NAMES,
    MSTATUS_MIE,
    MSTATUS_MPIE,
    MSTATUS_MPP,
    MSTATUS_SIE,
    MSTATUS_SPIE,
    MSTATUS_SPP,
    PRIV_M,
    PRIV_S,
    PRIV_U,
    U64,
)
from .state import RunControl
from .stats import Stats

log = logging.getLogger(__name__)

TRAP_STORM = 20_000       # the same fault at the same pc this many times in a row
VECTOR_STORM = 64          # the trap handler itself trapping this many times in a row
_PAGE_FAULT = {Access.FETCH: CAUSE_FETCH_PAGE, Access.LOAD: CAUSE_LOAD_PAGE,
               Access.STORE: CAUSE_STORE_PAGE}
_ECALL_CAUSE = {PRIV_U: CAUSE_ECALL_U, PRIV_S: CAUSE_ECALL_S, PRIV_M: CAUSE_ECALL_M}


class HookStop(enum.Enum):
    """What the hooks did to pc during one emu_start."""

    NONE = "none"              # nothing: pc is where unicorn stopped
    PC_WRITE = "pc-write"      # a hook moved pc (a trap, an emulated rdtime) and stopped
    INSN_TRAP = "insn-trap"    # the invalid-instruction hook delivered a trap


class TrapUnit:
    """Delivers traps on the hart; `install` registers its unicorn hooks."""

    def __init__(self, hart: Hart, control: RunControl, stats: Stats,
                 mtime: Callable[[], int]) -> None:
        self._hart = hart
        self._control = control
        self._stats = stats
        self._mtime = mtime
        #: a trap that ends the run (set on the CPU thread)
        self.report: RunResult | None = None
        self.hook_stop = HookStop.NONE
        self._last_trap: tuple[int, int] = (0, -1)
        self._trap_repeat = 0

    def install(self, uc: Uc) -> None:
        ucfast.hook_intr(uc, self._on_intr_raw)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_insn_invalid)

    def reset(self) -> None:
        self.report = None
        self._trap_repeat = 0
        self._last_trap = (0, -1)

    def begin(self) -> None:
        """Before each emu_start."""
        self.hook_stop = HookStop.NONE

    # ------------------------------------------------------------------------------------

    def deliver(self, cause: int, epc: int, tval: int, interrupt: bool = False) -> bool:
        """Take a trap as the privileged spec says (M, or S when delegated). False when no
        handler is installed or it does not recover: the run then ends with `report`."""
        hart = self._hart
        priv = hart.enter_m()
        deleg = hart.reg(R.UC_RISCV_REG_MIDELEG if interrupt else R.UC_RISCV_REG_MEDELEG)
        mstatus = hart.reg(R.UC_RISCV_REG_MSTATUS)
        code = (1 << 63 | cause) if interrupt else cause
        if priv <= PRIV_S and deleg >> cause & 1:
            tvec = hart.reg(R.UC_RISCV_REG_STVEC)
            hart.set_reg(R.UC_RISCV_REG_SEPC, epc)
            hart.set_reg(R.UC_RISCV_REG_SCAUSE, code)
            hart.set_reg(R.UC_RISCV_REG_STVAL, tval)
            spie = MSTATUS_SPIE if mstatus & MSTATUS_SIE else 0
            mstatus = (mstatus & ~(MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)) | spie
            mstatus |= MSTATUS_SPP if priv == PRIV_S else 0
            new_priv, mode_name = PRIV_S, "stvec"
        else:
            tvec = hart.reg(R.UC_RISCV_REG_MTVEC)
            hart.set_reg(R.UC_RISCV_REG_MEPC, epc)
            hart.set_reg(R.UC_RISCV_REG_MCAUSE, code)
            hart.set_reg(R.UC_RISCV_REG_MTVAL, tval)
            mpie = MSTATUS_MPIE if mstatus & MSTATUS_MIE else 0
            mstatus = (mstatus & ~(MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP)) | mpie | priv << 11
            new_priv, mode_name = PRIV_M, "mtvec"
        vec = tvec & ~3
        if interrupt and tvec & 3 == 1:
            vec += 4 * cause
        what = (INTERRUPT_NAMES.get(cause, f"interrupt {cause}") if interrupt
                else CAUSE_NAMES.get(cause, f"cause {cause}"))
        if vec == 0 or not hart.executable(vec, new_priv):
            hart.restore_priv(priv)
            self.report = RunResult(
                "trap", 1, epc, code, tval,
                f"{what} at pc {epc:#x} (tval {tval:#x}) with no trap handler "
                f"({mode_name} = {tvec:#x})")
            return False
        key = (epc, code)
        self._trap_repeat = self._trap_repeat + 1 if key == self._last_trap else 0
        self._last_trap = key
        if ((self._trap_repeat >= TRAP_STORM and (interrupt or cause not in _ECALL_CAUSE.values()))
                or (epc == vec and self._trap_repeat >= VECTOR_STORM)):
            hart.restore_priv(priv)
            self.report = RunResult(
                "trap", 1, epc, code, tval,
                f"trap storm: {what} at pc {epc:#x} (tval {tval:#x}) repeated "
                f"{self._trap_repeat} times; the handler at {vec:#x} does not recover")
            return False
        hart.set_reg(R.UC_RISCV_REG_MSTATUS, mstatus)
        hart.set_priv(new_priv)
        hart.write_pc(vec)
        self._stats.traps += 1
        self._after_pc_write()
        return True

    def after_error(self, err: UcError, pc: int) -> int:
        """emu_start ended with `err` at `pc`: deliver the trap it stands for; returns the
        pc to resume at (the vector, or `pc` when the run ends with `report`)."""
        if self.report is not None:
            return pc
        if self.hook_stop is HookStop.INSN_TRAP:
            return pc  # the hook already moved pc to the trap vector
        hart = self._hart
        if hart.page_fault is not None:
            # the identity TLB's walk refused a fill (paging just turned on): pc is the
            # faulting load/store, or the fetch that faulted
            _page, access = hart.page_fault
            hart.page_fault = None
            cause = _PAGE_FAULT[access]
            if self.deliver(cause, pc, self._page_fault_tval(cause, pc)):
                return hart.read_pc()
            return pc
        if err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED):
            # pc is the faulting load/store; its registers give the address
            cause = CAUSE_LOAD_ACCESS if err.errno == UC_ERR_READ_UNMAPPED else CAUSE_STORE_ACCESS
            if self.deliver(cause, pc, self._mem_tval(pc)):
                return hart.read_pc()
            return pc
        if err.errno in (UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED):
            # a jump into a device window: instruction access fault, mepc = mtval = target
            if self.deliver(CAUSE_INSN_ACCESS, pc, pc):
                return hart.read_pc()
            return pc
        if hart.fetch(pc) in (EBREAK, C_EBREAK):
            if self.deliver(CAUSE_BREAKPOINT, pc, pc):
                return hart.read_pc()
            return pc
        self.report = RunResult("trap", 1, pc, None, None, f"CPU error at pc {pc:#x}: {err}")
        return pc

    # ------------------------------------------------------------------------------------
    # hooks (CPU thread, inside emu_start)

    def _after_pc_write(self) -> None:
        """A hook moved pc (a delivered trap, an emulated rdtime). After that, unicorn no
        longer stops precisely at an MMIO access for the rest of the emu_start: pc comes
        back at a block start before or after the access (measured with both TLB modes:
        the access is then repeated, or a later iteration is "retired" with a stale value).
        So end emu_start here; the loop resumes at the new pc (one emu_start per trap)."""
        if self._control.in_guest:
            if self.hook_stop is HookStop.NONE:
                self.hook_stop = HookStop.PC_WRITE
            self._hart.stop()

    def _fail_stop(self) -> None:
        if self._control.in_guest:
            self._hart.stop()

    def _mem_tval(self, epc: int) -> int:
        insn = self._hart.fetch(epc)
        m = decode_mem(insn) if insn is not None else None
        if m is None:
            return 0
        return (self._hart.xreg(m.base) + m.imm) & U64

    def _page_fault_tval(self, cause: int, epc: int) -> int:
        """stval of a page fault (unicorn's hook does not pass it): the load/store/AMO's
        effective address, decoded from the instruction; for a fetch, epc, or the next
        page when a 4-byte instruction starting 2 bytes before it crosses into it."""
        hart = self._hart
        if cause == CAUSE_FETCH_PAGE:
            if epc & 0xFFF == 0xFFE and hart.translate(epc, Access.FETCH) is not None:
                lo = hart.read_halfword(epc)
                if lo is not None and insn_length(lo) == 4:
                    return (epc + 2) & U64
            return epc
        insn = hart.fetch(epc)
        if insn is None:
            return 0
        m = decode_mem(insn)
        if m is not None:
            return (hart.xreg(m.base) + m.imm) & U64
        base = decode_amo_base(insn)
        return hart.xreg(base) if base is not None else 0

    def _on_intr_raw(self, handle: Any, intno: int, ud: Any) -> None:
        try:
            self._on_intr(intno)
        except Exception:  # never raise into unicorn
            log.exception("trap %d: delivery failed", intno)
            self.report = RunResult("trap", 1, self._hart.pc, intno, None,
                                    f"internal error delivering trap {intno}")
            self._fail_stop()

    def _on_intr(self, intno: int) -> None:
        hart = self._hart
        # unicorn has already advanced pc by 4, even for compressed instructions (pitfall 5)
        epc = (hart.read_pc() - 4) & U64
        priv = hart.priv
        cause = intno
        tval = 0
        if intno == CAUSE_ECALL_U:
            cause = _ECALL_CAUSE.get(priv, CAUSE_ECALL_U)
        elif intno == CAUSE_ILLEGAL:
            insn = hart.fetch(epc)
            if insn is not None:
                tval = insn
                rd = decode_rdtime(insn)
                if rd is not None and self._time_allowed(priv):
                    # unicorn has moved pc past it already (a 4-byte instruction), but the
                    # emu_start must still end here: letting it go on stalled Linux boots
                    # (docs/idle.md, "An idle Linux"), so pc is written and the loop runs
                    hart.set_xreg(rd, self._mtime())
                    self._stats.rdtimes += 1
                    hart.write_pc(epc + 4)
                    self._after_pc_write()
                    return
        elif intno in (CAUSE_LOAD_MISALIGNED, CAUSE_LOAD_ACCESS, CAUSE_STORE_MISALIGNED,
                       CAUSE_STORE_ACCESS):
            tval = self._mem_tval(epc)
        elif intno == CAUSE_INSN_ACCESS:
            tval = epc
        elif intno in (CAUSE_FETCH_PAGE, CAUSE_LOAD_PAGE, CAUSE_STORE_PAGE):
            if intno == CAUSE_LOAD_PAGE:
                insn = hart.fetch(epc)
                if insn is not None and is_amo_store(insn):
                    cause = CAUSE_STORE_PAGE  # unicorn reports an AMO's fault as a load's
            tval = self._page_fault_tval(intno, epc)
        if not self.deliver(cause, epc, tval):
            self._fail_stop()

    def _time_allowed(self, priv: int) -> bool:
        if priv == PRIV_M:
            return True
        hart = self._hart
        p = hart.enter_m()
        ok = bool(hart.reg(R.UC_RISCV_REG_MCOUNTEREN) & 2)
        if ok and priv == PRIV_U:
            ok = bool(hart.reg(R.UC_RISCV_REG_SCOUNTEREN) & 2)
        hart.restore_priv(p)
        return ok

    def _on_insn_invalid(self, uc: Uc, ud: Any) -> bool:
        hart = self._hart
        pc = hart.read_pc()
        insn = hart.fetch(pc)
        if insn in (EBREAK, C_EBREAK):
            taken = self.deliver(CAUSE_BREAKPOINT, pc, pc)
        else:
            taken = self.deliver(CAUSE_ILLEGAL, pc, insn or 0)
        if taken:
            self.hook_stop = HookStop.INSN_TRAP
        else:
            if self.hook_stop is HookStop.INSN_TRAP:
                self.hook_stop = HookStop.PC_WRITE
            self._fail_stop()
        return True
