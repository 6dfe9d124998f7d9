"""ringbuf (alias memory): a power-of-two ring that keeps the newest output.

Read and written only through the registry (QMP ringbuf-read / ringbuf-write); it gives the
frontend no input.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig
from ..qemuopts import SIZE, BackendOptions, Opts, QapiReader, opt_size
from ..types import ChardevError

DEFAULT_SIZE = 65536


@dataclass(kw_only=True)
class RingbufConfig(BackendConfig):
    TYPE: ClassVar[str] = "ringbuf"
    size: int | None = None


@dataclass(kw_only=True)
class MemoryConfig(RingbufConfig):
    TYPE: ClassVar[str] = "memory"


class RingbufChardev(Chardev[RingbufConfig]):
    TYPE = "ringbuf"

    def open(self) -> bool:
        size = self.config.size
        if size is None:
            size = DEFAULT_SIZE
        # QEMU lets size 0 through (a zero-length buffer); we reject it as not a power of two
        if size <= 0 or size & (size - 1) or size > (1 << 31):
            raise ChardevError("size of ringbuf chardev must be power of two")
        self.size = size
        self._buf = bytearray()
        self._lock = threading.Lock()
        return True

    def chr_write(self, data: memoryview) -> int:
        self.ring_put(data)
        return len(data)

    def ring_put(self, data: bytes | memoryview) -> None:
        """Append; when full the oldest bytes are overwritten."""
        with self._lock:
            buf = self._buf
            buf += data
            excess = len(buf) - self.size
            if excess > 0:
                del buf[:excess]

    def ring_get(self, size: int) -> bytes:
        """Consume up to size of the oldest bytes."""
        with self._lock:
            out = bytes(self._buf[:size])
            del self._buf[:size]
            return out

    @property
    def count(self) -> int:
        return len(self._buf)

    def peek(self) -> bytes:
        """The ring's current content, not consumed (for tests and captures)."""
        with self._lock:
            return bytes(self._buf)


class MemoryChardev(RingbufChardev):
    TYPE = "memory"


# -- options --------------------------------------------------------------------------


def _options(cfg: type[RingbufConfig], cls: type[RingbufChardev]) -> BackendOptions:
    def from_opts(opts: Opts, common: dict[str, Any]) -> RingbufConfig:
        return cfg(size=opt_size(opts, "size"), **common)

    def from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> RingbufConfig:
        return cfg(size=d.take("size", "integer"), **common)

    def to_opts(c: RingbufConfig) -> list[tuple[str, Any]]:
        return [("size", c.size)]

    return BackendOptions(config=cfg, chardev=cls, keys={"size": SIZE}, from_opts=from_opts,
                          from_qapi=from_qapi, to_opts=to_opts)


OPTIONS = _options(RingbufConfig, RingbufChardev)
MEMORY_OPTIONS = _options(MemoryConfig, MemoryChardev)
