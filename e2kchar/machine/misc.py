"""Small machine devices: the exit device, the I/O-port window, empty virtio-mmio slots and
a bus window that forwards to one device (used for PCI BARs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .layout import EXIT_FAIL, EXIT_PASS, EXIT_RESET

log = logging.getLogger(__name__)


class Device(Protocol):
    """The device interface (docs/interfaces.md): what the MMIO dispatch calls."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


#: one offset's dispatch: (device read, device write, offset within the device)
Op = tuple[Callable[[int, int], int], Callable[[int, int, int], None], int]
#: a window keeps resolved offsets in `ops` only below this one (a guest probing a large
#: window must not grow it without bound)
OPS_LIMIT = 4096


def remember_op(ops: list[Op | None], offset: int, op: Op) -> None:
    """Put op at offset in a list of Ops (below OPS_LIMIT), growing it as needed."""
    if offset < OPS_LIMIT:
        if offset >= len(ops):
            ops.extend([None] * (offset + 1 - len(ops)))
        ops[offset] = op


@runtime_checkable
class DispatchingWindow(Protocol):
    """A window in front of other devices (I/O ports, a PCI BAR) that publishes its
    dispatch, so the MMIO callbacks reach the device behind it without a call through the
    window: `ops` is a list indexed by offset (an index is the cheapest lookup there is),
    kept current by the window (it may drop entries, or empty the list, at any time);
    `resolve` gives the Op of an offset beyond it or None in it (and may fill it in)."""

    ops: list[Op | None]

    def resolve(self, offset: int) -> Op: ...


def device_op(dev: Device, offset: int) -> Op:
    """The Op of one offset of dev: the register's own accessors when the device offers
    them (``accessors(offset)``, docs/interfaces.md), so the MMIO callback reaches a hot
    register in one Python frame; else its read and write."""
    accessors = getattr(dev, "accessors", None)
    if accessors is not None:
        read, write = accessors(offset)
        return read, write, offset
    return dev.read, dev.write, offset


def hole_read(offset: int, size: int) -> int:
    """Nothing decodes here: all-ones, as a floating bus reads."""
    return (1 << (8 * size)) - 1


def hole_write(offset: int, size: int, value: int) -> None:
    """Nothing decodes here: the write is dropped."""


class ExitDevice:
    """SiFive-test layout: 0x5555 pass, (code<<16)|0x3333 fail, 0x7777 reset.

    2- and 4-byte writes at offset 0 count, as on QEMU's sifive_test (OpenSBI 1.1's driver
    writes 16 bits; a 16-bit fail carries no code, so it exits 0 there too). on_exit(kind, code) with kind "exit" or "reset"; other values are logged and ignored."""

    def __init__(self, on_exit: Callable[[str, int], object] | None = None) -> None:
        self.on_exit = on_exit
        self.last: tuple[str, int] | None = None

    def reset(self) -> None:
        self.last = None

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0 or size < 2:
            log.warning("exit device: %d-byte write of %#x at +%#x ignored", size, value, offset)
            return
        value &= 0xFFFF if size == 2 else 0xFFFFFFFF
        low = value & 0xFFFF
        if low == EXIT_PASS:
            event = ("exit", 0)
        elif low == EXIT_FAIL:
            event = ("exit", value >> 16)
        elif low == EXIT_RESET:
            event = ("reset", 0)
        else:
            log.warning("exit device: unknown command %#x ignored", value)
            return
        self.last = event
        if self.on_exit is not None:
            self.on_exit(*event)


class EmptyVirtioSlot:
    """An unpopulated virtio-mmio slot: magic and version read normally, DeviceID reads 0."""

    MAGIC = 0x74726976  # "virt"

    def read(self, offset: int, size: int) -> int:
        if offset == 0 and size == 4:
            return self.MAGIC
        if offset == 4 and size == 4:
            return 2
        if offset == 0xC and size == 4:
            return 0x554D4551  # vendor "QEMU", as a QEMU empty slot reads
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        log.debug("empty virtio slot: write %#x at +%#x ignored", value, offset)

    def reset(self) -> None:
        pass


class PortWindow:
    """Dispatches accesses in a window to devices at (start, length); holes read all-ones
    (as a floating ISA bus does) and ignore writes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ports: list[tuple[int, int, Device]] = []
        self.table: dict[int, tuple[int, Device]] = {}   # offset -> (port base, device)
        #: offset -> Op of the port there, None in a hole (DispatchingWindow)
        self.ops: list[Op | None] = []

    def map(self, start: int, length: int, dev: Device) -> None:
        self.ports.append((start, length, dev))
        ops = self.ops
        if len(ops) < start + length:
            ops.extend([None] * (start + length - len(ops)))
        for off in range(start, start + length):
            self.table[off] = (start, dev)
            ops[off] = device_op(dev, off - start)

    def resolve(self, offset: int) -> Op:
        """A hole (DispatchingWindow): reads all-ones, ignores writes."""
        return hole_read, hole_write, offset

    def _find(self, offset: int) -> tuple[int, Device] | None:
        hit = self.table.get(offset)
        if hit is None:
            return None
        return offset - hit[0], hit[1]

    def read(self, offset: int, size: int) -> int:
        hit = self._find(offset)
        if hit is None:
            return (1 << (8 * size)) - 1
        return hit[1].read(hit[0], size)

    def write(self, offset: int, size: int, value: int) -> None:
        hit = self._find(offset)
        if hit is None:
            log.debug("%s: write %#x to unclaimed offset %#x", self.name, value, offset)
            return
        hit[1].write(hit[0], size, value)
