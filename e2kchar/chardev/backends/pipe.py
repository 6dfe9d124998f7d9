"""pipe: PATH.in (host -> guest) and PATH.out (guest -> host), else PATH both ways.

Both ends are opened O_RDWR, so a FIFO never blocks the open and never reads EOF when its
writer goes away; e2kchar, like QEMU, does not create the FIFOs.
"""

from __future__ import annotations

import os

from ..config import PipeConfig
from .fd import FdChardev
from .file import open_or_fail


class PipeChardev(FdChardev[PipeConfig]):
    TYPE = "pipe"

    def open(self) -> bool:
        path = self.config.device
        flags = os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            in_fd = os.open(path + ".in", flags)
        except (OSError, ValueError):
            in_fd = -1
        out_fd = -1
        if in_fd >= 0:
            try:
                out_fd = os.open(path + ".out", flags)
            except OSError:
                os.close(in_fd)
                in_fd = -1
        if in_fd < 0:
            fd = open_or_fail(path, os.O_RDWR | os.O_NONBLOCK)
            self.set_fds(fd, fd, [fd])
        else:
            self.set_fds(in_fd, out_fd, [in_fd, out_fd])
        return True
