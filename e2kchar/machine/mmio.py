"""MMIO dispatch: the unicorn callbacks for every device window, made from one template.

These callbacks run for every guest MMIO access, so they are tuned (BENCHMARKS.md, "Second
round"): registered with unicorn directly (ucfast, with its own ctypes types: no user_data,
the engine handle a byte, so no int is made per access for either), everything they need
bound in closure cells, value masks from a table, the kick record kept only for 4-byte
accesses (the halves of a split 64-bit access that retire.py may have to complete), slotted
counters. What one frame per access (the device's fast path inside the callback) would
save, and what it would cost the layering, is measured in BENCHMARKS.md.

Every window is dispatched through one table, offset -> (device read, device write, offset
within the device), a list indexed by offset (an index costs a fraction of a dict lookup);
an offset beyond it or None in it asks `resolve()`. The read and write are the register's own accessors when the device offers
them (`misc.device_op`): the 16550's LSR and THR, the Am85C30's RR0 and data, the LMS busy
poll and data port are then one Python frame below this callback. A window in front of other devices (the I/O ports, the Am85C30's PCI BAR: a
misc.DispatchingWindow) publishes its own table, so the callback calls the device behind
it directly; any other device gets an entry per offset as the offset is first used. A
device must return an int (the `& mask` turns anything else into a logged error and a 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from unicorn.unicorn_py3.unicorn import Uc

from . import ucfast
from .board import Region
from .kick import KickProtocol
from .misc import Device, DispatchingWindow, Op, device_op, remember_op
from .stats import Stats

log = logging.getLogger(__name__)

#: value mask per access size (unicorn's MMIO callbacks see 1, 2, 4 and 8 bytes)
_SIZE_MASKS = tuple((1 << (8 * n)) - 1 for n in range(9))


def op_table(device: Device) -> tuple[list[Op | None], Callable[[int], Op]]:
    """A window's dispatch table and how an offset not in it resolves."""
    if isinstance(device, DispatchingWindow):
        return device.ops, device.resolve
    table: list[Op | None] = []

    def resolve(off: int) -> Op:
        op = device_op(device, off)
        remember_op(table, off, op)
        return op

    return table, resolve


class MmioDispatch:
    """Maps the board's regions into a unicorn, each with its two callbacks."""

    def __init__(self, kick: KickProtocol, stats: Stats) -> None:
        self._kick = kick
        self._stats = stats

    def map(self, uc: Uc, region: Region) -> None:
        rd, wr = self._callbacks(region.name, region.base, *op_table(region.device))
        ucfast.mmio_map(uc, region.base, region.size, rd, wr)

    def _callbacks(self, name: str, base: int, table: list[Op | None],
                   resolve: Callable[[int], Op]) -> tuple[
            Callable[[int, int, int], int], Callable[[int, int, int, int], None]]:
        stats = self._stats
        kick = self._kick
        masks = _SIZE_MASKS

        def rd(handle: int, off: int, size: int) -> int:
            try:
                read, _, doff = table[off]  # type: ignore[misc]  # None: TypeError
            except (IndexError, TypeError):  # beyond the list, or a gap in it
                read, _, doff = resolve(off)
            try:
                value = read(doff, size) & masks[size]
            except Exception:
                log.exception("%s: read of %d bytes at +%#x failed", name, size, off)
                value = 0
            stats.mmio_reads += 1
            if kick.pending:
                kick.took("r", base + off, size, value)
            if size == 4:
                kick.last = ("r", base + off, size, value)
            return value

        def wr(handle: int, off: int, size: int, value: int) -> None:
            try:
                _, write, doff = table[off]  # type: ignore[misc]  # None: TypeError
            except (IndexError, TypeError):  # beyond the list, or a gap in it
                _, write, doff = resolve(off)
            try:
                write(doff, size, value)
            except Exception:
                log.exception("%s: write of %d bytes at +%#x failed", name, size, off)
            stats.mmio_writes += 1
            if kick.pending:
                kick.took("w", base + off, size, value)
            if size == 4:
                kick.last = ("w", base + off, size, value)

        return rd, wr
