"""Boot-log capture: every console of a machine into one file, one tagged line at a time.

    [serial0] E2K boot ROM (e2kchar demo)
    [virtcon0] early console up

Each console's bytes are split into lines on LF (CR dropped); a line is written once it is
complete (or at close), so lines from different consoles never interleave mid-line. Taps
follow hotswaps, so the capture spans every backend a console had.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

from .chardev.registry import ChardevRegistry
from .chardev.types import ChardevError


class Capture:
    """Tag and interleave the output of several chardevs into one file."""

    def __init__(self, registry: ChardevRegistry, path: str, *, timestamps: bool = False,
                 guest_clock: Callable[[], float] | None = None) -> None:
        self.registry = registry
        self.timestamps = timestamps
        self.guest_clock = guest_clock
        self._lock = threading.Lock()
        try:
            self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ChardevError(f"Could not open '{path}': {exc.strerror}") from None
        self._partial: dict[str, bytearray] = {}
        self._taps: dict[str, Callable[[bytes], None]] = {}

    def add(self, label: str, tag: str | None = None) -> None:
        chr_ = self.registry.find(label)
        if chr_ is None:
            raise ChardevError(f"Device '{label}' not found")
        tag = tag or label
        self._partial[tag] = bytearray()

        def tap(data: bytes, tag: str = tag) -> None:
            self._feed(tag, data)

        self._taps[label] = tap
        chr_.add_tap(tap)

    def _prefix(self, tag: str) -> bytes:
        if not self.timestamps:
            return f"[{tag}] ".encode()
        host = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        guest = ""
        if self.guest_clock is not None:
            try:
                guest = f" +{self.guest_clock():.6f}"
            except Exception:
                guest = ""
        return f"[{tag} {host}{guest}] ".encode()

    def _feed(self, tag: str, data: bytes) -> None:
        with self._lock:
            buf = self._partial[tag]
            out = bytearray()
            for b in data:
                if b == 0x0A:
                    out += self._prefix(tag) + buf + b"\n"
                    buf.clear()
                elif b != 0x0D:
                    buf.append(b)
            if out and not self._file.closed:
                self._file.write(out)
                self._file.flush()

    def close(self) -> None:
        for label, tap in self._taps.items():
            chr_ = self.registry.find(label)
            if chr_ is not None:
                chr_.remove_tap(tap)
        with self._lock:
            for tag, buf in self._partial.items():
                if buf:
                    self._file.write(self._prefix(tag) + buf + b"\n")
                    buf.clear()
            self._file.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
