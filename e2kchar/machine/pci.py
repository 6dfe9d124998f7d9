"""PCI ECAM configuration space for bus 0 (only the functions the machine has) and the
memory-BAR window that decodes a function's BAR only while it points at its fixed address."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from ..devices.packedform import check_moved
from .headers_packed import PCI_TYPE0
from .misc import Device, Op, device_op, hole_read, hole_write, remember_op

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    check_moved(__name__, name, ("Type0Header",))  # the declarations' old names here
    from . import headers

    return getattr(headers, name)


CMD_MEM = 0x2
CMD_WRITABLE = 0x0547  # io, mem, master, parity, serr, intx-disable
BAR_OFF = 0x10


class PciFunction:
    """One function's config space: fixed ids, a writable command register, memory BARs
    with size probing (write all-ones, read back the size mask)."""

    def __init__(self, *, vendor: int, device: int, class_code: int, subclass: int,
                 prog_if: int, bars: dict[int, tuple[int, int]] | None = None,
                 int_line: int = 0, int_pin: int = 1, multifunction: bool = False) -> None:
        self.ids = dict(vendor_id=vendor, device_id=device, class_code=class_code,
                        subclass=subclass, prog_if=prog_if, int_line=int_line, int_pin=int_pin,
                        header_type=0x80 if multifunction else 0)
        #: bar index -> (initial address, size); 32-bit non-prefetchable memory BARs
        self.bar_spec = dict(bars or {})
        self._watchers: list[Callable[[], object]] = []
        self.reset()

    def watch(self, callback: Callable[[], object]) -> None:
        """Call `callback()` after every config change (a BAR window drops its dispatch)."""
        self._watchers.append(callback)

    def _changed(self) -> None:
        self.generation = getattr(self, "generation", 0) + 1
        for callback in self._watchers:
            callback()

    def reset(self) -> None:
        bars = [0] * 6
        for i, (addr, _size) in self.bar_spec.items():
            bars[i] = addr
        # the type-0 header fields the machine sets (the rest of the 4 KiB reads 0)
        hdr = PCI_TYPE0.build(dict(
            **{k: v for k, v in self.ids.items()}, command=CMD_MEM, status=0, revision=1,
            cache_line=0, latency=0, bist=0, bars=bars, cardbus_cis=0, subsys_vendor=0,
            subsys_id=0, rom_base=0, cap_ptr=0, reserved=[0] * 7, min_gnt=0, max_lat=0))
        self.config = bytearray(4096)
        self.config[:len(hdr)] = hdr
        #: bumped on every config change, so BAR windows can cache their decode decision
        self._changed()

    def bar(self, index: int) -> int:
        return int(struct.unpack_from("<I", self.config, BAR_OFF + 4 * index)[0]) & ~0xF

    @property
    def mem_enabled(self) -> bool:
        return bool(self.config[4] & CMD_MEM)

    def read(self, reg: int, size: int) -> int:
        if size not in (1, 2, 4) or reg % size or reg + size > len(self.config):
            return (1 << (8 * size)) - 1 if size in (1, 2, 4, 8) else 0
        return int.from_bytes(self.config[reg:reg + size], "little")

    def write(self, reg: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or reg % size:
            log.debug("PCI: %d-byte config write at %#x ignored", size, reg)
            return
        for i, byte in enumerate((value & ((1 << 8 * size) - 1)).to_bytes(size, "little")):
            self._write_byte(reg + i, byte)
        self._changed()

    def _write_byte(self, reg: int, byte: int) -> None:
        if reg in (4, 5):
            mask = CMD_WRITABLE >> (8 * (reg - 4)) & 0xFF
            self.config[reg] = (self.config[reg] & ~mask) | (byte & mask)
        elif reg in (6, 7):
            self.config[reg] &= ~byte  # status bits are write-1-to-clear
        elif BAR_OFF <= reg < BAR_OFF + 24:
            index, within = divmod(reg - BAR_OFF, 4)
            if index not in self.bar_spec:
                return  # unimplemented BAR: reads 0, writes ignored
            size = self.bar_spec[index][1]
            old = struct.unpack_from("<I", self.config, BAR_OFF + 4 * index)[0]
            new = (old & ~(0xFF << 8 * within)) | byte << 8 * within
            new &= ~(size - 1) & 0xFFFFFFF0  # address bits only; type 0 = 32-bit memory
            struct.pack_into("<I", self.config, BAR_OFF + 4 * index, new)
        elif reg == 0x3C:
            self.config[reg] = byte  # interrupt line is for software


class PciEcam:
    """Bus 0 of an ECAM window: offset = bus<<20 | dev<<15 | fn<<12 | register."""

    def __init__(self) -> None:
        self.functions: dict[tuple[int, int], PciFunction] = {}

    def add(self, dev: int, fn: int, function: PciFunction) -> None:
        self.functions[(dev, fn)] = function

    def _decode(self, offset: int) -> tuple[PciFunction | None, int]:
        bus, dev, fn, reg = offset >> 20, offset >> 15 & 0x1F, offset >> 12 & 7, offset & 0xFFF
        if bus != 0:
            return None, reg
        return self.functions.get((dev, fn)), reg

    def read(self, offset: int, size: int) -> int:
        func, reg = self._decode(offset)
        if func is None:
            return (1 << (8 * size)) - 1  # no device: all ones (vendor 0xFFFF)
        return func.read(reg, size)

    def write(self, offset: int, size: int, value: int) -> None:
        func, reg = self._decode(offset)
        if func is not None:
            func.write(reg, size, value)

    def reset(self) -> None:
        for f in self.functions.values():
            f.reset()


class BarWindow:
    """The bus side of a memory BAR mapped at a fixed address: it decodes only while memory
    decoding is on and the BAR holds that address (else reads all-ones, drops writes)."""

    def __init__(self, function: PciFunction, index: int, address: int, device: Device | None,
                 name: str) -> None:
        self.function = function
        self.index = index
        self.address = address
        self.device = device
        self.name = name
        self._warned = False
        self._decided = (-1, False)  # (config generation, decodes): checked per access
        #: offset -> Op while the decision holds (DispatchingWindow): the device's own
        #: methods while the BAR decodes, a hole otherwise; emptied on every config change
        self.ops: list[Op | None] = []
        function.watch(self.ops.clear)

    def resolve(self, offset: int) -> Op:
        op: Op = (device_op(self.device, offset)  # type: ignore[arg-type]  # decodes: a device
                  if self._decodes() else (hole_read, hole_write, offset))
        remember_op(self.ops, offset, op)
        return op

    def _decodes(self) -> bool:
        gen, ok = self._decided
        if gen == self.function.generation:
            return ok
        ok = self._decide()
        self._decided = (self.function.generation, ok)
        return ok

    def _decide(self) -> bool:
        ok = self.function.mem_enabled and self.function.bar(self.index) == self.address
        if not ok and not self._warned and self.function.bar(self.index) not in (
                self.address, 0xFFFFFFFF & ~0xFFF & ~0xF):
            self._warned = True
            log.warning("%s: BAR%d moved to %#x; the machine decodes it only at %#x",
                        self.name, self.index, self.function.bar(self.index), self.address)
        return ok and self.device is not None

    # read/write inline _decodes(): they run for every access to the device

    def read(self, offset: int, size: int) -> int:
        gen, ok = self._decided
        if gen != self.function.generation:
            ok = self._decodes()
        if not ok:
            return (1 << (8 * size)) - 1
        return self.device.read(offset, size)  # type: ignore[union-attr]  # ok: not None

    def write(self, offset: int, size: int, value: int) -> None:
        gen, ok = self._decided
        if gen != self.function.generation:
            ok = self._decodes()
        if ok:
            self.device.write(offset, size, value)  # type: ignore[union-attr]
