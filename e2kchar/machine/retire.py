"""Retiring an MMIO access that a stop rolled back (the kick protocol's other half).

unicorn rolls back an instruction whose MMIO access completed before emu_stop took
effect. The run loop then completes it by hand: decode the instruction at pc, check it is
the recorded access, write rd with the recorded value (loads), do the half of a split
64-bit access that had not happened yet, and step pc.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .board import Region
from .cpu import Access, Hart
from .kick import Access as Recorded
from .rvinsn import decode_mem, sign_extend
from .rvpriv import U64
from .stats import Stats

log = logging.getLogger(__name__)


class Retirer:
    """Completes rolled-back accesses on the hart, through the board's map."""

    def __init__(self, hart: Hart, region_at: Callable[[int], Region | None],
                 stats: Stats) -> None:
        self._hart = hart
        self._region_at = region_at
        self._stats = stats

    def retire(self, pc: int, taken: Sequence[Recorded], prev: Recorded | None = None) -> int:
        """Retire the instruction at `pc` whose accesses `taken` were recorded (`prev`: the
        4-byte access before them, maybe the first half of the same 64-bit access). Returns
        the pc after it, or `pc` itself when the instruction does not match (it is then
        executed again, and the failure counted and logged)."""
        hart = self._hart
        insn = hart.fetch(pc)
        m = decode_mem(insn) if insn is not None else None
        ea = None
        if m is not None:
            ea = hart.translate((hart.xreg(m.base) + m.imm) & U64,
                                Access.STORE if m.store else Access.LOAD)
        pending = list(taken)
        if (m is not None and m.width == 8 and ea is not None and pending[0][1] == ea + 4
                and prev is not None and prev[:3] == (pending[0][0], ea, 4)):
            pending = [prev, *pending]
        kind, addr, size, _ = pending[0]
        if m is None or ea != addr or m.store != (kind == "w"):
            self._stats.retire_failures += 1
            log.error("cannot retire the stopped access (%s %d bytes at %#x) at pc %#x; "
                      "it will be repeated", kind, size, addr, pc)
            return pc
        done = 0
        value = 0
        for k, a, s, v in pending:
            if k != kind or a != addr + done:
                break
            value |= v << (8 * done)
            done += s
        # the rest of a split access (64-bit MMIO arrives as two halves) is done now
        while done < m.width:
            part = min(4, m.width - done)
            region = self._region_at(addr + done)
            if region is None:
                break
            try:
                if m.store:
                    data = (hart.xreg(m.reg) >> (8 * done)) & ((1 << (8 * part)) - 1)
                    region.device.write(addr + done - region.base, part, data)
                    self._stats.mmio_writes += 1
                else:
                    v = int(region.device.read(addr + done - region.base, part))
                    self._stats.mmio_reads += 1
                    value |= (v & ((1 << (8 * part)) - 1)) << (8 * done)
            except Exception:
                log.exception("%s: access at +%#x failed", region.name, addr + done - region.base)
            done += part
        if not m.store:
            value &= (1 << (8 * m.width)) - 1
            hart.set_xreg(m.reg, sign_extend(value, m.width) if m.signed else value)
        self._stats.retired += 1
        return pc + m.length
