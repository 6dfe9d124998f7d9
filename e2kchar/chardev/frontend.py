"""CharBackend: a device model's handle on its chardev (QEMU's qemu_chr_fe_* API).

The device never caches the Chardev: after a hotswap ``fe.chardev`` is the new backend, and
writes issued while the swap happens land exactly once on the old or the new one (see
e2kchar.chardev.hotswap for the whole algorithm; the late-writer half is ``_do_write``).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import OutputSink
from .types import ChardevError, ChardevEvent, ChardevIoctl

if TYPE_CHECKING:
    from .base import Chardev, Watch

__all__ = ["CharBackend", "OutputSink"]

log = logging.getLogger(__name__)

CanRead = Callable[[], int]
Read = Callable[[bytes], Any]
Event = Callable[[ChardevEvent], Any]
BeChange = Callable[[], int]


class CharBackend:
    """Frontend handle; attach with CharBackend(chardev) (one frontend per chardev, four per mux)."""

    def __init__(self, chardev: Chardev | None = None) -> None:
        self._chr: Chardev | None = None
        self.tag = 0
        self.fe_open = False
        self._can_read: CanRead | None = None
        self._read: Read | None = None
        self._event: Event | None = None
        self._be_change: BeChange | None = None
        #: the output hot path (OutputSink): bound by the attached chardev, re-bound by a
        #: hotswap; a frontend may keep this object (it is never replaced)
        self.sink = OutputSink()
        if chardev is not None:
            self.attach(chardev)

    # ------------------------------------------------------------------------------------
    # attachment

    def attach(self, chardev: Chardev) -> None:
        """qemu_chr_fe_init: handlers are kept, fe_open is reset."""
        if chardev is None:
            raise ChardevError("missing associated backend")
        if self._chr is not None and self._chr is not chardev:
            raise ChardevError(f"Device '{self._chr.label}' is in use")
        if chardev.closed:
            raise ChardevError(f"Device '{chardev.label}' is closed")
        self.tag = chardev.attach_frontend(self)
        self._chr = chardev
        self.fe_open = False
        with chardev.write_lock:
            if self.sink.drainer is None:
                self.sink.buf.clear()  # put while no chardev was attached: gone, as QEMU's
            chardev.bind_sink(self.sink)

    @property
    def chardev(self) -> Chardev | None:
        return self._chr

    @property
    def backend_connected(self) -> bool:
        return self._chr is not None

    @property
    def backend_open(self) -> bool:
        return bool(self._chr is not None and self._chr.be_open)

    @property
    def has_be_change(self) -> bool:
        return self._be_change is not None

    def backend_destroyed(self, chardev: Chardev) -> None:
        """The chardev went away under us (Chardev.finalize): become unconnected."""
        if self._chr is chardev:
            self._chr = None
            self.fe_open = False

    def switch_chardev(self, chardev: Chardev) -> None:
        """Point this handle and its sink at another chardev (e2kchar.chardev.hotswap does
        it with both chardevs' write locks held, so a writer lands on one of them): the old
        one collects what the sink holds, the new one drains it from now on."""
        old = self._chr
        if old is not None:
            old.release_sink(self.sink)
        self._chr = chardev
        chardev.bind_sink(self.sink)

    # ------------------------------------------------------------------------------------
    # handlers

    def set_handlers(self, can_read: CanRead | None, read: Read | None,
                     event: Event | None = None, be_change: BeChange | None = None,
                     set_open: bool = True, *, focus: bool = True) -> None:
        """Install the callbacks; replays OPENED when the backend is already open.

        On a mux, registering takes the focus (as QEMU does) unless focus=False: a monitor
        added next to a running console need not steal it. Callbacks always run on the
        registry's I/O thread; when called from another thread the replay and read-watch
        update happen there shortly after.
        """
        chr_ = self._chr
        if chr_ is None:
            return
        fe_open = can_read is not None or read is not None or event is not None
        self._can_read = can_read
        self._read = read
        self._event = event
        self._be_change = be_change

        def finish() -> None:
            if self._chr is not chr_ or chr_.closed:
                return
            chr_.chr_update_read_handler()
            if set_open:
                self.set_open(fe_open)
            if fe_open:
                if focus:
                    chr_.chr_take_focus(self)
                if chr_.be_open:
                    self.deliver_event(ChardevEvent.OPENED)

        chr_.ioloop.run_sync(finish) if chr_.ioloop.in_loop_thread() \
            else chr_.ioloop.call_soon(finish)

    # ------------------------------------------------------------------------------------
    # for backends (on the I/O thread): the frontend's side of input and events

    @property
    def has_reader(self) -> bool:
        """A can_read handler is installed (the frontend takes input)."""
        return self._can_read is not None

    def can_receive(self) -> int:
        """Bytes the frontend can take now (its can_read(); 0 without one or on error)."""
        can_read = self._can_read
        if can_read is None:
            return 0
        try:
            return max(0, int(can_read()))
        except Exception:
            log.exception("%s: frontend can_read failed", self._label())
            return 0

    def deliver(self, data: bytes) -> bool:
        """Hand input to the frontend's read handler; False when it has none."""
        read = self._read
        if read is None:
            return False
        try:
            read(data)
        except Exception:
            log.exception("%s: frontend read handler failed", self._label())
        return True

    def deliver_event(self, event: ChardevEvent) -> None:
        """Hand an event (OPENED, CLOSED, BREAK, MUX_IN/OUT) to the frontend's handler."""
        handler = self._event
        if handler is not None:
            try:
                handler(event)
            except Exception:
                log.exception("frontend event handler failed for %s", event.name)

    def _label(self) -> str | None:
        chr_ = self._chr
        return chr_.label if chr_ is not None else None

    def call_be_change(self) -> int:
        handler = self._be_change
        if handler is None:
            return -1
        try:
            ret = handler()
        except Exception:
            log.exception("frontend be_change handler failed")
            return -1
        return int(ret) if ret is not None else 0

    # ------------------------------------------------------------------------------------
    # output

    def _do_write(self, data: bytes, write_all: bool) -> int:
        done = 0
        data = bytes(data)
        while True:
            chr_ = self._chr
            if chr_ is None:
                return done
            res = chr_.write(data[done:], write_all)
            if res > 0:
                done += res
            if chr_.closed or chr_.closing:
                # the backend was swapped out under us: finish on the new one
                if self._chr is not chr_ and self._chr is not None and done < len(data):
                    continue
            if done or res >= 0:
                return done
            return res

    def write(self, data: bytes) -> int:
        """One attempt: returns bytes accepted (may be short or 0) or -errno."""
        chr_ = self._chr
        if chr_ is not None and not chr_.closing and data:
            res = chr_.write(data, False)  # the hot path: no swap in progress
            if not chr_.closing:
                return res
            if 0 < res < len(data):  # swapped out mid-write: the rest goes to the new one
                return res + max(0, self._do_write(bytes(data)[res:], False))
            if res > 0:
                return res
        if not data:
            return 0
        return self._do_write(data, False)

    def writev(self, bufs: list[memoryview]) -> int:
        """write() of several buffers in order, in one backend call where it has one
        (``writev(2)``); one attempt: bytes accepted (may be short or 0) or -errno."""
        chr_ = self._chr
        if chr_ is not None and not chr_.closing and bufs:
            res = chr_.writev(bufs)
            if res > 0 or not chr_.closing:
                return res  # (short after a swap began: the caller retries the rest)
        if not bufs:
            return 0
        return self.write(b"".join(bufs))  # a swap in progress: write() finds the new one

    def write_all(self, data: bytes) -> int:
        """Block until every byte is accepted or the backend fails."""
        if not data:
            return 0
        return self._do_write(data, True)

    # ------------------------------------------------------------------------------------
    # control

    def ioctl(self, cmd: int | ChardevIoctl, arg: Any = None) -> Any:
        """SET_PARAMS(SerialParams), SET_BREAK(bool), SET_TIOCM(int), GET_TIOCM -> int.

        Returns 0 (or the bits for GET_TIOCM) on success, -errno.ENOTSUP when the backend
        has no such control.
        """
        chr_ = self._chr
        if chr_ is None:
            return -errno.ENOTSUP
        try:
            return chr_.chr_ioctl(int(cmd), arg)
        except ChardevError:
            raise
        except Exception:
            log.exception("%s: ioctl %s failed", chr_.label, cmd)
            return -errno.EIO

    def add_watch(self, callback: Callable[[], Any]) -> Watch | None:
        """Call callback once (on the I/O thread) when the backend can take more output."""
        chr_ = self._chr
        if chr_ is None or chr_.closed:
            return None
        return chr_.add_watch(callback)

    def accept_input(self) -> None:
        """The frontend has room again: deliver buffered input."""
        chr_ = self._chr
        if chr_ is None:
            return

        def run() -> None:
            if self._chr is chr_ and not chr_.closed:
                chr_.chr_accept_input()
                chr_.chr_update_read_handler()

        chr_.ioloop.call_soon(run)

    def set_open(self, fe_open: bool) -> None:
        chr_ = self._chr
        if chr_ is None or self.fe_open == bool(fe_open):
            return
        self.fe_open = bool(fe_open)
        chr_.chr_set_fe_open(self.fe_open)

    def set_echo(self, echo: bool) -> None:
        chr_ = self._chr
        if chr_ is not None:
            chr_.chr_set_echo(bool(echo))

    def take_focus(self) -> None:
        chr_ = self._chr
        if chr_ is not None:
            chr_.ioloop.call_soon(chr_.chr_take_focus, self)

    def disconnect(self) -> None:
        chr_ = self._chr
        if chr_ is not None:
            chr_.ioloop.call_soon(chr_.chr_disconnect)

    def wait_connected(self, timeout: float | None = None) -> None:
        chr_ = self._chr
        if chr_ is None:
            raise ChardevError("missing associated backend")
        chr_.chr_wait_connected(timeout)

    def deinit(self, delete: bool = False) -> None:
        """Detach (handlers cleared, fe_open 0); with delete also destroy the chardev."""
        chr_ = self._chr
        if chr_ is None:
            return
        self._can_read = self._read = self._event = self._be_change = None
        self.set_open(False)

        def finish() -> None:
            chr_.chr_update_read_handler()
            chr_.detach_frontend(self)
            if delete:
                chr_.host.destroy(chr_)

        with chr_.write_lock:
            chr_.release_sink(self.sink)  # what was put goes out on chr_
        self._chr = None
        self.fe_open = False
        if chr_.closed:
            chr_.detach_frontend(self)
            return
        chr_.ioloop.run_sync(finish)
