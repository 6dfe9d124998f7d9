"""The logfile= mirror of a chardev's accepted output (QEMU's ChardevCommon logfile)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

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
        #: output waiting for a slow reader (a FIFO, a pipe), at most BACKLOG bytes
        self.pending = bytearray()
        #: bytes never written: the backlog was full, or the file failed (ENOSPC, EIO)
        self.dropped = 0
        #: why output is being dropped now, else None (logged once per change)
        self.error: str | None = None

    #: bytes kept for a reader that is not reading; beyond them output is dropped (counted).
    #: The writer (the CPU thread) never blocks in a write a reader controls.
    BACKLOG = 65536

    def commit(self) -> None:
        if not self.committed:
            self.committed = True
            if not self.append and not self.created:  # (a new file is empty: backends/file.py)
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:
                    pass

    def _stamp(self) -> bytes:
        from datetime import UTC, datetime  # logtimestamp=on only: off the start-up path

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
        if self.pending and not self._drain():
            self._keep(data)
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except BlockingIOError:
                self._keep(bytes(view))
                return
            except OSError as exc:  # best effort, as QEMU does: dropped, counted, logged once
                self._failed(exc.strerror or str(exc), len(view))
                return
            view = view[n:]
        if self.error is not None:
            log.warning("logfile %s: written again (%d bytes dropped meanwhile)", self.path,
                        self.dropped)
            self.error = None

    def _drain(self) -> bool:
        """Write what waits for the reader, without blocking; True once nothing waits."""
        pending = self.pending
        while pending:
            try:
                n = os.write(self.fd, pending)
            except InterruptedError:
                continue
            except BlockingIOError:
                return False
            except OSError as exc:
                self._failed(exc.strerror or str(exc), len(pending))
                pending.clear()
                return True
            del pending[:n]
        return True

    def _keep(self, data: bytes) -> None:
        room = self.BACKLOG - len(self.pending)
        if room > 0:
            self.pending += data[:room]
        if len(data) > room:
            self._failed("the reader is not reading", len(data) - max(room, 0))

    def _failed(self, why: str, dropped: int) -> None:
        self.dropped += dropped
        if self.error != why:
            self.error = why
            log.warning("logfile %s: %s; log output is dropped (and counted) until it can "
                        "be written again", self.path, why)

    def close(self) -> None:
        if self.fd >= 0:
            self._drain()
            if self.pending:
                self._failed("the reader is not reading", len(self.pending))
                self.pending.clear()
            if self.dropped:
                log.warning("logfile %s: %d bytes of log output were dropped (%s)", self.path,
                            self.dropped, self.error)
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
