"""Helpers shared by the network and host backend tests (socket, udp, pty, serial)."""

from __future__ import annotations

import os
import select

from e2kchar.chardev.frontend import CharBackend


def fd_count() -> int:
    """Open fds of this process: equal before and after a registry's lifetime."""
    return len(os.listdir("/proc/self/fd"))


def attach(reg, recorder, chr_, **kw):
    """A Recorder whose set_handlers has completed on the I/O thread (no OPENED replay race)."""
    rec = recorder(CharBackend(chr_), **kw)
    reg.ioloop.run_sync(lambda: None)
    return rec


def read_exact(fd: int, n: int, timeout: float = 5.0) -> bytes:
    """Read n bytes from a tty fd (fewer if nothing arrives for timeout seconds)."""
    out = b""
    while len(out) < n:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        out += os.read(fd, n - len(out))
    return out
