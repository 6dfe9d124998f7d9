"""The hart: the unicorn RV64 CPU, its registers and CSRs, and memory as the hart sees it.

Everything that depends on how the guest addresses memory goes through `translate()`:
instruction fetch (trap reporting, retire, rdtime, wfi detection), the effective address of
a rolled-back access, the trap vector check. In M-mode, or with satp Bare, that is the
identity; below M with satp.MODE on it is an Sv39/48/57 walk of the guest's tables
(paging.py).

TLB: M-mode firmware runs on the identity TLB ("virtual" mode, fast stores, pitfall 1 of
docs/embedding.md). Its fill hook notices the first S/U-mode fill with paging on, answers
it with a walk of its own and switches to unicorn's own MMU (a pointer swap in unicorn),
which then does page walks, A/D updates, MPRV/SUM/MXR and page faults itself for the rest
of the run (until the next power_on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from unicorn import (
    UC_ARCH_RISCV,
    UC_MEM_FETCH,
    UC_MEM_WRITE,
    UC_MODE_RISCV64,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_CPU,
    UC_TLB_VIRTUAL,
)
from unicorn import riscv_const as R
from unicorn.unicorn_py3.unicorn import Uc, UcError

from . import ucfast
from .errors import MachineError
from .paging import Access as Access  # re-exported: retire.py and traps.py use it
from .paging import Translation, satp_mode, walk
from .ram import RamMemory
from .rvinsn import WFI, insn_length
from .rvpriv import MSTATUS_MPP, PRIV_M, U64

log = logging.getLogger(__name__)

_PROT_RW = UC_PROT_READ | UC_PROT_WRITE
UNTIL = U64  # odd: never a PC, so emu_start runs until something stops it
TLB_MODES = ("virtual", "cpu")


def check_tlb(tlb: str) -> None:
    if tlb not in TLB_MODES:
        raise MachineError(f"tlb must be 'virtual' (fast, identity-mapped, M-mode) or "
                           f"'cpu' (honours satp/PMP), not {tlb!r}")


MSTATUS_MPRV, MSTATUS_SUM, MSTATUS_MXR = 1 << 17, 1 << 18, 1 << 19
_FILL_ACCESS = {UC_MEM_FETCH: Access.FETCH}
_STORE_ACCESS = (UC_MEM_WRITE,)


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
        #: register read/write of that unicorn (ucfast.reg_access)
        self._rd: Callable[[int], int]
        self._wr: Callable[[int, int], None]
        #: where the next emu_start begins (the loop's copy of pc between emu_starts)
        self.pc = ram.base
        #: the TLB in use now: "virtual" until a guest turns paging on, then "cpu"
        self.tlb_now = tlb
        #: instruction bytes through unicorn's MMU (ucfast.vmem_reader), once it is in use
        self._vfetch: Callable[[int, int], bytes | None] | None = None
        #: (page-aligned vaddr, access) of a fill the identity TLB refused (a page fault)
        self.page_fault: tuple[int, Access] | None = None

    def on_power_on(self, install: Callable[[Uc], None]) -> None:
        """Run `install(uc)` on every new unicorn (before the next power_on())."""
        self._installers.append(install)

    def power_on(self, code_pages: Iterable[int]) -> Uc:
        """A new CPU in its reset state, RAM and the registered installers mapped."""
        uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        self.tlb_now = self.tlb
        self.page_fault = None
        if self.tlb == "virtual":
            # pitfall 1: the CPU TLB sends every store through the notdirty slow path
            uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
            ucfast.hook_tlb_fill(uc, self._tlb_fill_raw, self._tlb_fill)
        uc.mem_map_ptr(self._ram.base, self._ram.size, UC_PROT_ALL, self._ram.host_address())
        self.uc = uc
        self._rd, self._wr = ucfast.reg_access(uc)
        self._vfetch = ucfast.vmem_reader(uc)
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
        return self._rd(R.UC_RISCV_REG_PC)

    def write_pc(self, pc: int) -> None:
        self._wr(R.UC_RISCV_REG_PC, pc)

    def reg(self, reg: int) -> int:
        """Read a unicorn register (riscv_const.UC_RISCV_REG_*)."""
        return self._rd(reg)

    def set_reg(self, reg: int, value: int) -> None:
        self._wr(reg, value)

    @property
    def priv(self) -> int:
        return self._rd(R.UC_RISCV_REG_PRIV)

    def set_priv(self, priv: int) -> None:
        self._wr(R.UC_RISCV_REG_PRIV, priv)

    def enter_m(self) -> int:
        """Switch to M so every CSR can be read and written; returns the privilege to
        give back to `restore_priv()`."""
        priv = self.priv
        if priv != PRIV_M:
            self._wr(R.UC_RISCV_REG_PRIV, PRIV_M)
        return priv

    def restore_priv(self, priv: int) -> None:
        if priv != PRIV_M:
            self._wr(R.UC_RISCV_REG_PRIV, priv)

    def xreg(self, n: int) -> int:
        return 0 if n == 0 else self._rd(R.UC_RISCV_REG_X0 + n)

    def set_xreg(self, n: int, value: int) -> None:
        if n:
            self._wr(R.UC_RISCV_REG_X0 + n, value & U64)

    # ------------------------------------------------------------------------------------
    # memory as the hart sees it

    def translate(self, vaddr: int, access: Access, priv: int | None = None) -> int | None:
        """Physical address of `vaddr` for `access` as the hart sees it now (privilege,
        satp, MPRV/SUM/MXR; `priv` overrides the privilege), None if it does not translate
        (a page fault)."""
        t = self._walk(vaddr & U64, access, set_ad=False, priv=priv)
        return None if t is None else t.paddr

    def _walk(self, vaddr: int, access: Access, set_ad: bool,
              priv: int | None = None) -> Translation | None:
        eff, satp, mstatus = self._mmu_state(access)
        if priv is not None:
            eff = priv
        if eff == PRIV_M or satp_mode(satp) == 0:
            return Translation(vaddr, True, True, True, 0)
        return walk(self._ram.read_u64, satp, vaddr, access, eff,
                    sum_=bool(mstatus & MSTATUS_SUM), mxr=bool(mstatus & MSTATUS_MXR),
                    write64=self._ram.write_u64 if set_ad else None)

    def _mmu_state(self, access: Access) -> tuple[int, int, int]:
        """(effective privilege of `access`, satp, mstatus)."""
        rd, wr = self._rd, self._wr
        priv = rd(R.UC_RISCV_REG_PRIV)
        if priv != PRIV_M:
            wr(R.UC_RISCV_REG_PRIV, PRIV_M)
        try:
            mstatus = rd(R.UC_RISCV_REG_MSTATUS)
            satp = rd(R.UC_RISCV_REG_SATP)
        finally:
            if priv != PRIV_M:
                wr(R.UC_RISCV_REG_PRIV, priv)
        eff = priv
        if priv == PRIV_M and access is not Access.FETCH and mstatus & MSTATUS_MPRV:
            eff = (mstatus & MSTATUS_MPP) >> 11
        return eff, satp, mstatus

    def paging_on(self) -> bool:
        """Is the hart translating addresses now (below M with satp.MODE on)?"""
        priv = self.enter_m()
        try:
            return priv != PRIV_M and satp_mode(self.reg(R.UC_RISCV_REG_SATP)) != 0
        finally:
            self.restore_priv(priv)

    def fetch(self, vaddr: int) -> int | None:
        """The instruction at `vaddr` (16 or 32 bits), None outside RAM."""
        vfetch = self._vfetch
        if vfetch is not None and self.tlb_now == "cpu":
            # unicorn's MMU walks (in C) as the hart fetches: a trap report, an emulated
            # rdtime and the wfi check after each emu_start need no walk in Python
            return self._fetch_mmu(vfetch, vaddr & U64)
        addr = self.translate(vaddr, Access.FETCH)
        ram = self._ram
        if addr is None or not ram.contains(addr, 2):
            return None
        lo = int.from_bytes(ram.read(addr, 2), "little")
        if insn_length(lo) == 2:
            return lo
        if (vaddr & 0xFFF) == 0xFFE:  # the upper half is on the next page
            hi = self.read_halfword(vaddr + 2)
            return None if hi is None else lo | hi << 16
        if not ram.contains(addr, 4):
            return None
        return int.from_bytes(ram.read(addr, 4), "little")

    @staticmethod
    def _fetch_mmu(vfetch: Callable[[int, int], bytes | None], vaddr: int) -> int | None:
        lo_b = vfetch(vaddr, 2)
        if lo_b is None:
            return None
        lo = int.from_bytes(lo_b, "little")
        if insn_length(lo) == 2:
            return lo
        hi_b = vfetch((vaddr + 2) & U64, 2)  # maybe on the next page
        return None if hi_b is None else lo | int.from_bytes(hi_b, "little") << 16

    def read_halfword(self, vaddr: int) -> int | None:
        """The 16 bits at `vaddr` as a fetch sees them, None if they do not translate."""
        addr = self.translate(vaddr, Access.FETCH)
        if addr is None or not self._ram.contains(addr, 2):
            return None
        return int.from_bytes(self._ram.read(addr, 2), "little")

    def executable(self, vaddr: int, priv: int | None = None) -> bool:
        """Can the hart fetch an instruction at `vaddr` (a trap vector), at privilege
        `priv` (default: the current one; a vector is fetched in the trap's target mode)?"""
        addr = self.translate(vaddr, Access.FETCH, priv)
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
        if self._rd(R.UC_RISCV_REG_PRIV) != PRIV_M and self._paged_fill(
                vaddr, access, entry):
            return self.page_fault is None
        page = vaddr & ~0xFFF
        entry.paddr = vaddr
        if access == UC_MEM_FETCH:
            self._code_pages.add(page)
        entry.perms = UC_PROT_ALL if page in self._code_pages else _PROT_RW
        return True

    def _tlb_fill(self, uc: Any, vaddr: int, access: int, entry: Any, ud: Any) -> bool:
        # identity map (M-mode firmware); only code pages are executable, so plain stores
        # skip unicorn's notdirty slow path (pitfall 1)
        if uc.reg_read(R.UC_RISCV_REG_PRIV) != PRIV_M and self._paged_fill(vaddr, access, entry):
            return self.page_fault is None
        page = vaddr & ~0xFFF
        entry.paddr = vaddr
        if access == UC_MEM_FETCH:
            self._code_pages.add(page)
        entry.perms = UC_PROT_ALL if page in self._code_pages else _PROT_RW
        return True

    def _paged_fill(self, vaddr: int, access: int, entry: Any) -> bool:
        """An S/U-mode fill with paging on: switch to unicorn's MMU for the fills after it
        and answer this one with a walk (setting A/D as the hardware does); False if paging
        is off (the identity map then)."""
        acc = _FILL_ACCESS.get(access)
        if acc is None:
            acc = Access.STORE if access in _STORE_ACCESS else Access.LOAD
        try:
            eff, satp, mstatus = self._mmu_state(acc)
            if eff == PRIV_M or satp_mode(satp) == 0:
                return False
            if self.tlb_now != "cpu":
                # unicorn's MMU from the next fill on (a pointer swap in unicorn, safe in a
                # hook): its page faults are precise, a refused fill here is not
                self.tlb_now = "cpu"
                self.uc.ctl_set_tlb_mode(UC_TLB_CPU)
            t = walk(self._ram.read_u64, satp, vaddr, acc, eff,
                     sum_=bool(mstatus & MSTATUS_SUM), mxr=bool(mstatus & MSTATUS_MXR),
                     write64=self._ram.write_u64)
        except Exception:  # never raise into unicorn
            log.exception("page walk at %#x failed", vaddr)
            t = None
        if t is None:
            self.page_fault = (vaddr, acc)
            return True
        self.page_fault = None
        entry.paddr = t.paddr & ~0xFFF
        entry.perms = ((UC_PROT_READ if t.readable else 0) | (UC_PROT_WRITE if t.writable else 0)
                       | (UC_PROT_EXEC if t.executable else 0))
        return True
