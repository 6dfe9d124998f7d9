"""Guest RAM: one anonymous private mapping the CPU maps directly and devices reach by DMA."""

from __future__ import annotations

import ctypes
import logging
import mmap

from e2kchar.devices.memory import outside, ram_offset

log = logging.getLogger(__name__)


class RamMemory:
    """DmaMemory over the machine's RAM buffer, for DMA (virtio); any thread.

    ``view`` lends memoryviews of the mapping itself (no copy): what the CPU stores is
    what a device sees, and a device's write is what the CPU loads next.
    """

    def __init__(self, buf: mmap.mmap, base: int, size: int) -> None:
        self._buf = buf
        self._view = memoryview(buf)
        self.base = base
        self.size = size

    @classmethod
    def anonymous(cls, base: int, size: int) -> RamMemory:
        """Fresh zeroed RAM of `size` bytes at guest address `base`."""
        return cls(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), base, size)

    def _off(self, addr: int, n: int) -> int:
        return ram_offset(addr, n, self.base, self.size)

    def contains(self, addr: int, n: int) -> bool:
        """Is [addr, addr + n) inside RAM?"""
        return self.base <= addr and addr + n <= self.base + self.size

    def read(self, addr: int, n: int) -> bytes:
        off = ram_offset(addr, n, self.base, self.size)
        return self._buf[off:off + n]

    def view(self, addr: int, n: int) -> memoryview:
        """Zero-copy view of [addr, addr + n); GuestMemoryError outside RAM."""
        off = addr - self.base  # ram_offset, inlined: the virtqueue hot path
        if n < 0 or off < 0 or off + n > self.size:
            raise outside(addr, n, self.base, self.size)
        return self._view[off:off + n]

    def read_u64(self, addr: int) -> int | None:
        """A little-endian doubleword (a page-table entry), None outside RAM."""
        if not self.contains(addr, 8):
            return None
        off = addr - self.base
        return int.from_bytes(self._buf[off:off + 8], "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, value.to_bytes(8, "little"))

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        off = ram_offset(addr, n, self.base, self.size)
        self._view[off:off + n] = data if not isinstance(data, memoryview) else data.cast("B")

    def fill(self, addr: int, data: bytes, size: int) -> None:
        """Write `data` at `addr` and zeros after it up to `size` bytes (an ELF segment's bss)."""
        off = self._off(addr, size)
        self._buf[off:off + len(data)] = data
        if size > len(data):
            self._buf[off + len(data):off + size] = bytes(size - len(data))

    def zero(self) -> None:
        """All of RAM reads back as zeros (a private anonymous mapping drops its pages)."""
        self._buf.madvise(mmap.MADV_DONTNEED)

    def host_address(self) -> int:
        """Host address of the buffer, for unicorn's mem_map_ptr (the CPU shares it)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(self._buf))

    def close(self) -> None:
        """Unmap RAM; while a device still holds a view, the mapping goes with the last one."""
        self._view.release()
        try:
            self._buf.close()
        except BufferError:
            log.debug("guest RAM: views still lent out; unmapped when the last one goes")
