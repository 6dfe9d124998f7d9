"""Guest RAM: one anonymous private mapping the CPU maps directly and devices reach by DMA."""

from __future__ import annotations

import ctypes
import mmap

from e2kchar.devices import GuestMemoryError


class RamMemory:
    """GuestMemory over the machine's RAM buffer, for DMA (virtio); any thread."""

    def __init__(self, buf: mmap.mmap, base: int, size: int) -> None:
        self._buf = buf
        self.base = base
        self.size = size

    @classmethod
    def anonymous(cls, base: int, size: int) -> RamMemory:
        """Fresh zeroed RAM of `size` bytes at guest address `base`."""
        return cls(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), base, size)

    def _off(self, addr: int, n: int) -> int:
        off = addr - self.base
        if n < 0 or off < 0 or off + n > self.size:
            raise GuestMemoryError(f"guest access of {n} bytes at {addr:#x} is outside RAM "
                                   f"[{self.base:#x}, {self.base + self.size:#x})")
        return off

    def contains(self, addr: int, n: int) -> bool:
        """Is [addr, addr + n) inside RAM?"""
        return self.base <= addr and addr + n <= self.base + self.size

    def read(self, addr: int, n: int) -> bytes:
        off = self._off(addr, n)
        return self._buf[off:off + n]

    def read_u64(self, addr: int) -> int | None:
        """A little-endian doubleword (a page-table entry), None outside RAM."""
        if not self.contains(addr, 8):
            return None
        off = addr - self.base
        return int.from_bytes(self._buf[off:off + 8], "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, value.to_bytes(8, "little"))

    def write(self, addr: int, data: bytes) -> None:
        off = self._off(addr, len(data))
        self._buf[off:off + len(data)] = bytes(data)

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
        self._buf.close()
