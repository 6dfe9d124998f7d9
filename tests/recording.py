"""A recording backend for device tests: records ioctls, can refuse output (a slow
backend) and feeds flow-controlled input, as a real backend would."""

from __future__ import annotations

import errno
import os
import threading

from e2kchar.chardev.ringbuf import RingbufChardev
from e2kchar.chardev.types import ChardevError, ChardevIoctl


class RecChardev(RingbufChardev):
    """A ringbuf that records ioctls, can refuse output and feeds flow-controlled input."""

    #: modem lines of newly created instances (None: the backend has none)
    default_tiocm: int | None = None

    def open(self) -> bool:
        ok = super().open()
        self.ioctls: list[tuple[ChardevIoctl, object]] = []
        self.blocked = False
        self.tiocm: int | None = self.default_tiocm
        self._in = bytearray()
        return ok

    def chr_write(self, data: memoryview) -> int:
        if self.blocked:
            raise BlockingIOError
        return super().chr_write(data)

    def chr_arm_watch(self) -> None:
        if not self.blocked:
            self.ioloop.call_soon(self.fire_watches)

    def set_blocked(self, flag: bool) -> None:
        def run() -> None:
            self.blocked = flag
            if not flag:
                self.fire_watches()
        self.ioloop.run_sync(run)

    def chr_ioctl(self, cmd: int, arg: object) -> object:
        self.ioctls.append((ChardevIoctl(cmd), arg))
        if cmd == ChardevIoctl.GET_TIOCM:
            return -errno.ENOTSUP if self.tiocm is None else self.tiocm
        if cmd == ChardevIoctl.SET_TIOCM and self.tiocm is not None:
            self.tiocm = int(arg)  # type: ignore[arg-type]
        return 0

    def feed(self, data: bytes) -> None:
        def run() -> None:
            self._in += data
            self._deliver()
        self.ioloop.call_soon(run)

    @property
    def input_left(self) -> int:
        return len(self._in)

    def chr_update_read_handler(self) -> None:
        self._deliver()

    def chr_accept_input(self) -> None:
        self._deliver()

    def _deliver(self) -> None:
        while self._in:
            n = self.be_can_write()
            if n <= 0:
                return
            chunk = bytes(self._in[:n])
            del self._in[:n]
            self.be_write(chunk)

    def of(self, cmd: ChardevIoctl) -> list[object]:
        return [a for c, a in self.ioctls if c == cmd]


def write_during_swap_window(monkeypatch, guest_write, refuse: bool = False) -> None:
    """Run guest_write on a CPU thread while a hotswap has the CharBackend between the old
    and the new chardev (after the old one let go, before the new one is attached); with
    refuse, attaching the new chardev then fails and the swap is rolled back."""
    orig = RecChardev.attach_frontend
    done: list[bool] = []

    def attach(self, fe):
        if not done:
            done.append(True)
            t = threading.Thread(target=guest_write)
            t.start()
            t.join(5)
            if refuse:
                raise ChardevError("attach refused")
        return orig(self, fe)

    monkeypatch.setattr(RecChardev, "attach_frontend", attach)


def drain(fd: int) -> bytes:
    """Everything a non-blocking read end holds now (up to EOF)."""
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk
