"""pty: a host pseudo-terminal whose slave (/dev/pts/N) a terminal program opens.

We keep only the master. Whether someone has the slave open is polled (POLLHUP on the
master means nobody) every 100 ms: OPENED when a user opens it and, unlike QEMU, CLOSED
when the last one closes it. Output while nobody is attached is dropped (QEMU), or kept in
a bounded history=BYTES buffer and replayed when the slave is next opened.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import termios
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig
from ..history import History
from ..ioloop import FdWatch, TimerHandle
from ..qemuopts import SIZE, BackendOptions, Opts, QapiReader, Split, opt_size
from ..types import READ_BUF_LEN, ChardevError, ChardevEvent

log = logging.getLogger("e2kchar.chardev.pty")  # its name before the move to backends/

POLL_INTERVAL = 0.1


def make_raw(fd: int) -> None:
    """cfmakeraw(): no echo, no line editing, no CR/LF mapping, 8 bits, no signals."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                  | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                  | termios.IEXTEN)
    attrs[2] &= ~(termios.CSIZE | termios.PARENB)
    attrs[2] |= termios.CS8
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


@dataclass(kw_only=True)
class PtyConfig(BackendConfig):
    TYPE: ClassVar[str] = "pty"
    history: int | None = None


class PtyChardev(Chardev[PtyConfig]):
    """QEMU's chardev-pty, with CLOSED on hang-up and optional history."""

    TYPE = "pty"
    closed_on_finalize = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()  # _attached/_replay/_history, CPU and I/O threads
        self.master = -1
        self.pty_path = ""
        self._attached = False
        self._read_watch = FdWatch(self.ioloop, self._on_readable)
        self._write_watch = FdWatch(self.ioloop, self._on_writable, write=True)
        self._timer: TimerHandle | None = None
        self._history = History(0)
        self._replay = bytearray()

    def open(self) -> bool:
        self._history = History(self.config.history)
        try:
            master, slave = os.openpty()
        except OSError as exc:
            raise ChardevError(f"Failed to create PTY: {exc.strerror}") from None
        try:
            try:
                make_raw(slave)
            except termios.error:
                pass
            path = os.ttyname(slave)
        except OSError as exc:
            os.close(master)
            raise ChardevError(f"Failed to create PTY: {exc.strerror}") from None
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.pty_path = path
        self.filename = f"pty:{path}"
        log.info("char device redirected to %s (label %s)", path, self.label)
        self._timer = self.ioloop.call_later(0, self._poll)
        return False

    def query_extra(self) -> dict[str, Any]:
        return {"pty": self.pty_path}

    @property
    def connected(self) -> bool:
        return self._attached

    # -- connection tracking -----------------------------------------------------------

    def _slave_open(self) -> tuple[bool, bool]:
        """(someone has the slave open, input pending) from a zero-timeout poll."""
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        events = poller.poll(0)
        revents = events[0][1] if events else 0
        return not revents & select.POLLHUP, bool(revents & select.POLLIN)

    def _poll(self) -> None:
        self._timer = None
        if self.closed or self.master < 0:
            return
        try:
            is_open, pending = self._slave_open()
        except OSError:
            is_open, pending = False, False
        if is_open and not self._attached:
            self._on_connect()
        elif not is_open and self._attached and not (pending and self._read_watch.armed):
            # what the user typed before hanging up is read first (EIO ends it)
            self._on_disconnect()
        self._timer = self.ioloop.call_later(POLL_INTERVAL, self._poll)

    def _on_connect(self) -> None:
        with self._lock:
            self._attached = True
            self._replay += self._history.take()
        self._flush_replay()
        self.be_event(ChardevEvent.OPENED)
        self.chr_update_read_handler()

    def _on_disconnect(self) -> None:
        if not self._attached:
            return
        self._read_watch.disarm()
        self._write_watch.disarm()
        with self._lock:
            self._attached = False
            # bytes not yet taken by the slave go back to the history for the next user
            self._history.keep(self._replay)
            self._replay.clear()
        self.be_event(ChardevEvent.CLOSED)
        if self.has_watches:
            self.ioloop.call_soon(self.fire_watches)

    # -- output ------------------------------------------------------------------------

    def _write_replay_locked(self) -> bool:
        while self._replay:
            try:
                n = os.write(self.master, self._replay)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return False
            del self._replay[:n]
        return True

    def _flush_replay(self) -> None:
        with self._lock:
            done = self._write_replay_locked()
        if not done:
            self._arm_writer()

    def chr_write(self, data: memoryview) -> int:
        with self._lock:
            if not self._attached or self.master < 0:
                self._history.keep(data)
                return len(data)  # QEMU drops output nobody can read
            if self._replay and not self._write_replay_locked():
                raise BlockingIOError(errno.EAGAIN, "pty buffer full")
            try:
                return os.write(self.master, data)
            except (BlockingIOError, InterruptedError):
                raise BlockingIOError(errno.EAGAIN, "pty buffer full") from None
            except OSError:  # EIO: the slave went away; the poll notices shortly
                self._history.keep(data)
                return len(data)

    def _arm_writer(self) -> None:
        if self.master >= 0 and not self.closed:
            self._write_watch.arm(self.master)

    def _on_writable(self) -> None:
        with self._lock:
            done = self._write_replay_locked()
        if not done:
            return
        self._write_watch.disarm()
        self.fire_watches()

    def chr_arm_watch(self) -> None:
        if not self._attached:
            self.ioloop.call_soon(self.fire_watches)
            return
        self._arm_writer()

    # -- input -------------------------------------------------------------------------

    def chr_update_read_handler(self) -> None:
        if self.closed or self.master < 0 or not self._attached:
            return  # a master without a slave polls as hung up: never watch it then
        if self.be_can_write() > 0:
            self._read_watch.arm(self.master)
        else:
            self._read_watch.disarm()
            if self.reader_attached():
                self.schedule_read_recheck()

    def _on_readable(self) -> None:
        if self.closed or not self._attached:
            return
        n = min(READ_BUF_LEN, self.be_can_write())
        if n > 0:
            try:
                data = os.read(self.master, n)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""  # EIO: the last slave fd was closed
            if data == b"":
                self._on_disconnect()
                return
            if data:
                self.be_write(data)
        self.chr_update_read_handler()

    def chr_close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.master >= 0:
            self._read_watch.disarm()
            self._write_watch.disarm()
            with self._lock:
                self._attached = False
                os.close(self.master)
                self.master = -1


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> PtyConfig:
    return PtyConfig(history=opt_size(opts, "history"), **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> PtyConfig:
    return PtyConfig(history=d.take("history", "integer"), **common)


def _to_opts(c: PtyConfig) -> list[tuple[str, Any]]:
    return [("history", c.history)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "pty"} if text == "pty" else None


OPTIONS = BackendOptions(config=PtyConfig, chardev=PtyChardev, keys={"history": SIZE},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
