"""GuestMemory: how DMA-capable devices (virtio) reach guest RAM.

What an embedding emulator provides: docs/embedding.md ("GuestMemory and DMA"). A memory
that also offers ``view(addr, n)`` (``DmaMemory``) lets the devices read descriptors and
hand guest buffers to a backend without copying them out of RAM first.
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


@runtime_checkable
class DmaMemory(GuestMemory, Protocol):
    """A GuestMemory that also lends zero-copy views of RAM.

    ``view(addr, n)`` is a writable memoryview of exactly [addr, addr + n), or
    GuestMemoryError when any of it lies outside RAM (never a shorter view). ``write``
    accepts any bytes-like object, a memoryview included.
    """

    def view(self, addr: int, n: int) -> memoryview: ...

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...


def outside(addr: int, n: int, base: int, size: int) -> GuestMemoryError:
    """The error for an access of n bytes at addr that leaves RAM [base, base + size)."""
    return GuestMemoryError(f"guest access of {n} bytes at {addr:#x} is outside RAM "
                            f"[{base:#x}, {base + size:#x})")


def ram_offset(addr: int, n: int, base: int, size: int) -> int:
    """Offset of [addr, addr + n) in RAM of `size` bytes at `base`; GuestMemoryError if
    any of it is outside (negative lengths, wrap-around and overflow included)."""
    off = addr - base
    if n < 0 or off < 0 or off + n > size:
        raise outside(addr, n, base, size)
    return off


class BytearrayMemory:
    """Guest RAM as one bytearray at a base address (tests and simple emulators).

    ``data`` keeps its size for good: devices hold views of it (``view``).
    """

    def __init__(self, size: int, base: int = 0) -> None:
        self.base = base
        self.size = size
        self.data = bytearray(size)
        self._view = memoryview(self.data)

    def _offset(self, addr: int, n: int) -> int:
        return ram_offset(addr, n, self.base, self.size)

    def read(self, addr: int, n: int) -> bytes:
        off = ram_offset(addr, n, self.base, self.size)
        return bytes(self._view[off:off + n])

    def view(self, addr: int, n: int) -> memoryview:
        off = addr - self.base  # ram_offset, inlined: the virtqueue hot path
        if n < 0 or off < 0 or off + n > self.size:
            raise outside(addr, n, self.base, self.size)
        return self._view[off:off + n]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        off = ram_offset(addr, n, self.base, self.size)
        self.data[off:off + n] = data  # same length: allowed while views are out
