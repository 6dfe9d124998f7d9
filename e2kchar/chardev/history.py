"""The history=BYTES buffer of socket and pty: output nobody received, for the next peer.

Bounded (the oldest bytes go first) so a guest that prints with nobody attached cannot grow
it without limit. Not locked: the owning backend guards it with its connection lock.
"""

from __future__ import annotations

from .types import ChardevError

#: what a pty or a listening socket keeps by default while nobody is attached (history=0:
#: nothing, as QEMU); enough for a boot log's last screens
DEFAULT_LIMIT = 64 * 1024


class History:
    """A bounded FIFO of bytes; limit 0 keeps nothing (QEMU's drop behaviour)."""

    def __init__(self, limit: int | None) -> None:
        limit = limit or 0
        if limit < 0:
            raise ChardevError("'history' must not be negative")
        self.limit = limit
        self._buf = bytearray()

    def keep(self, data: bytes | bytearray | memoryview) -> None:
        if self.limit <= 0 or not data:
            return
        buf = self._buf
        if len(data) >= self.limit:
            buf[:] = data[len(data) - self.limit:]
            return
        buf += data
        excess = len(buf) - self.limit
        if excess > 0:
            del buf[:excess]

    def take(self) -> bytes:
        """Everything kept, oldest first; the buffer is empty afterwards."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def __len__(self) -> int:
        return len(self._buf)
