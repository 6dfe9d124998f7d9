"""pty: a host pseudo-terminal whose slave (/dev/pts/N) a terminal program opens.

We keep only the master. Whether someone has the slave open shows as POLLHUP on the
master (nobody); it is checked at once when inotify reports an open or close of the slave
(so a terminal program that opens it gets output within milliseconds), and every 100 ms as
a fallback: OPENED when a user opens it and, unlike QEMU, CLOSED when the last one closes
it. Output while nobody is attached is kept in a bounded history=BYTES buffer (64 KiB by
default) and replayed when the slave is next opened; history=0 drops it, as QEMU does. As QEMU 9.2+, the slave's name is
announced on the "e2kchar.chardev.pty.notice" logger (``e2kchar run`` prints it on stderr) and
``path=LINK`` makes a symlink to it, removed when the chardev goes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
from ..history import DEFAULT_LIMIT, History
from ..ioloop import FdWatch, TimerHandle
from ..ownedpath import OwnedPath
from ..qemuopts import SIZE, STR, BackendOptions, Opts, QapiReader, Split, opt_size
from ..types import READ_BUF_LEN, ChardevError, ChardevEvent

log = logging.getLogger("e2kchar.chardev.pty")  # its name before the move to backends/
#: what QEMU prints on stderr unconditionally (``e2kchar run`` shows it without -v)
notice = logging.getLogger("e2kchar.chardev.pty.notice")

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
    path: str | None = None  # QEMU 9.2+: a symlink to the slave


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
        self._inotify: SlaveWatch | None = None
        self._link: OwnedPath | None = None

    def open(self) -> bool:
        history = self.config.history
        self._history = History(DEFAULT_LIMIT if history is None else history)
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
        if self.config.path:
            self._make_link(self.config.path, path)
        notice.info("char device redirected to %s (label %s)", path, self.label)
        self._inotify = SlaveWatch.create(path)
        if self._inotify is not None:
            self._inotify.watch = FdWatch(self.ioloop, self._on_slave_event)
            self._inotify.watch.arm(self._inotify.fd)
        self._timer = self.ioloop.call_later(0, self._poll)
        return False

    def _make_link(self, link: str, target: str) -> None:
        try:
            os.symlink(target, link)
            owned = OwnedPath.of(link)
        except OSError as exc:
            os.close(self.master)
            self.master = -1
            raise ChardevError(f"Failed to create PTY symlink: {exc.strerror}") from None
        self._link = owned

    def _remove_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.remove()

    def _on_slave_event(self) -> None:
        watch = self._inotify
        if watch is None or self.closed:
            return
        watch.drain()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._poll()

    def query_extra(self) -> dict[str, Any]:
        return {"pty": self.pty_path}

    def forget_history(self) -> None:
        """Also what the slave has not read yet: the kernel keeps output written to the
        master for the next opener (flushing the master's output flushes the slave's
        input)."""
        with self._lock:
            self._history.take()
            self._replay.clear()
            if self.master >= 0:
                try:
                    termios.tcflush(self.master, termios.TCOFLUSH)
                except termios.error as exc:
                    log.debug("%s: flushing the pty failed: %s", self.label, exc)

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
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._remove_link()
        if self.master >= 0:
            self._read_watch.disarm()
            self._write_watch.disarm()
            with self._lock:
                self._attached = False
                os.close(self.master)
                self.master = -1


class SlaveWatch:
    """inotify on the slave's /dev/pts node: IN_OPEN / IN_CLOSE tell when a program opens
    or closes it (Linux; None elsewhere, the 100 ms poll then does it alone)."""

    IN_OPEN = 0x20
    IN_CLOSE = 0x08 | 0x10
    IN_NONBLOCK = os.O_NONBLOCK
    IN_CLOEXEC = 0o2000000

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.watch: FdWatch | None = None

    @classmethod
    def create(cls, path: str) -> SlaveWatch | None:
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(cls.IN_NONBLOCK | cls.IN_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(path), cls.IN_OPEN | cls.IN_CLOSE) < 0:
            os.close(fd)
            return None
        return cls(fd)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        if self.watch is not None:
            self.watch.disarm()
        os.close(self.fd)


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        lib: Any
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        except (OSError, AttributeError):
            lib = False
        _LIBC = lib
    return _LIBC or None


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> PtyConfig:
    return PtyConfig(history=opt_size(opts, "history"), path=opts.get("path"), **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> PtyConfig:
    return PtyConfig(history=d.take("history", "integer"), path=d.take("path", "string"),
                     **common)


def _to_opts(c: PtyConfig) -> list[tuple[str, Any]]:
    return [("path", c.path), ("history", c.history)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "pty"} if text == "pty" else None


OPTIONS = BackendOptions(config=PtyConfig, chardev=PtyChardev,
                         keys={"history": SIZE, "path": STR},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
