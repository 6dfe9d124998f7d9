"""Sv39/Sv48/Sv57 page walks against hand-built page tables in RAM (e2kchar/machine/paging.py)
and the hart's translate() under paging."""

from __future__ import annotations

import pytest
from unicorn import riscv_const as R

from e2kchar.machine import Machine
from e2kchar.machine import layout as L
from e2kchar.machine.paging import (
    PTE_A,
    PTE_D,
    PTE_R,
    PTE_U,
    PTE_V,
    PTE_W,
    PTE_X,
    Access,
    walk,
)
from e2kchar.machine.ram import RamMemory

BASE = L.RAM_BASE
RWX = PTE_R | PTE_W | PTE_X


def pte(paddr: int, flags: int) -> int:
    return (paddr >> 12) << 10 | flags | PTE_V


class Tables:
    """Page tables built in a RAM buffer: one page per table, allocated upwards."""

    def __init__(self, ram: RamMemory, levels: int, at: int = BASE + 0x10_0000) -> None:
        self.ram, self.levels, self.next = ram, levels, at
        self.root = self.alloc()

    def alloc(self) -> int:
        page, self.next = self.next, self.next + 0x1000
        self.ram.write(page, bytes(4096))
        return page

    def satp(self) -> int:
        return {3: 8, 4: 9, 5: 10}[self.levels] << 60 | self.root >> 12

    def map(self, vaddr: int, paddr: int, flags: int, level: int = 0) -> int:
        """Map at `level` (0 = 4 KiB, 1 = 2 MiB superpage, ...); returns the leaf's address."""
        table = self.root
        for lvl in range(self.levels - 1, level, -1):
            slot = table + ((vaddr >> (12 + 9 * lvl)) & 0x1FF) * 8
            entry = self.ram.read_u64(slot)
            if not entry & PTE_V:
                nxt = self.alloc()
                self.ram.write_u64(slot, pte(nxt, 0))
                table = nxt
            else:
                table = (entry >> 10) << 12
        slot = table + ((vaddr >> (12 + 9 * level)) & 0x1FF) * 8
        self.ram.write_u64(slot, pte(paddr, flags))
        return slot


@pytest.fixture
def ram():
    r = RamMemory.anonymous(BASE, 8 << 20)
    yield r
    r.close()


@pytest.mark.parametrize("levels", [3, 4, 5])
def test_4k_pages_and_superpages(ram, levels):
    t = Tables(ram, levels)
    va = 0xFFFF_FFFF_C000_1234 if levels == 3 else (
        0xFFFF_8000_0000_1234 if levels == 4 else 0xFF00_0000_0000_1234)
    t.map(va & ~0xFFF, BASE + 0x20_0000, RWX | PTE_A | PTE_D)
    tr = walk(ram.read_u64, t.satp(), va, Access.LOAD, 1)
    assert tr is not None and tr.paddr == BASE + 0x20_0234 and tr.level == 0
    # a 2 MiB superpage: the low 21 bits come from the virtual address
    t.map(0x4000_0000, BASE + 0x40_0000, PTE_R | PTE_X | PTE_A, level=1)
    tr = walk(ram.read_u64, t.satp(), 0x4012_3456, Access.FETCH, 1)
    assert tr is not None and tr.paddr == BASE + 0x52_3456 and tr.level == 1
    assert not tr.writable
    assert walk(ram.read_u64, t.satp(), 0x4012_3456, Access.STORE, 1) is None  # not W
    # unmapped, and not canonical
    assert walk(ram.read_u64, t.satp(), 0x8000_0000, Access.LOAD, 1) is None
    bad = 1 << (12 + 9 * levels)      # above the top VA bit, not sign-extended
    assert walk(ram.read_u64, t.satp(), bad, Access.LOAD, 1) is None


def test_misaligned_superpage_and_reserved_encodings_fault(ram):
    t = Tables(ram, 3)
    t.map(0x4000_0000, BASE + 0x1000, PTE_R | PTE_A, level=1)        # PPN not 2 MiB aligned
    assert walk(ram.read_u64, t.satp(), 0x4000_0000, Access.LOAD, 1) is None
    t.map(0x5000_0000, BASE + 0x20_0000, PTE_W | PTE_A)              # W without R: reserved
    assert walk(ram.read_u64, t.satp(), 0x5000_0000, Access.LOAD, 1) is None
    slot = t.map(0x6000_0000, BASE + 0x20_0000, PTE_R | PTE_A)
    ram.write_u64(slot, ram.read_u64(slot) & ~PTE_V)                  # invalid entry
    assert walk(ram.read_u64, t.satp(), 0x6000_0000, Access.LOAD, 1) is None


def test_user_pages_sum_and_mxr(ram):
    t = Tables(ram, 3)
    t.map(0x1000, BASE + 0x20_0000, PTE_R | PTE_W | PTE_U | PTE_A | PTE_D)
    t.map(0x2000, BASE + 0x20_1000, PTE_X | PTE_U | PTE_A)
    t.map(0x3000, BASE + 0x20_2000, PTE_R | PTE_W | PTE_A | PTE_D)   # supervisor page
    s = t.satp()
    assert walk(ram.read_u64, s, 0x1000, Access.STORE, 0) is not None      # U on a U page
    assert walk(ram.read_u64, s, 0x3000, Access.LOAD, 0) is None           # U on an S page
    assert walk(ram.read_u64, s, 0x1000, Access.LOAD, 1) is None           # S, SUM off
    assert walk(ram.read_u64, s, 0x1000, Access.LOAD, 1, sum_=True) is not None
    assert walk(ram.read_u64, s, 0x2000, Access.FETCH, 1, sum_=True) is None  # never S-fetch U
    assert walk(ram.read_u64, s, 0x2000, Access.LOAD, 0) is None           # execute-only
    assert walk(ram.read_u64, s, 0x2000, Access.LOAD, 0, mxr=True) is not None


def test_accessed_and_dirty_bits(ram):
    t = Tables(ram, 3)
    slot = t.map(0x1000, BASE + 0x20_0000, PTE_R | PTE_W)
    # a look-up (no write64) leaves the entry alone
    assert walk(ram.read_u64, t.satp(), 0x1000, Access.STORE, 1) is not None
    assert ram.read_u64(slot) & (PTE_A | PTE_D) == 0
    # a fill sets A on a load (and keeps the page read-only until a store sets D) ...
    tr = walk(ram.read_u64, t.satp(), 0x1000, Access.LOAD, 1, write64=ram.write_u64)
    assert ram.read_u64(slot) & (PTE_A | PTE_D) == PTE_A and not tr.writable
    # ... and A and D on a store
    tr = walk(ram.read_u64, t.satp(), 0x1000, Access.STORE, 1, write64=ram.write_u64)
    assert ram.read_u64(slot) & (PTE_A | PTE_D) == PTE_A | PTE_D and tr.writable


def test_bare_satp_is_identity(ram):
    tr = walk(ram.read_u64, 0, 0x1234_5678, Access.STORE, 0)
    assert tr is not None and tr.paddr == 0x1234_5678


def test_hart_translate_follows_privilege_and_satp():
    with Machine(ram_size=8 << 20) as m:
        t = Tables(m.memory, 5)                      # Sv57, as Linux 6.1 picks on unicorn
        t.map(0xFFFF_FFFF_8000_0000, BASE, RWX | PTE_A | PTE_D, level=1)
        hart = m.cpu
        hart.set_reg(R.UC_RISCV_REG_SATP, t.satp())
        va = 0xFFFF_FFFF_8000_0ABC
        assert hart.translate(va, Access.FETCH) == va        # M-mode: no translation
        hart.set_priv(1)
        assert hart.translate(va, Access.FETCH) == BASE + 0xABC
        assert hart.translate(0x1000, Access.LOAD) is None
        assert hart.executable(va) and not hart.executable(0x1000)
        assert hart.executable(BASE, priv=3)                 # an M-mode vector: physical
        m.memory.write(BASE + 0xABC, (0x10500073).to_bytes(4, "little"))
        assert hart.fetch(va) == 0x10500073 and hart.after_wfi(va + 4)
        assert hart.priv == 1                                # look-ups leave the mode alone
