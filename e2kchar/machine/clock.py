"""Guest time: seconds since reset, either following the host clock or stopping while paused."""

from __future__ import annotations

import threading
import time


class GuestClock:
    """'host': runs with the host's monotonic clock, even while the machine is paused.
    'virtual': like QEMU's virtual clock without icount, it stands still while paused."""

    def __init__(self, mode: str = "virtual") -> None:
        if mode not in ("virtual", "host"):
            raise ValueError(f"clock must be 'virtual' or 'host', not {mode!r}")
        self.mode = mode
        self._lock = threading.Lock()
        self._base = time.monotonic()
        self._paused_at: float | None = None

    def now(self) -> float:
        """Seconds of guest time since the last reset."""
        with self._lock:
            t = self._paused_at if self._paused_at is not None else time.monotonic()
            return t - self._base

    def host_deadline(self, guest_seconds: float) -> float:
        """The host monotonic time at which guest time reaches guest_seconds (inf if paused)."""
        with self._lock:
            if self._paused_at is not None:
                return float("inf")
            return self._base + guest_seconds

    def pause(self) -> None:
        with self._lock:
            if self.mode == "virtual" and self._paused_at is None:
                self._paused_at = time.monotonic()

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                self._base += time.monotonic() - self._paused_at
                self._paused_at = None

    def reset(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._base = now
            if self._paused_at is not None:
                self._paused_at = now
