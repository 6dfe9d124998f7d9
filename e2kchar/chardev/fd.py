"""The fd family (QEMU's chardev-fd): an input fd and an output fd on the I/O loop.

Input is flow-controlled: the fd is watched only while the frontend's can_read() is > 0,
at most min(4096, can_read) bytes are read at a time, and EOF emits CLOSED. Regular files
cannot be polled, so their input is pumped from the loop instead.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

from .base import C, Chardev
from .types import READ_BUF_LEN, ChardevEvent

log = logging.getLogger(__name__)


class FdChardev(Chardev[C]):
    """Base for file, pipe, stdio and host-tty backends."""

    closed_on_finalize = True
    coalesce_output = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_fd = -1
        self.out_fd = -1
        self._owned: list[int] = []
        self._reading = False  # reader registered with the loop
        self._pumping = False  # regular-file input pump scheduled
        self._eof = False
        self._writer_armed = False

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

    def chr_arm_watch(self) -> None:
        if self.out_fd < 0:
            self.ioloop.call_soon(self.fire_watches)
            return
        if self._writer_armed:
            return
        if self.ioloop.add_writer(self.out_fd, self._on_writable):
            self._writer_armed = True
        else:  # a regular file is always writable
            self.ioloop.call_soon(self.fire_watches)

    def _on_writable(self) -> None:
        self.ioloop.remove_writer(self.out_fd)
        self._writer_armed = False
        self.fire_watches()

    # -- input -------------------------------------------------------------------------

    def chr_update_read_handler(self) -> None:
        if self.closed or self.in_fd < 0 or self._eof:
            return
        want = self.be_can_write() > 0
        if want:
            if self._pumping:
                return
            if not self._reading:
                if self.ioloop.add_reader(self.in_fd, self._on_readable):
                    self._reading = True
                else:
                    self._pumping = True
                    self.ioloop.call_soon(self._pump)
        else:
            self._stop_reading()
            if self.reader_attached():
                self.schedule_read_recheck()

    def _stop_reading(self) -> None:
        if self._reading:
            self.ioloop.remove_reader(self.in_fd)
            self._reading = False

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
            self._stop_reading()
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
        if self._reading:
            self.ioloop.remove_reader(self.in_fd)
            self._reading = False
        if self._writer_armed:
            self.ioloop.remove_writer(self.out_fd)
            self._writer_armed = False
        for fd in self._owned:
            try:
                os.close(fd)
            except OSError:
                pass
        self._owned = []
        self.in_fd = self.out_fd = -1
