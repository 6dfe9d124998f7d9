"""GuestMemory: how DMA-capable devices (virtio) reach guest RAM.

What an embedding emulator provides: docs/embedding.md ("GuestMemory and DMA").
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from e2kchar.errors import E2kcharError


class GuestMemoryError(E2kcharError):
    """A guest address or length outside guest RAM."""


@runtime_checkable
class GuestMemory(Protocol):
    """read(addr, n) -> bytes and write(addr, data); both raise GuestMemoryError."""

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


class BytearrayMemory:
    """Guest RAM as one bytearray at a base address (tests and simple emulators)."""

    def __init__(self, size: int, base: int = 0) -> None:
        self.base = base
        self.size = size
        self.data = bytearray(size)

    def _offset(self, addr: int, n: int) -> int:
        off = addr - self.base
        if n < 0 or off < 0 or off + n > self.size:
            raise GuestMemoryError(
                f"guest access of {n} bytes at {addr:#x} is outside RAM "
                f"[{self.base:#x}, {self.base + self.size:#x})")
        return off

    def read(self, addr: int, n: int) -> bytes:
        off = self._offset(addr, n)
        return bytes(self.data[off:off + n])

    def write(self, addr: int, data: bytes) -> None:
        off = self._offset(addr, len(data))
        self.data[off:off + len(data)] = data
