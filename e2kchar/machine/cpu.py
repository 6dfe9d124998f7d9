"""The hart: the unicorn RV64 CPU, its registers and CSRs, and memory as the hart sees it.

Everything that depends on how the guest addresses memory goes through `translate()`:
instruction fetch (trap reporting, retire, rdtime, wfi detection), the effective address of
a rolled-back access, the trap vector check. Today the harness runs M-mode firmware with an
identity map, so `translate()` returns its argument; paging (Sv39/48/57 walks of the
guest's page tables when satp.MODE is on and the hart is below M) belongs there.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from typing import Any

from unicorn import (
    UC_ARCH_RISCV,
    UC_MEM_FETCH,
    UC_MODE_RISCV64,
    UC_PROT_ALL,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
)
from unicorn import riscv_const as R
from unicorn.unicorn_py3.unicorn import Uc, UcError

from . import ucfast
from .errors import MachineError
from .ram import RamMemory
from .rvinsn import WFI, insn_length
from .rvpriv import PRIV_M, U64

log = logging.getLogger(__name__)

_PROT_RW = UC_PROT_READ | UC_PROT_WRITE
UNTIL = U64  # odd: never a PC, so emu_start runs until something stops it
TLB_MODES = ("virtual", "cpu")


def check_tlb(tlb: str) -> None:
    if tlb not in TLB_MODES:
        raise MachineError(f"tlb must be 'virtual' (fast, identity-mapped, M-mode) or "
                           f"'cpu' (honours satp/PMP), not {tlb!r}")


class Access(enum.Enum):
    FETCH = "fetch"
    LOAD = "load"
    STORE = "store"


class Hart:
    """One RV64 hart on unicorn. `power_on()` makes a fresh unicorn (at start and on every
    reset) and runs the installers other parts registered (MMIO windows, trap hooks).

    tlb: "virtual" (identity-mapped, M-mode, fast: see `_tlb_fill`) or "cpu" (unicorn's
    own MMU, honours satp/PMP)."""

    def __init__(self, ram: RamMemory, tlb: str) -> None:
        check_tlb(tlb)
        self.tlb = tlb
        self._ram = ram
        self._installers: list[Callable[[Uc], None]] = []
        self._code_pages: set[int] = set()
        self.uc: Uc  # made by power_on()
        #: where the next emu_start begins (the loop's copy of pc between emu_starts)
        self.pc = ram.base

    def on_power_on(self, install: Callable[[Uc], None]) -> None:
        """Run `install(uc)` on every new unicorn (before the next power_on())."""
        self._installers.append(install)

    def power_on(self, code_pages: Iterable[int]) -> Uc:
        """A new CPU in its reset state, RAM and the registered installers mapped."""
        uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        if self.tlb == "virtual":
            # pitfall 1: the CPU TLB sends every store through the notdirty slow path
            uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
            ucfast.hook_tlb_fill(uc, self._tlb_fill_raw, self._tlb_fill)
        uc.mem_map_ptr(self._ram.base, self._ram.size, UC_PROT_ALL, self._ram.host_address())
        self.uc = uc
        for install in self._installers:
            install(uc)
        # no UC_HOOK_MEM_UNMAPPED: its mere presence makes every RAM access 5x slower;
        # unmapped accesses end emu_start with an error and are turned into traps there
        self._code_pages = set(code_pages)
        return uc

    def boot(self, entry: int, a1: int, a2: int) -> None:
        """The boot protocol's registers: a0 = hart id 0, a1, a2, pc = entry."""
        uc = self.uc
        uc.reg_write(R.UC_RISCV_REG_A0, 0)
        uc.reg_write(R.UC_RISCV_REG_A1, a1)
        uc.reg_write(R.UC_RISCV_REG_A2, a2)
        self.pc = entry
        uc.reg_write(R.UC_RISCV_REG_PC, entry)

    def mark_code(self, pages: Iterable[int]) -> None:
        """Pages that hold code (executable in the identity TLB from the start)."""
        self._code_pages.update(pages)

    def flush(self) -> None:
        """Drop translated blocks (after new code was written into RAM)."""
        try:
            self.uc.ctl_flush_tb()
        except UcError:
            log.debug("TB/TLB flush failed", exc_info=True)

    def run(self) -> None:
        """Execute from `pc` until something stops the CPU (raises UcError)."""
        self.uc.emu_start(self.pc, UNTIL)

    def stop(self) -> None:
        """Make the running emu_start return (any thread)."""
        self.uc.emu_stop()

    # ------------------------------------------------------------------------------------
    # registers and CSRs (unicorn lets the host read M-mode CSRs only while the hart is in M)

    def read_pc(self) -> int:
        return int(self.uc.reg_read(R.UC_RISCV_REG_PC))

    def write_pc(self, pc: int) -> None:
        self.uc.reg_write(R.UC_RISCV_REG_PC, pc)

    def reg(self, reg: int) -> int:
        """Read a unicorn register (riscv_const.UC_RISCV_REG_*)."""
        return int(self.uc.reg_read(reg))

    def set_reg(self, reg: int, value: int) -> None:
        self.uc.reg_write(reg, value)

    @property
    def priv(self) -> int:
        return int(self.uc.reg_read(R.UC_RISCV_REG_PRIV))

    def set_priv(self, priv: int) -> None:
        self.uc.reg_write(R.UC_RISCV_REG_PRIV, priv)

    def enter_m(self) -> int:
        """Switch to M so every CSR can be read and written; returns the privilege to
        give back to `restore_priv()`."""
        priv = self.priv
        if priv != PRIV_M:
            self.uc.reg_write(R.UC_RISCV_REG_PRIV, PRIV_M)
        return priv

    def restore_priv(self, priv: int) -> None:
        if priv != PRIV_M:
            self.uc.reg_write(R.UC_RISCV_REG_PRIV, priv)

    def xreg(self, n: int) -> int:
        return 0 if n == 0 else int(self.uc.reg_read(R.UC_RISCV_REG_X0 + n))

    def set_xreg(self, n: int, value: int) -> None:
        if n:
            self.uc.reg_write(R.UC_RISCV_REG_X0 + n, value & U64)

    # ------------------------------------------------------------------------------------
    # memory as the hart sees it

    def translate(self, vaddr: int, access: Access) -> int | None:
        """Physical address of `vaddr` for `access`, None if it does not translate.
        Identity: the harness runs with translation off (M-mode or satp bare)."""
        return vaddr

    def fetch(self, vaddr: int) -> int | None:
        """The instruction at `vaddr` (16 or 32 bits), None outside RAM."""
        addr = self.translate(vaddr, Access.FETCH)
        ram = self._ram
        if addr is None or not ram.contains(addr, 2):
            return None
        lo = int.from_bytes(ram.read(addr, 2), "little")
        if insn_length(lo) == 2:
            return lo
        if not ram.contains(addr, 4):
            return None
        return int.from_bytes(ram.read(addr, 4), "little")

    def executable(self, vaddr: int) -> bool:
        """Can the hart fetch an instruction at `vaddr` (a trap vector)?"""
        addr = self.translate(vaddr, Access.FETCH)
        return addr is not None and self._ram.contains(addr, 2)

    def after_wfi(self, pc: int) -> bool:
        """Did the hart stop right after a wfi?"""
        return self.fetch(pc - 4) == WFI

    # ------------------------------------------------------------------------------------
    # the identity TLB ("virtual" mode)

    def _tlb_fill_raw(self, handle: Any, vaddr: int, access: int, entry_ptr: Any,
                      ud: Any) -> bool:
        # _tlb_fill inlined: this runs once per access when TLB indexes collide
        entry = entry_ptr.contents
        page = vaddr & ~0xFFF
        entry.paddr = vaddr
        if access == UC_MEM_FETCH:
            self._code_pages.add(page)
        entry.perms = UC_PROT_ALL if page in self._code_pages else _PROT_RW
        return True

    def _tlb_fill(self, uc: Any, vaddr: int, access: int, entry: Any, ud: Any) -> bool:
        # identity map (M-mode firmware); only code pages are executable, so plain stores
        # skip unicorn's notdirty slow path (pitfall 1)
        page = vaddr & ~0xFFF
        entry.paddr = vaddr
        if access == UC_MEM_FETCH:
            self._code_pages.add(page)
        entry.perms = UC_PROT_ALL if page in self._code_pages else _PROT_RW
        return True
