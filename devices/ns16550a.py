"""NS16550A UART (COM1 on the E2K machine), faithful enough for Linux's 8250 autoconfig probe.

Registers sit at ``index << regshift``. Transmit is immediate (no baud-rate pacing): a byte
goes straight to the backend; if the backend refuses it the byte stays in the transmitter,
THRE/TEMT stay clear and the device retries from a "backend writable" watch. Receive is
flow-controlled: the backend is only offered as many bytes as the FIFO has room for.
Register reference: docs/devices/ns16550a.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from e2kchar.chardev.types import ChardevEvent, SerialParams, Tiocm

from .clock import Clock, Timer
from .device import BYTE, CharPort, SerialDevice
from .irq import IrqLine

if TYPE_CHECKING:
    from e2kchar.chardev.base import Chardev

log = logging.getLogger(__name__)


class Reg(IntEnum):
    """Register index; the bus offset is ``index << regshift``.

    One index names two or three registers: reads and writes differ at 0 (RBR/THR) and 2
    (IIR/FCR), and LCR's DLAB turns 0 and 1 into the divisor latch (DLL/DLM).
    """

    RBR = 0
    IER = 1
    IIR = 2
    LCR = 3
    MCR = 4
    LSR = 5
    MSR = 6
    SCR = 7
    THR = 0
    DLL = 0
    DLM = 1
    FCR = 2


# The dispatch compares the looked-up member with `is` against these module globals: a
# `Reg.LSR` attribute load costs about 1,000 instructions per access in CPython 3.11, a
# global a few, and the LSR read and THR write run once per polled byte.
RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = Reg
THR, DLL, DLM, FCR = Reg.THR, Reg.DLL, Reg.DLM, Reg.FCR

# IER
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 0x01, 0x02, 0x04, 0x08
# IIR ids
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_FIFO = 0xC0
# FCR
FCR_FE, FCR_RFR, FCR_XFR, FCR_DMA = 0x01, 0x02, 0x04, 0x08
# LCR
LCR_DLAB, LCR_SBC = 0x80, 0x40
# MCR
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
# LSR
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI, LSR_THRE, LSR_TEMT = 1, 2, 4, 8, 0x10, 0x20, 0x40
LSR_FIFOE = 0x80
LSR_ERR = LSR_OE | LSR_PE | LSR_FE | LSR_BI
# MSR
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80

FIFO_LEN = 16
TRIGGERS = (1, 4, 8, 14)
MODEM_POLL_NS = 10_000_000
RESET_MSR = MSR_DCD | MSR_DSR | MSR_CTS


class Ns16550a(SerialDevice):
    """An NS16550A with 16-byte FIFOs; see the module docstring for the transmit model."""

    def __init__(self, chardev: Chardev | None = None, irq: IrqLine | None = None,
                 regshift: int = 0, baudbase: int = 115200, *, clock: Clock | None = None,
                 lock: threading.RLock | None = None, name: str = "ns16550a") -> None:
        super().__init__(clock, lock)
        if not isinstance(regshift, int) or not 0 <= regshift <= 3:
            raise ValueError(f"ns16550a: regshift must be 0..3, not {regshift!r}")
        if not isinstance(baudbase, int) or baudbase <= 0:
            raise ValueError(f"ns16550a: baudbase must be a positive integer, not {baudbase!r}")
        self.name = name
        self.irq = irq if irq is not None else IrqLine()
        self.regshift = regshift
        self.baudbase = baudbase
        # offset -> register; accesses elsewhere (or unaligned) read 0
        self._index: dict[int, Reg] = {r << regshift: r for r in Reg}
        self._sizes = frozenset((1,)) if regshift == 0 else frozenset(
            s for s in (1, 2, 4, 8) if s <= (1 << regshift))
        self._rx_timer: Timer | None = None
        self._rx_deadline = 0
        self._msl_timer: Timer | None = None
        self._char_ns = 0
        self._init_regs()
        self.port = CharPort(chardev, self.lock, name, can_read=self._can_read,
                             read=self._receive, event=self._event,
                             be_change=self._be_change)
        self.ports.append(self.port)
        self.sink = self.port.sink
        with self.lock:
            self._apply_line(full=False)
            self.msr &= 0xF0  # a reset leaves no modem-status deltas

    # ------------------------------------------------------------------------------------
    # reset and state

    def _init_regs(self) -> None:
        self.divider = 12
        self.ier = 0
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.lsr = LSR_TEMT | LSR_THRE
        self.msr = RESET_MSR
        #: the modem lines outside the chip (from GET_TIOCM, or all asserted when the backend
        #: has none); MSR shows them except in loopback, where it shows MCR's outputs
        self.lines = RESET_MSR
        self.scr = 0
        self.fcr = 0
        self.rbr = 0
        self.trigger = 1
        self.rxf = bytearray()
        self.rxbrk = bytearray()  # per FIFO entry: 1 = the character is a break
        self.txf = bytearray()
        self.tsr = -1
        self.thr_ipending = False
        self.timeout_ipending = False
        self._update_char_time()
        self._update_direct()

    def _update_direct(self) -> None:
        """Whether a THR write may take the lock-free fast path (_write_data): the
        transmitter is empty (TEMT), and no DLAB, loopback or THR-empty interrupt is
        involved. Kept current under the lock by every change of those bits; the I/O thread
        sets TEMT (and so this) only after the transmitter's last byte went to the backend."""
        self._direct = bool(self.lsr & LSR_TEMT) and not (
            self.lcr & LCR_DLAB or self.mcr & MCR_LOOP or self.ier & IER_THRI)

    def reset(self) -> None:
        """Power-on state. Bytes the backend had not taken yet are dropped (logged)."""
        with self.lock:
            pending = len(self.txf) + (self.tsr >= 0)
            if pending:
                log.info("%s: reset drops %d untransmitted byte(s)", self.name, pending)
            self.port.out.cancel_wait()
            self._cancel_rx_timer()
            self._cancel_msl_timer()
            self._init_regs()
            self.port.line_reset()  # LCR break and MCR DTR/RTS are cleared
            self._apply_line(full=False)
            self.msr &= 0xF0  # a reset leaves no modem-status deltas
            self.port.room_again()
            self._update_irq()

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "divider": self.divider, "ier": self.ier, "lcr": self.lcr, "mcr": self.mcr,
                "lsr": self.lsr, "msr": self.msr, "lines": self.lines, "scr": self.scr,
                "fcr": self.fcr,
                "rbr": self.rbr, "rx_fifo": list(self.rxf),
                "rx_brk": list(self.rxbrk), "tx_fifo": list(self.txf),
                "tsr": self.tsr, "thr_ipending": self.thr_ipending,
                "timeout_ipending": self.timeout_ipending, "iir": self._iir_id(),
            }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state() snapshot; the backend gets the line state re-applied."""
        with self.lock:
            self.port.out.cancel_wait()
            self._cancel_rx_timer()
            self._cancel_msl_timer()
            self.divider = int(state["divider"]) & 0xFFFF
            self.ier = int(state["ier"]) & 0x0F
            self.lcr = int(state["lcr"]) & 0xFF
            self.mcr = int(state["mcr"]) & 0x1F
            self.lsr = int(state["lsr"]) & 0xFF
            self.msr = int(state["msr"]) & 0xFF
            default = RESET_MSR if self.mcr & MCR_LOOP else self.msr
            self.lines = int(state.get("lines", default)) & 0xF0
            self.scr = int(state["scr"]) & 0xFF
            self.fcr = int(state["fcr"]) & 0xC9
            self.rbr = int(state.get("rbr", 0)) & 0xFF
            self.trigger = TRIGGERS[self.fcr >> 6]
            depth = FIFO_LEN if self.fcr & FCR_FE else 1
            self.rxf = bytearray(bytes(state.get("rx_fifo", ()))[:depth])
            brk = bytes(1 if x else 0 for x in state.get("rx_brk", ()))[:len(self.rxf)]
            self.rxbrk = bytearray(brk.ljust(len(self.rxf), b"\0"))
            self.txf = bytearray(bytes(state.get("tx_fifo", ()))[:depth])
            tsr = int(state.get("tsr", -1))
            self.tsr = tsr & 0xFF if tsr >= 0 else -1
            self.thr_ipending = bool(state.get("thr_ipending", False))
            self.timeout_ipending = bool(state.get("timeout_ipending", False))
            # re-derive what must agree with the FIFOs
            if self.rxf:
                self.lsr |= LSR_DR
            else:
                self.lsr &= ~(LSR_DR | LSR_BI | LSR_FIFOE)
            self._update_char_time()
            self.port.forget_line_state()
            self._apply_line()
            if self.tsr >= 0 or self.txf:
                self.lsr &= ~(LSR_THRE | LSR_TEMT)
                self._tx_pump()
            else:
                self.lsr |= LSR_THRE | LSR_TEMT
            self._update_direct()
            self._touch_rx()
            self._update_msl_poll()
            self.port.room_again()
            self._update_irq()

    # ------------------------------------------------------------------------------------
    # register interface

    def accessors(self, offset: int) -> tuple[Callable[[int, int], int],
                                              Callable[[int, int, int], None]]:
        """LSR reads and THR writes get their own accessors (device.SerialDevice.accessors):
        the polled putc is one Python frame per access."""
        idx = self._index.get(offset)
        if idx is LSR:
            return self._read_lsr, self.write
        if idx is THR:
            return self.read, self._write_data
        return self.read, self.write

    def _read_lsr(self, offset: int, size: int) -> int:
        """read() at LSR: no lock unless the read clears an error bit (BI, OE, FIFOE)."""
        lsr = self.lsr
        if lsr & 0x92 or size != 1:  # (other sizes, when regshift allows them: read())
            return self.read(offset, size)
        return lsr

    def _write_data(self, offset: int, size: int, value: int) -> None:
        """write() at THR/DLL: the polled putc's byte leaves in one C-level call
        (OutputSink) when the transmitter is empty and nothing else is involved.

        No lock: register accesses come from one thread (docs/embedding.md), the I/O
        thread sets TEMT only after the transmitter's last byte went to the backend (so
        a byte put here comes after it), and ``_direct`` excludes every case that touches
        other state (DLAB, loopback, an interrupt to raise).
        """
        sink = self.sink
        if sink.fast and self._direct and size == 1:
            put = sink.put_byte  # a slot load and a call: `sink.put_byte(v)` costs more
            try:
                put(value)
            except ValueError:  # not a byte (a caller outside the machine): write() masks
                self.write(offset, size, value)
                return
            if sink.idle:
                sink.wake()
            self.thr_ipending = True  # read by IIR only with IER THRI set (not _direct)
            return
        self.write(offset, size, value)

    def read(self, offset: int, size: int) -> int:
        idx = self._index.get(offset)
        if idx is None or size not in self._sizes:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: read of unsupported offset %#x size %d", self.name, offset, size)
            return 0
        if idx is LSR:
            # hot path of every polled putc: an attribute read needs no lock unless the
            # read has a side effect (clearing BI/OE)
            lsr = self.lsr
            if not lsr & 0x92:
                return lsr
            with self.lock:
                lsr = self.lsr
                new = lsr & ~(LSR_BI | LSR_OE)
                if lsr & LSR_FIFOE and 1 not in self.rxbrk[1:]:
                    new &= ~LSR_FIFOE  # no error after the one now reported
                self.lsr = new
                self._update_irq()
                return lsr
        with self.lock:
            if idx is RBR:
                if self.lcr & LCR_DLAB:
                    return self.divider & 0xFF  # DLL
                return self._read_rbr()
            if idx is IER:
                return self.divider >> 8 if self.lcr & LCR_DLAB else self.ier  # DLM
            if idx is IIR:
                iid = self._iir_id()
                if iid == IIR_THRI:
                    self.thr_ipending = False
                    self._update_irq()
                return iid | (IIR_FIFO if self.fcr & FCR_FE else 0)
            if idx is LCR:
                return self.lcr
            if idx is MCR:
                return self.mcr
            if idx is MSR:
                return self._read_msr()
            return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        idx = self._index.get(offset)
        if idx is None or size not in self._sizes:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: write of unsupported offset %#x size %d value %#x",
                          self.name, offset, size, value)
            return
        value &= 0xFF
        lock = self.lock  # acquire/release, not `with`: 0.1 us less per polled byte
        lock.acquire()
        try:
            if idx is THR and self.tsr < 0 and not (self.txf or self.lcr & LCR_DLAB
                                                  or self.mcr & MCR_LOOP):
                # the polled-putc hot path (_write_thr's idle case, inlined): the byte
                # leaves at once when the backend takes it
                sink = self.sink
                if sink.fast:  # one C-level call (OutputSink)
                    sink.put(BYTE[value])
                    if sink.idle:
                        sink.wake()
                    self.thr_ipending = True
                    if self.ier & IER_THRI:
                        self._update_irq()
                    return
                fe = self.port.fe
                if fe is not None and fe.write(BYTE[value]) > 0:
                    self.thr_ipending = True
                    if self.ier & IER_THRI:
                        self._update_irq()
                    return
                self._write_thr(value)  # refused or unconnected: the general path decides
            elif idx is THR:
                if self.lcr & LCR_DLAB:
                    self.divider = (self.divider & 0xFF00) | value  # DLL
                else:
                    self._write_thr(value)
            elif idx is IER:
                if self.lcr & LCR_DLAB:
                    self.divider = (self.divider & 0x00FF) | (value << 8)  # DLM
                else:
                    self._write_ier(value)
            elif idx is FCR:
                self._write_fcr(value)
            elif idx is LCR:
                self._write_lcr(value)
            elif idx is MCR:
                self._write_mcr(value)
            elif idx is SCR:
                self.scr = value
            # LSR and MSR are read-only: writes are ignored (QEMU ignores them too)
        finally:
            lock.release()

    # ------------------------------------------------------------------------------------
    # interrupts

    def _iir_id(self) -> int:
        ier = self.ier
        if ier & IER_RLSI and self.lsr & LSR_ERR:
            return IIR_RLSI
        if ier & IER_RDI:
            if self.timeout_ipending:
                return IIR_CTI
            if self.lsr & LSR_DR and (not self.fcr & FCR_FE or len(self.rxf) >= self.trigger):
                return IIR_RDI
        if ier & IER_THRI and self.thr_ipending:
            return IIR_THRI
        if ier & IER_MSI and self.msr & 0x0F:
            return IIR_MSI
        return IIR_NO_INT

    def _update_irq(self) -> None:
        self.irq.set(self._iir_id() != IIR_NO_INT)

    # ------------------------------------------------------------------------------------
    # transmit

    def _write_thr(self, value: int) -> None:
        self.thr_ipending = False
        if self.mcr & MCR_LOOP:
            self._rx_push(value, False)
            self.thr_ipending = bool(self.lsr & LSR_THRE)
            self._update_irq()
            return
        if self.tsr < 0 and not self.txf:
            # hot path: idle transmitter, the byte leaves at once
            if self.port.out.write(BYTE[value]) > 0:
                self.thr_ipending = True
                if self.ier & IER_THRI:
                    self._update_irq()
                return
            self.tsr = value
            self.lsr &= ~(LSR_THRE | LSR_TEMT)
            self._update_direct()
            self._wait_tx()
        else:
            if self.fcr & FCR_FE:
                if len(self.txf) >= FIFO_LEN:
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("%s: THR write into a full FIFO overwrites", self.name)
                    del self.txf[0]
                self.txf.append(value)
            else:
                self.txf[:] = BYTE[value]  # 16450 holding register: the last write wins
            self.lsr &= ~(LSR_THRE | LSR_TEMT)
            self._update_direct()
        if self.ier & IER_THRI:
            self._update_irq()

    def _wait_tx(self) -> None:
        if not self.port.out.wait_writable(self._tx_pump):
            # the backend went away for good: the bytes leave the wire
            self._tx_drop()

    def _tx_drop(self) -> None:
        log.warning("%s: backend gone, %d byte(s) dropped", self.name,
                    len(self.txf) + (self.tsr >= 0))
        self.txf.clear()
        self.tsr = -1
        self._tx_done()

    def _tx_pump(self) -> None:
        """Retry everything in the transmit path (I/O thread, under the lock)."""
        if self.tsr < 0 and not self.txf:
            return
        data = (BYTE[self.tsr] if self.tsr >= 0 else b"") + bytes(self.txf)
        n = self.port.out.write(data)
        if n <= 0:
            self._wait_tx()
            return
        if self.tsr >= 0:
            self.tsr = -1
            n -= 1
        del self.txf[:n]
        if self.txf:
            self.tsr = self.txf.pop(0)
            self._wait_tx()
            return
        self._tx_done()

    def _tx_done(self) -> None:
        if not self.lsr & LSR_THRE:
            self.thr_ipending = True
        self.lsr |= LSR_THRE | LSR_TEMT
        self._update_direct()  # after the bytes went out: a fast-path byte comes after them
        self._update_irq()

    # ------------------------------------------------------------------------------------
    # receive

    def _can_read(self) -> int:
        if self.mcr & MCR_LOOP:
            return 0
        if self.fcr & FCR_FE:
            return FIFO_LEN - len(self.rxf)
        return 0 if self.rxf else 1

    def _receive(self, data: bytes) -> None:
        with self.lock:
            for b in data:
                self._rx_push(b, False)
            self._update_irq()

    def _event(self, event: ChardevEvent) -> None:
        if event == ChardevEvent.BREAK:
            with self.lock:
                self._rx_push(0, True)
                self._update_irq()

    def _rx_push(self, value: int, brk: bool) -> None:
        rxf = self.rxf
        flag = 1 if brk else 0
        if self.fcr & FCR_FE:
            if len(rxf) >= FIFO_LEN:
                self.lsr |= LSR_OE
                return
            rxf.append(value)
            self.rxbrk.append(flag)
            if brk:
                self.lsr |= LSR_FIFOE
        elif rxf:
            self.lsr |= LSR_OE
            rxf[0] = value
            self.rxbrk[0] = flag
        else:
            rxf.append(value)
            self.rxbrk.append(flag)
        self.lsr |= LSR_DR
        if self.rxbrk[0]:
            self.lsr |= LSR_BI  # BI describes the character at the head of the FIFO
        self._touch_rx()

    def _read_rbr(self) -> int:
        rxf = self.rxf
        if not rxf:
            return self.rbr
        b = self.rbr = rxf.pop(0)
        rxbrk = self.rxbrk
        del rxbrk[0]
        self.timeout_ipending = False
        if not rxf:
            self.lsr &= ~(LSR_DR | LSR_BI)
        else:
            if rxbrk[0]:
                self.lsr |= LSR_BI
            else:
                self.lsr &= ~LSR_BI
            self._touch_rx()
        self.port.room_again()
        self._update_irq()
        return b

    # character timeout: one timer at most, re-armed lazily when the deadline moved

    def _timeout_armable(self) -> bool:
        return bool(self.fcr & FCR_FE and self.ier & IER_RDI and self.rxf
                    and not self.timeout_ipending)

    def _touch_rx(self) -> None:
        if not self._timeout_armable():
            return
        clock = self.clock
        self._rx_deadline = clock.now_ns() + 4 * self._char_ns
        if self._rx_timer is None:
            self._rx_timer = clock.call_at(self._rx_deadline, self._rx_timeout)

    def _rx_timeout(self) -> None:
        with self.lock:
            self._rx_timer = None
            if not self._timeout_armable():
                return
            if self.clock.now_ns() >= self._rx_deadline:
                self.timeout_ipending = True
                self._update_irq()
            else:
                self._rx_timer = self.clock.call_at(self._rx_deadline, self._rx_timeout)

    def _cancel_rx_timer(self) -> None:
        timer, self._rx_timer = self._rx_timer, None
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------------------------
    # control registers

    def _write_ier(self, value: int) -> None:
        value &= 0x0F
        old, self.ier = self.ier, value
        self._update_direct()
        if value & IER_THRI and self.lsr & LSR_THRE:
            # enabling THRI (or rewriting it) while THRE is set re-arms the interrupt
            self.thr_ipending = True
        if value & IER_RDI and not old & IER_RDI:
            self._touch_rx()
        if (value ^ old) & IER_MSI:
            self._update_msl_poll()
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_FE:
            value |= FCR_RFR | FCR_XFR
        if value & FCR_RFR:
            self.rxf.clear()
            self.rxbrk.clear()
            self.lsr &= ~(LSR_DR | LSR_BI | LSR_FIFOE)
            self.timeout_ipending = False
            self._cancel_rx_timer()
            self.port.room_again()
        if value & FCR_XFR:
            self.txf.clear()
            self.lsr |= LSR_THRE
            if self.tsr < 0:
                self.lsr |= LSR_TEMT
                self._update_direct()
            self.thr_ipending = True
        self.fcr = value & 0xC9
        self.trigger = TRIGGERS[value >> 6]
        self._update_irq()

    def _write_lcr(self, value: int) -> None:
        old, self.lcr = self.lcr, value
        self._update_direct()
        if (value ^ old) & LCR_SBC:
            self.port.set_break(bool(value & LCR_SBC))
            if value & LCR_SBC and self.mcr & MCR_LOOP:
                self._rx_push(0, True)
                self._update_irq()
        if not value & LCR_DLAB:
            self._update_char_time()
            self.port.set_params(self._line_params())

    def _write_mcr(self, value: int) -> None:
        value &= 0x1F
        old, self.mcr = self.mcr, value
        self._update_direct()
        if value & MCR_LOOP:
            self._set_msr_lines(self._loop_msr())
        else:
            self.port.set_modem_out(bool(value & MCR_DTR), bool(value & MCR_RTS))
            if old & MCR_LOOP:
                # out of loopback MSR shows the outside lines again (polled when the backend
                # has them, else the ones it had before)
                self._poll_modem()
                self._set_msr_lines(self.lines)
                self.port.room_again()
        if (value ^ old) & MCR_LOOP:
            self._update_msl_poll()
        self._update_irq()

    # ------------------------------------------------------------------------------------
    # modem status

    def _loop_msr(self) -> int:
        m = self.mcr
        return (((m & MCR_OUT2) << 4) | ((m & MCR_OUT1) << 4)
                | ((m & MCR_RTS) << 3) | ((m & MCR_DTR) << 5))

    def _set_msr_lines(self, lines: int) -> None:
        old = self.msr
        changed = (old ^ lines) & 0xF0
        delta = old & 0x0F
        if changed & MSR_CTS:
            delta |= MSR_DCTS
        if changed & MSR_DSR:
            delta |= MSR_DDSR
        if changed & MSR_DCD:
            delta |= MSR_DDCD
        if changed & MSR_RI and old & MSR_RI:
            delta |= MSR_TERI
        self.msr = lines | delta

    def _poll_modem(self) -> None:
        if self.mcr & MCR_LOOP:
            return
        bits = self.port.get_tiocm()
        if bits is None:
            return
        lines = ((MSR_CTS if bits & Tiocm.CTS else 0) | (MSR_DSR if bits & Tiocm.DSR else 0)
                 | (MSR_RI if bits & Tiocm.RI else 0) | (MSR_DCD if bits & Tiocm.CAR else 0))
        self.lines = lines
        self._set_msr_lines(lines)

    def _read_msr(self) -> int:
        if self.mcr & MCR_LOOP:
            self._set_msr_lines(self._loop_msr())
        elif self.port.tiocm_ok is not False:
            self._poll_modem()
        msr = self.msr
        if msr & 0x0F:
            self.msr = msr & 0xF0
            self._update_irq()
        return msr

    def _update_msl_poll(self) -> None:
        want = bool(self.ier & IER_MSI and not self.mcr & MCR_LOOP
                    and self.port.connected and self.port.tiocm_ok is not False)
        if want and self._msl_timer is None:
            clock = self.clock
            self._msl_timer = clock.call_at(clock.now_ns() + MODEM_POLL_NS, self._msl_tick)
        elif not want:
            self._cancel_msl_timer()

    def _msl_tick(self) -> None:
        with self.lock:
            self._msl_timer = None
            self._poll_modem()
            self._update_irq()
            self._update_msl_poll()

    def _cancel_msl_timer(self) -> None:
        timer, self._msl_timer = self._msl_timer, None
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------------------------
    # line parameters and hotswap

    def _line_params(self) -> SerialParams | None:
        div = self.divider
        if div == 0 or div > self.baudbase:
            return None
        lcr = self.lcr
        parity = ("E" if lcr & 0x10 else "O") if lcr & 0x08 else "N"
        return SerialParams(speed=max(1, round(self.baudbase / div)), parity=parity,
                            data_bits=(lcr & 3) + 5, stop_bits=2 if lcr & 4 else 1)

    def _update_char_time(self) -> None:
        speed = self.baudbase / self.divider if self.divider else 3500.0
        lcr = self.lcr
        frame = 1 + (lcr & 3) + 5 + (1 if lcr & 0x08 else 0) + (2 if lcr & 4 else 1)
        self._char_ns = int(frame * 1e9 / speed)

    def _apply_line(self, full: bool = True) -> None:
        """Push LCR/divisor, break and DTR/RTS to the backend, read its modem lines.

        At power-on (full=False) the backend keeps its own settings, as in QEMU: only the
        modem lines are read; the guest's first LCR/MCR writes configure the host side.
        """
        port = self.port
        if not port.connected:
            return
        if not self.mcr & MCR_LOOP:
            self._poll_modem()
        if full:
            port.set_params(self._line_params())
            port.set_break(bool(self.lcr & LCR_SBC))
            if not self.mcr & MCR_LOOP:
                port.set_modem_out(bool(self.mcr & MCR_DTR), bool(self.mcr & MCR_RTS))
        self._update_msl_poll()

    def _be_change(self) -> int:
        with self.lock:
            self.port.after_swap()
            self._apply_line()
            self._update_irq()
        return 0

    def __repr__(self) -> str:
        return f"<Ns16550a {self.name} lsr={self.lsr:#04x} iir={self._iir_id():#04x}>"
