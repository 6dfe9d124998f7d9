"""MMIO dispatch: the unicorn callbacks for every device window, made from one template.

These callbacks run for every guest MMIO access, so they are tuned (BENCHMARKS.md, "Second
round"): registered with unicorn directly (ucfast), everything they need bound in closure
cells, value masks from a table, the kick record kept only for 4-byte accesses (the halves
of a split 64-bit access that retire.py may have to complete), slotted counters.

Every window is dispatched through one table, offset -> (device read, device write, where
the device starts in the window), and a default entry for offsets not in it. For a port
window (the I/O ports) the table is the window's own table of ports and the default a hole
that reads all-ones and ignores writes (a floating ISA bus); any other device has an empty
table and itself as the default, starting at offset 0. A device must return an int (the
`& mask` turns anything else into a logged error and a 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from unicorn import Uc

from . import ucfast
from .board import Region
from .kick import KickProtocol
from .misc import Device, PortWindow
from .stats import Stats

log = logging.getLogger(__name__)

#: value mask per access size (unicorn's MMIO callbacks see 1, 2, 4 and 8 bytes)
_SIZE_MASKS = tuple((1 << (8 * n)) - 1 for n in range(9))
#: (read, write, start of the device in the window)
Op = tuple[Callable[[int, int], int], Callable[[int, int, int], None], int]


def _hole_read(offset: int, size: int) -> int:
    return _SIZE_MASKS[size]


def _hole_write(offset: int, size: int, value: int) -> None:
    pass


_HOLE: Op = (_hole_read, _hole_write, 0)


def op_table(device: Device) -> tuple[dict[int, Op], Op]:
    """The dispatch table of a window and its default entry."""
    if isinstance(device, PortWindow):
        return device.ops, _HOLE
    return {}, (device.read, device.write, 0)


class MmioDispatch:
    """Maps the board's regions into a unicorn, each with its two callbacks."""

    def __init__(self, kick: KickProtocol, stats: Stats) -> None:
        self._kick = kick
        self._stats = stats

    def map(self, uc: Uc, region: Region) -> None:
        rd, wr = self._callbacks(region.name, region.base, *op_table(region.device))
        ucfast.mmio_map(uc, region.base, region.size, rd, wr)

    def _callbacks(self, name: str, base: int, table: dict[int, Op], default: Op) -> tuple[
            Callable[[Any, int, int, Any], int], Callable[[Any, int, int, int, Any], None]]:
        stats = self._stats
        kick = self._kick
        masks = _SIZE_MASKS
        lookup = table.get

        def rd(handle: Any, off: int, size: int, ud: Any) -> int:
            read, _, start = lookup(off, default)
            try:
                value = read(off - start, size) & masks[size]
            except Exception:
                log.exception("%s: read of %d bytes at +%#x failed", name, size, off)
                value = 0
            stats.mmio_reads += 1
            if kick.pending:
                kick.took("r", base + off, size, value)
            if size == 4:
                kick.last = ("r", base + off, size, value)
            return value

        def wr(handle: Any, off: int, size: int, value: int, ud: Any) -> None:
            _, write, start = lookup(off, default)
            try:
                write(off - start, size, value)
            except Exception:
                log.exception("%s: write of %d bytes at +%#x failed", name, size, off)
            stats.mmio_writes += 1
            if kick.pending:
                kick.took("w", base + off, size, value)
            if size == 4:
                kick.last = ("w", base + off, size, value)

        return rd, wr
