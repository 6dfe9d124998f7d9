"""A CLINT-layout timer: msip at +0, mtimecmp at +0x4000, mtime at +0xBFF8 (10 MHz).

Unicorn splits 64-bit MMIO into two 32-bit accesses, low half first; mtime is latched on the
low-half read so that the high half read right after it cannot tear."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .clock import GuestClock
from .layout import TIMEBASE_HZ

log = logging.getLogger(__name__)

MSIP = 0x0
MTIMECMP = 0x4000
MTIME = 0xBFF8
U64 = (1 << 64) - 1


class Clint:
    """on_change() is called (from the accessing thread) when msip or mtimecmp changes."""

    def __init__(self, clock: GuestClock, on_change: Callable[[], object] | None = None,
                 freq: int = TIMEBASE_HZ) -> None:
        self.clock = clock
        self.freq = freq
        self.on_change = on_change
        #: reads of mtime (MMIO or an emulated rdtime): a guest reading its clock is
        #: waiting for time, not idle (idle.py)
        self.time_reads = 0
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.msip = 0
            self.mtimecmp = U64
            self._mtime_offset = 0
            self._latched: int | None = None

    # -- time ------------------------------------------------------------------------

    def mtime(self) -> int:
        self.time_reads += 1
        return (int(self.clock.now() * self.freq) + self._mtime_offset) & U64

    def mtip(self) -> bool:
        return self.mtime() >= self.mtimecmp

    def timer_deadline(self) -> float | None:
        """Guest seconds at which MTIP rises (None if mtimecmp is out of reach)."""
        with self._lock:
            if self.mtimecmp == U64:
                return None
            return (self.mtimecmp - self._mtime_offset) / self.freq

    # -- registers -------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if size == 8 and offset & 7 == 0:
                return self.read(offset, 4) | self.read(offset + 4, 4) << 32
            if size != 4 or offset & 3:
                log.debug("CLINT: %d-byte read at %#x reads 0", size, offset)
                return 0
            if offset == MSIP:
                return self.msip
            if offset == MTIMECMP:
                return self.mtimecmp & 0xFFFFFFFF
            if offset == MTIMECMP + 4:
                return self.mtimecmp >> 32
            if offset == MTIME:
                now = self.mtime()
                self._latched = now
                return now & 0xFFFFFFFF
            if offset == MTIME + 4:
                latched, self._latched = self._latched, None
                return (latched if latched is not None else self.mtime()) >> 32
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            if size == 8 and offset & 7 == 0:
                self.write(offset, 4, value & 0xFFFFFFFF)
                self.write(offset + 4, 4, value >> 32 & 0xFFFFFFFF)
                return
            if size != 4 or offset & 3:
                log.debug("CLINT: %d-byte write at %#x ignored", size, offset)
                return
            value &= 0xFFFFFFFF
            if offset == MSIP:
                self.msip = value & 1
            elif offset == MTIMECMP:
                self.mtimecmp = (self.mtimecmp & ~0xFFFFFFFF & U64) | value
            elif offset == MTIMECMP + 4:
                self.mtimecmp = (self.mtimecmp & 0xFFFFFFFF) | value << 32
            elif offset in (MTIME, MTIME + 4):
                cur = self.mtime()
                new = ((cur & ~0xFFFFFFFF & U64) | value if offset == MTIME
                       else (cur & 0xFFFFFFFF) | value << 32)
                self._mtime_offset = (self._mtime_offset + new - cur) & U64
            else:
                return
        cb = self.on_change
        if cb is not None:
            cb()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return dict(msip=self.msip, mtimecmp=self.mtimecmp, mtime=self.mtime())

    def load_state(self, st: dict[str, Any]) -> None:
        with self._lock:
            self.msip = st["msip"]
            self.mtimecmp = st["mtimecmp"]
            self._mtime_offset = 0
            self._mtime_offset = (st["mtime"] - self.mtime()) & U64
