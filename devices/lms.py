"""LMS simulator console: the polled debug port at I/O ports 0x300..0x304 (window offsets 0..4).

Protocol of the kernels and BIOS (docs/devices/lms.md): a 32-bit read of 0x300 that is not
0xFFFFFFFF means "present"; they spin while a 32-bit read of 0x300 is non-zero ("busy"),
then byte-write the character to 0x300 followed by a byte-write of 0 (a strobe, not output).
Here a 32-bit read of 0x300 is 0 when idle and 1 while bytes the backend refused are still
waiting (so nothing is lost); a narrower read of 0x300 returns the next input byte (0 when
none) and 0x301 reads 1 while input is available. An unconnected console reads all-ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from e2kchar.chardev.types import ChardevEvent

from .device import BYTE, CharPort, SerialDevice
from .irq import IrqLine

if TYPE_CHECKING:
    from e2kchar.chardev.base import Chardev

log = logging.getLogger(__name__)



class Reg(IntEnum):
    """Port offsets in the window at I/O port 0x300."""

    DATA = 0     # 32-bit read: busy; narrower read: next input byte; write: output byte
    STATUS = 1   # read: input available; write: the shift register
    NET0 = 2     # network socket ports: no network behind this console
    NET1 = 3
    TRACER = 4


# plain ints for the dispatch: a `Reg.DATA` attribute load costs about 1,000 instructions
# in CPython 3.11, and the busy poll runs once per output byte
DATA, STATUS, NET0, NET1, TRACER = (int(r) for r in Reg)

IN_BUF_LEN = 64
OUT_BUF_LEN = 4096
_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


class LmsConsole(SerialDevice):
    """The LMS console port; the offsets are `Reg`."""

    def __init__(self, chardev: Chardev | None = None, *, irq: IrqLine | None = None,
                 lock: threading.RLock | None = None, name: str = "lms") -> None:
        super().__init__(None, lock)
        self.name = name
        #: the common device interface's interrupt output; the LMS port has no interrupts
        #: (its Linux driver polls), so the line stays low
        self.irq = irq if irq is not None else IrqLine()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.shift = 0
        self.tracer = 0
        self.net = [0, 0]
        self.present = chardev is not None
        self.port = CharPort(chardev, self.lock, name, can_read=self._can_read,
                             read=self._receive, event=self._event, be_change=self._be_change)
        self.ports.append(self.port)
        self.sink = self.port.sink

    # ------------------------------------------------------------------------------------
    # register interface

    def accessors(self, offset: int) -> tuple[Callable[[int, int], int],
                                              Callable[[int, int, int], None]]:
        """The data port gets its own accessors (device.SerialDevice.accessors): the busy
        poll, the character and its strobe are one Python frame per access."""
        if offset == DATA:
            return self._read_data_port, self._write_data_port
        return self.read, self.write

    def _read_data_port(self, offset: int, size: int) -> int:
        """read() at DATA: the 32-bit busy poll is a plain read."""
        if size >= 4 and self.present and size in _ONES:
            return 1 if self.outbuf else 0
        return self.read(offset, size)

    def _write_data_port(self, offset: int, size: int, value: int) -> None:
        """write() at DATA: the strobe is ignored and a character for an idle console
        leaves in one C-level call (OutputSink).

        No lock: register accesses come from one thread (docs/embedding.md) and the I/O
        thread empties outbuf only after its bytes went to the backend (a byte put here
        comes after them).
        """
        if size in _ONES:
            b = value & 0xFF
            if not b:
                return  # the strobe that follows every character
            sink = self.sink
            if sink.fast and not self.outbuf:
                put = sink.put_byte  # a slot load and a call: `sink.put_byte(b)` costs more
                put(b)
                if sink.idle:
                    sink.wake()
                return
        self.write(offset, size, value)

    def read(self, offset: int, size: int) -> int:
        ones = _ONES.get(size)
        if ones is None or not DATA <= offset <= TRACER:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: read of unsupported offset %#x size %d", self.name, offset, size)
            return 0
        if not self.present:
            return ones
        if offset == DATA and size >= 4:
            return 1 if self.outbuf else 0  # the busy poll: a plain read, no lock needed
        with self.lock:
            if offset == DATA:
                if not self.inbuf:
                    return 0
                b = self.inbuf.pop(0)
                self.port.room_again()
                return b
            if offset == STATUS:
                return 1 if self.inbuf else 0
            if offset == TRACER:
                return self.tracer & ones
            return 0  # network socket ports: no network behind this console

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in _ONES or not DATA <= offset <= TRACER:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: write of unsupported offset %#x size %d value %#x",
                          self.name, offset, size, value)
            return
        with self.lock:
            if offset == DATA:
                b = value & 0xFF
                if b:  # 0 is the strobe that follows every character
                    self._output(b)
            elif offset == STATUS:
                self.shift = value & _ONES[size]
            elif offset == TRACER:
                self.tracer = value & _ONES[size]
            else:
                self.net[offset - NET0] = value & _ONES[size]

    # ------------------------------------------------------------------------------------
    # data paths

    def _output(self, b: int) -> None:
        if self.outbuf:
            if len(self.outbuf) >= OUT_BUF_LEN:
                log.warning("%s: guest ignored the busy flag; byte %#x dropped", self.name, b)
                return
            self.outbuf.append(b)
            return
        sink = self.port.sink
        if sink.fast:  # one C-level call (OutputSink)
            sink.put(BYTE[b])
            if sink.idle:
                sink.wake()
            return
        if self.port.out.write(BYTE[b]) > 0:
            return
        self.outbuf.append(b)
        self._wait()

    def _wait(self) -> None:
        if not self.port.out.wait_writable(self._pump):
            log.warning("%s: backend gone, %d byte(s) dropped", self.name, len(self.outbuf))
            self.outbuf.clear()

    def _pump(self) -> None:
        if not self.outbuf:
            return
        n = self.port.out.write(bytes(self.outbuf))
        if n > 0:
            del self.outbuf[:n]
        if self.outbuf:
            self._wait()

    def _can_read(self) -> int:
        return IN_BUF_LEN - len(self.inbuf)

    def _receive(self, data: bytes) -> None:
        with self.lock:
            room = IN_BUF_LEN - len(self.inbuf)
            if len(data) > room:  # a backend that ignored can_read
                log.warning("%s: %d input byte(s) beyond the offered room dropped", self.name,
                            len(data) - room)
            self.inbuf += data[:room]

    def _event(self, event: ChardevEvent) -> None:
        pass  # no break, no modem lines on this port

    def _be_change(self) -> int:
        with self.lock:
            self.port.after_swap()
        return 0

    # ------------------------------------------------------------------------------------
    # reset and state

    def reset(self) -> None:
        """Input and the tracer state are cleared; output already accepted still drains."""
        with self.lock:
            self.inbuf.clear()
            self.shift = self.tracer = 0
            self.net = [0, 0]
            self.port.room_again()

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"inbuf": list(self.inbuf), "outbuf": list(self.outbuf), "shift": self.shift,
                    "tracer": self.tracer, "net": list(self.net)}

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.port.out.cancel_wait()
            self.inbuf = bytearray(bytes(state.get("inbuf", ()))[:IN_BUF_LEN])
            self.outbuf = bytearray(bytes(state.get("outbuf", ()))[:OUT_BUF_LEN])
            self.shift = int(state.get("shift", 0))
            self.tracer = int(state.get("tracer", 0))
            self.net = [int(x) for x in list(state.get("net", (0, 0)))[:2]] + [0] * 2
            self.net = self.net[:2]
            self._pump()
            self.port.room_again()
