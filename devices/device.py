"""Plumbing shared by the serial models: one lock, a lazily made clock, and CharPort.

CharPort is a serial line's CharBackend plus what every UART model needs around it:
transmit that never silently drops (``out``, an OutQueue used unbuffered: a refused byte
stays in the device's transmitter and is retried from a "backend writable" watch), receive
flow control (the backend is told to hold input while the device has no room and nudged when
room appears), de-duplicated line-parameter ioctls, and the hotswap steps (re-register,
forget what the old backend was told, move the watch).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from e2kchar.chardev.frontend import CharBackend, OutputSink
from e2kchar.chardev.outqueue import OutQueue
from e2kchar.chardev.types import ChardevEvent, ChardevIoctl, SerialParams, Tiocm

from .clock import Clock, HostClock

if TYPE_CHECKING:
    from e2kchar.chardev.base import Chardev

log = logging.getLogger(__name__)

#: one preallocated bytes object per byte value: the transmit hot path allocates nothing
BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256))

_MODEM_OUT = int(Tiocm.DTR | Tiocm.RTS)


class CharPort:
    """A device's handle on one chardev (or on nothing, for an unconnected port)."""

    def __init__(self, chardev: Chardev | None, lock: threading.RLock, name: str, *,
                 can_read: Callable[[], int], read: Callable[[bytes], Any],
                 event: Callable[[ChardevEvent], Any],
                 be_change: Callable[[], int]) -> None:
        self.lock = lock
        self.name = name
        self._can_read_cb = can_read
        self._read_cb = read
        self._event_cb = event
        self._be_change_cb = be_change
        #: set (under the device lock) when can_read answered 0: the backend holds input
        self.throttled = False
        #: None = not asked yet, False = the backend has no modem lines
        self.tiocm_ok: bool | None = None
        self._params: SerialParams | None = None
        self._brk: bool | None = None
        self._mout: int | None = None
        self.fe: CharBackend | None = CharBackend(chardev) if chardev is not None else None
        #: the transmit hot path (OutputSink, docs/architecture.md): while ``sink.fast``, a
        #: byte leaving an idle transmitter is ``sink.put(b)`` (then ``sink.wake()`` if
        #: ``sink.idle``); its chardev re-binds it at every hotswap. An unconnected port
        #: has one that is never fast.
        self.sink: OutputSink = self.fe.sink if self.fe is not None else OutputSink()
        #: transmit: one attempt with out.write(), out.wait_writable(retry) when refused;
        #: bytes for an unconnected port or a destroyed backend leave the wire (consumed)
        self.out = OutQueue(self.fe, lock, name, drop_when_gone=True)
        self.register()

    # ------------------------------------------------------------------------------------
    # handlers

    def register(self) -> None:
        """(Re-)install the frontend handlers (also the first step of a hotswap)."""
        if self.fe is not None:
            self.fe.set_handlers(self._can_read, self._read, self._event_cb,
                                 self._be_change_cb, set_open=True)

    def _can_read(self) -> int:
        with self.lock:
            n = self._can_read_cb()
            if n <= 0:
                self.throttled = True
                return 0
            return n

    def _read(self, data: bytes) -> None:
        with self.lock:
            self._read_cb(data)
            if self._can_read_cb() <= 0:
                # full now: a backend (or a mux) that had more than the room it was offered
                # holds the rest without having heard "0" from can_read, so it must be
                # nudged once there is room again, as after a refusal
                self.throttled = True

    def room_again(self) -> None:
        """The device has input room again; call under the device lock."""
        if self.throttled:
            self.throttled = False
            if self.fe is not None:
                self.fe.accept_input()

    @property
    def connected(self) -> bool:
        return self.fe is not None and self.fe.chardev is not None

    # ------------------------------------------------------------------------------------
    # line state, sent only when it changes

    def set_params(self, params: SerialParams | None) -> None:
        if params is None or params == self._params or self.fe is None:
            return
        self._params = params
        self.fe.ioctl(ChardevIoctl.SET_PARAMS, params)

    def set_break(self, on: bool) -> None:
        if on == self._brk or self.fe is None:
            return
        self._brk = on
        self.fe.ioctl(ChardevIoctl.SET_BREAK, on)

    def get_tiocm(self) -> int | None:
        """The backend's modem lines (Tiocm bits), or None when it has none."""
        if self.fe is None or self.tiocm_ok is False:
            return None
        bits = self.fe.ioctl(ChardevIoctl.GET_TIOCM, None)
        if not isinstance(bits, int) or bits < 0:
            self.tiocm_ok = False
            return None
        self.tiocm_ok = True
        return bits

    def set_modem_out(self, dtr: bool, rts: bool) -> None:
        """Drive DTR/RTS, keeping the backend's other lines (GET, replace, SET)."""
        want = (int(Tiocm.DTR) if dtr else 0) | (int(Tiocm.RTS) if rts else 0)
        if want == self._mout or self.fe is None:
            return
        bits = self.get_tiocm()
        if bits is None:
            return
        self._mout = want
        self.fe.ioctl(ChardevIoctl.SET_TIOCM, (bits & ~_MODEM_OUT) | want)

    def line_reset(self) -> None:
        """A device reset: drop a break and DTR/RTS the backend was given, nothing else."""
        if self._brk:
            self.set_break(False)
        if self._mout:
            self.set_modem_out(False, False)

    def forget_line_state(self) -> None:
        """A new backend knows nothing: the next set_* calls go through."""
        self._params = None
        self._brk = None
        self._mout = None
        self.tiocm_ok = None

    def after_swap(self) -> None:
        """Hotswap steps that do not depend on the device: handlers, state, pending watch."""
        self.register()
        self.forget_line_state()
        self.throttled = False
        self.out.after_swap()

    def close(self) -> None:
        self.out.close()
        fe, self.fe = self.fe, None
        if fe is not None:
            fe.deinit()


class SerialDevice:
    """Base of the serial models: the device lock and the clock (made lazily when needed).

    Register accesses (CPU thread), backend callbacks (I/O thread) and timers (clock thread)
    all run under ``lock``; the IrqLine's on_change is called with it held. A machine that
    takes its own lock in on_change should pass that lock (an RLock) as ``lock=`` so that
    there is one lock and no lock-order inversion (docs/embedding.md, "Threads and locks").
    """

    def __init__(self, clock: Clock | None = None,
                 lock: threading.RLock | None = None) -> None:
        self.lock = lock if lock is not None else threading.RLock()
        self._clock = clock
        self._own_clock: HostClock | None = None
        self.ports: list[CharPort] = []

    def accessors(self, offset: int) -> tuple[Callable[[int, int], int],
                                              Callable[[int, int, int], None]]:
        """The read and write functions for one register offset, for a bus that dispatches
        by offset (the machine's MMIO table): called as ``read(offset, size)`` and
        ``write(offset, size, value)`` with that offset, they do exactly what ``read`` and
        ``write`` do, but a model may specialise them for a hot register so a polled byte
        costs one Python frame per access (docs/interfaces.md). Default: read, write."""
        return self.read, self.write

    def read(self, offset: int, size: int) -> int:
        raise NotImplementedError

    def write(self, offset: int, size: int, value: int) -> None:
        raise NotImplementedError

    @property
    def clock(self) -> Clock:
        clock = self._clock
        if clock is None:
            clock = self._own_clock = HostClock(name=f"{type(self).__name__}-clock")
            self._clock = clock
        return clock

    def close(self) -> None:
        """Detach from the chardevs and stop an owned clock (call without the lock held)."""
        for port in self.ports:
            port.close()
        if self._own_clock is not None:
            self._own_clock.close()
            self._own_clock = None
            self._clock = None
