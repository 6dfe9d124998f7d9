"""RISC-V Sv39/Sv48/Sv57 page walks (privileged spec, "Virtual-Memory System"), for the
harness's own look-ups under paging: the instruction at a trap's epc, the effective address
of a rolled-back MMIO access, the wfi check, trap vectors, and the identity TLB's fills once
a guest turns paging on.

The walk reads page-table entries through a callback (RAM only: a table outside RAM is an
access fault to the hart, a failed translation here). A/D bits: unicorn's own MMU sets them
as QEMU does (hardware update); a walk asked to `set_ad` does the same, otherwise it leaves
memory alone, since the hart already made the access the harness is looking up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D = (1 << i for i in range(8))
PAGE_SHIFT = 12
#: satp.MODE -> levels of the walk
MODE_LEVELS = {8: 3, 9: 4, 10: 5}
MODE_NAMES = {0: "Bare", 8: "Sv39", 9: "Sv48", 10: "Sv57"}
_PPN_MASK = (1 << 44) - 1


class Access(enum.Enum):
    FETCH = "fetch"
    LOAD = "load"
    STORE = "store"


class Translation(NamedTuple):
    """A successful walk: the physical address and what the leaf allows the access's
    privilege (readable/writable/executable, with D already set or not)."""

    paddr: int
    readable: bool
    writable: bool
    executable: bool
    level: int          # 0 = 4 KiB page, 1 = 2 MiB, 2 = 1 GiB, ...


def satp_mode(satp: int) -> int:
    return satp >> 60


def walk(read64: Callable[[int], int | None], satp: int, vaddr: int, access: Access,
         priv: int, *, sum_: bool = False, mxr: bool = False,
         write64: Callable[[int, int], None] | None = None) -> Translation | None:
    """Translate `vaddr` for `access` at privilege `priv` (0 = U, 1 = S) under `satp`;
    None is a page fault. With `write64`, A (and D for a store) are set in the leaf."""
    mode = satp_mode(satp)
    if mode == 0:
        return Translation(vaddr, True, True, True, 0)
    levels = MODE_LEVELS.get(mode)
    if levels is None:
        return None
    va_bits = PAGE_SHIFT + 9 * levels
    upper = vaddr >> (va_bits - 1)
    if upper not in (0, (1 << (64 - va_bits + 1)) - 1):
        return None  # not canonical: bits above the VA size must copy its top bit
    table = (satp & _PPN_MASK) << PAGE_SHIFT
    for level in range(levels - 1, -1, -1):
        pte_addr = table + ((vaddr >> (PAGE_SHIFT + 9 * level)) & 0x1FF) * 8
        pte = read64(pte_addr)
        if pte is None or not pte & PTE_V or (pte & PTE_W and not pte & PTE_R):
            return None
        ppn = (pte >> 10) & _PPN_MASK
        if not pte & (PTE_R | PTE_X):
            table = ppn << PAGE_SHIFT  # a pointer to the next level
            continue
        span = 1 << (9 * level)
        if ppn & (span - 1):
            return None  # misaligned superpage
        user = bool(pte & PTE_U)
        if priv == 0 and not user:
            return None
        if priv == 1 and user and (access is Access.FETCH or not sum_):
            return None
        readable = bool(pte & PTE_R or (mxr and pte & PTE_X))
        writable = bool(pte & PTE_W)
        executable = bool(pte & PTE_X)
        if ((access is Access.FETCH and not executable)
                or (access is Access.LOAD and not readable)
                or (access is Access.STORE and not writable)):
            return None
        if write64 is not None:
            new = pte | PTE_A | (PTE_D if access is Access.STORE else 0)
            if new != pte:
                write64(pte_addr, new)
            pte = new
        if not pte & PTE_D:
            writable = False  # a later store must come back here to set D
        offset = vaddr & ((span << PAGE_SHIFT) - 1)
        paddr = (ppn & ~(span - 1)) << PAGE_SHIFT | offset
        return Translation(paddr, readable, writable, executable, level)
    return None
