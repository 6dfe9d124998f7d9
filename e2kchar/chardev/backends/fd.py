"""The fd family (QEMU's chardev-fd): an input fd and an output fd on the I/O loop.

Input is flow-controlled: the fd is watched only while the frontend's can_read() is > 0,
at most min(4096, can_read) bytes are read at a time, and EOF emits CLOSED. Regular files
cannot be polled, so their input is pumped from the loop instead.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any, ClassVar

from ..base import C, Chardev
from ..ioloop import FdWatch
from ..types import READ_BUF_LEN, ChardevEvent

log = logging.getLogger("e2kchar.chardev.fd")  # its name before the move to backends/

#: the most buffers one writev(2) takes (Linux's UIO_MAXIOV)
IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


class FdChardev(Chardev[C]):
    """Base for file, pipe, stdio and host-tty backends."""

    closed_on_finalize = True
    coalesce_output = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_fd = -1
        self.out_fd = -1
        self._owned: list[int] = []
        self._read_watch = FdWatch(self.ioloop, self._on_readable)
        self._write_watch = FdWatch(self.ioloop, self._on_writable, write=True)
        self._pumping = False  # regular-file input pump scheduled
        self._eof = False

    def set_fds(self, in_fd: int, out_fd: int, owned: list[int]) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self._owned = owned
        if out_fd >= 0:
            try:
                os.set_blocking(out_fd, False)
            except OSError:
                pass
        if in_fd >= 0 and in_fd != out_fd:
            try:
                os.set_blocking(in_fd, False)
            except OSError:
                pass

    # -- output ------------------------------------------------------------------------

    def chr_write(self, data: memoryview) -> int:
        if self.out_fd < 0:
            return len(data)
        while True:
            try:
                return os.write(self.out_fd, data)
            except InterruptedError:
                continue

    #: bytes one writev(2) carries at most (a single bigger buffer goes whole): the kernel
    #: sizes the page-cache folios of a file by the write, and on a VM that hands free
    #: memory back to its host a large folio's first touch costs up to 4x the copy
    #: (1 GiB in 4 MiB writes: 0.23-1.2 s of sys; in 64 KiB writes: 0.30-0.36 s, as QEMU's)
    WRITEV_MAX: ClassVar[int] = 65536

    def chr_writev(self, bufs: list[memoryview]) -> int:
        """Buffers in writes of up to WRITEV_MAX bytes, until one is short or refused."""
        fd, most, done = self.out_fd, self.WRITEV_MAX, 0
        if fd < 0:
            return sum(len(b) for b in bufs)
        i, n = 0, len(bufs)
        while i < n:
            size, j = len(bufs[i]), i + 1
            while j < n and size + len(bufs[j]) <= most and j - i < IOV_MAX:
                size += len(bufs[j])
                j += 1
            try:
                res = os.writev(fd, bufs[i:j])
            except InterruptedError:
                continue
            except OSError:
                if done:
                    return done  # what went out counts; the error comes back next time
                raise
            done += res
            if res < size:
                return done
            i = j
        return done

    def chr_arm_watch(self) -> None:
        if self.out_fd < 0:
            self.ioloop.call_soon(self.fire_watches)
            return
        if not self._write_watch.arm(self.out_fd):  # a regular file is always writable
            self.ioloop.call_soon(self.fire_watches)

    def _on_writable(self) -> None:
        self._write_watch.disarm()
        self.fire_watches()

    # -- input -------------------------------------------------------------------------

    def chr_update_read_handler(self) -> None:
        if self.closed or self.in_fd < 0 or self._eof:
            return
        want = self.be_can_write() > 0
        if want:
            if self._pumping:
                return
            if not self._read_watch.armed and not self._read_watch.arm(self.in_fd):
                self._pumping = True
                self.ioloop.call_soon(self._pump)
        else:
            self._read_watch.disarm()
            if self.reader_attached():
                self.schedule_read_recheck()

    def _read_once(self) -> bool:
        """Read what the frontend can take; False when input should stop for now."""
        n = min(READ_BUF_LEN, self.be_can_write())
        if n <= 0:
            return False
        try:
            data = os.read(self.in_fd, n)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno == errno.EIO:  # e.g. a pty whose other side went away
                data = b""
            else:
                log.warning("%s: read failed: %s", self.label, exc)
                return False
        if not data:
            self._eof = True
            self._read_watch.disarm()
            self.be_event(ChardevEvent.CLOSED)
            return False
        self.be_write(data)
        return True

    def _on_readable(self) -> None:
        if self.closed:
            return
        self._read_once()
        self.chr_update_read_handler()

    def _pump(self) -> None:
        self._pumping = False
        if self.closed or self._eof:
            return
        if self._read_once():
            self._pumping = True
            self.ioloop.call_soon(self._pump)
        else:
            self.chr_update_read_handler()

    # -- teardown ----------------------------------------------------------------------

    def chr_close(self) -> None:
        self._read_watch.disarm()
        self._write_watch.disarm()
        for fd in self._owned:
            try:
                os.close(fd)
            except OSError:
                pass
        self._owned = []
        self.in_fd = self.out_fd = -1
