"""The logfile= mirror of a chardev's accepted output (QEMU's ChardevCommon logfile)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from .types import ChardevError

log = logging.getLogger(__name__)


class LogFile:
    """The logfile= mirror of accepted output, optionally stamped per line."""

    def __init__(self, path: str, append: bool, timestamp: bool,
                 guest_clock: Callable[[], Callable[[], float] | None] | None = None) -> None:
        self.path = path
        # O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of blocking the
        # I/O loop, and the CPU thread never blocks in a write a reader controls
        flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_APPEND if append else 0)
        try:
            # Truncation is deferred to commit() and a file we created is removed again by
            # discard(), so that a failed add leaves the file system as it was.
            try:
                self.fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
                self.created = True
            except FileExistsError:
                self.fd = os.open(path, flags | os.O_CREAT, 0o666)
                self.created = False
        except OSError as exc:
            why = exc.strerror
            if exc.errno == errno.ENXIO:
                why = f"{why} (a FIFO with no reader)"
            raise ChardevError(f"Unable to open logfile {path}: {why}") from None
        except ValueError as exc:  # an embedded NUL
            raise ChardevError(f"Unable to open logfile {path}: {exc}") from None
        self.append = append
        self.timestamp = timestamp
        self.guest_clock = guest_clock
        self.at_line_start = True
        self.committed = False

    def commit(self) -> None:
        if not self.committed:
            self.committed = True
            if not self.append:
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:
                    pass
            os.set_blocking(self.fd, True)

    def _stamp(self) -> bytes:
        host = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        clock = self.guest_clock() if self.guest_clock is not None else None
        if clock is not None:  # looked up per line: the machine may come after the chardev
            try:
                return f"[{host} +{clock():.6f}] ".encode()
            except Exception:
                pass
        return f"[{host}] ".encode()

    def write(self, data: bytes) -> None:
        if not data or self.fd < 0:
            return
        if self.timestamp:
            out = bytearray()
            for line in data.splitlines(keepends=True):
                if self.at_line_start:
                    out += self._stamp()
                out += line
                self.at_line_start = line.endswith(b"\n")
            data = bytes(out)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as exc:  # best effort, as QEMU does
                log.warning("logfile %s: %s", self.path, exc)
                return
            view = view[n:]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close after a failed open: a file this log created is removed again."""
        self.close()
        if self.created and not self.committed:
            try:
                os.unlink(self.path)
            except OSError:
                pass
