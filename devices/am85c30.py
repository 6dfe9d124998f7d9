"""AMD Am85C30 (Zilog Z85C30-compatible) SCC: the Elbrus on-board serial port, async mode.

MCST wiring: channel A control at +0, A data +1, B control +2, B data +3 (the opposite of
QEMU's Sun-style ESCC). Modelled: the WR0 pointer protocol with "point high", every WR0
command, a 3-byte receive FIFO with overrun, Rx/Tx/external-status interrupts with the
daisy-chain priority (Rx A > Tx A > Ext A > Rx B > Tx B > Ext B), interrupt-under-service
bits set by an interrupt acknowledge (``intack()``, or an RR2 read with WR9 software INTACK),
WR9 MIE gating, the status-modified vector in channel B's RR2, local loopback and break both
ways. Synchronous/SDLC modes, CRC, DPLL and the BRG zero-count interrupt are not modelled.

Register reference: docs/devices/am85c30.md. Choices where the hardware and the MCST
firmware disagree:
* The transmitter delivers even while WR5 Tx enable is clear: the BIOS initialises the
  channels one after the other with a WR9 hardware reset each time, which on a real Z85C30
  would leave channel A disabled, yet MCST machines print on channel A.
* RR1 is the Zilog status register (not a WR1 read-back); the boot putc's RR1 -> WR1 restore
  therefore sets interrupt enables, which stay harmless while WR9 MIE is clear.
* In local loopback (WR14 D4) transmitted characters go to the channel's own receiver only,
  not to the backend; host input waits in the backend meanwhile.
* A break (host BREAK event) puts a NUL in the receive FIFO and holds RR0 D7 until that NUL
  is read; both edges are external/status changes.
* Bytes the backend cannot take stay in the transmitter (Tx buffer empty and All Sent stay
  clear) and are retried from a backend watch; a channel reset does not discard them.
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


class Window(IntEnum):
    """Byte offsets in the SCC's 4-byte window: bit 1 picks the channel, bit 0 data."""

    A_CTRL = 0
    A_DATA = 1
    B_CTRL = 2
    B_DATA = 3


class WR(IntEnum):
    """Write registers (Zilog WR0..WR15), reached through the WR0 pointer."""

    CMD = 0           # WR0: register pointer and commands
    INT_MODE = 1      # WR1: Tx/Rx/external interrupt enables and Rx interrupt mode
    VECTOR = 2        # WR2: interrupt vector, one for both channels
    RX_PARAMS = 3     # WR3: Rx enable and bits per character
    MODES = 4         # WR4: clock factor, stop bits, parity
    TX_PARAMS = 5     # WR5: DTR, Tx bits per character, break, RTS
    SYNC_1 = 6        # WR6: sync character (MCST: the xN divisor)
    SYNC_2 = 7        # WR7: sync character; WR7' (extended controls) when WR15 D0 is set
    TX_DATA = 8       # WR8: transmit buffer (also the data window offset)
    MASTER_INT = 9    # WR9: resets, MIE, vector modes; one for both channels
    MISC_TXRX = 10    # WR10: miscellaneous Tx/Rx control
    CLOCKS = 11       # WR11: clock source selection
    TC_LOW = 12       # WR12: baud-rate time constant, low byte
    TC_HIGH = 13      # WR13: baud-rate time constant, high byte
    MISC_CTRL = 14    # WR14: BRG and loopback control
    EXT_IE = 15       # WR15: external/status interrupt enables, WR7' access


class RR(IntEnum):
    """Read registers (Zilog RR0..RR15); RR4..7, 9, 11 and 14 mirror others or, with the
    85C30 extended read (WR7' D6), show a write register back."""

    STATUS = 0        # RR0: Tx/Rx buffer and external status
    SPECIAL = 1       # RR1: All Sent, residue, special receive conditions
    VECTOR = 2        # RR2: WR2 on channel A, the status-modified vector on channel B
    IP = 3            # RR3: interrupt pending bits, channel A only
    RR4 = 4
    RR5 = 5
    RR6 = 6
    RR7 = 7
    RX_DATA = 8       # RR8: receive buffer
    RR9 = 9
    MISC_STATUS = 10  # RR10: loop/clock status (nothing in async mode)
    RR11 = 11
    TC_LOW = 12       # RR12: WR12 read back
    TC_HIGH = 13      # RR13: WR13 read back
    RR14 = 14
    EXT_IE = 15       # RR15: WR15 read back


#: 85C30 extended read: these read registers show a write register (RR14 shows WR7')
_EXT_IMAGE: dict[int, WR] = {RR.RR4: WR.MODES, RR.RR5: WR.TX_PARAMS,
                             RR.RR9: WR.RX_PARAMS, RR.RR11: WR.MISC_TXRX}
#: otherwise they mirror another read register (RR6/RR7's SDLC frame status is not modelled)
_MIRROR: dict[int, int] = {RR.RR4: RR.STATUS, RR.RR5: RR.SPECIAL, RR.RR6: RR.VECTOR,
                           RR.RR7: RR.IP, RR.RR9: RR.TC_HIGH, RR.RR11: RR.EXT_IE,
                           RR.RR14: RR.MISC_STATUS}

# The per-byte paths use plain-int globals: a `WR.MISC_CTRL` attribute load costs about
# 1,000 instructions in CPython 3.11, and an IntEnum list index defeats the specialisation.
#: the write registers whose change re-derives the line parameters (besides WR3 and WR5)
_LINE_WRS = frozenset((WR.MODES, WR.SYNC_1, WR.SYNC_2, WR.TC_LOW, WR.TC_HIGH))

_WR_INT_MODE, _WR_MISC_CTRL = int(WR.INT_MODE), int(WR.MISC_CTRL)
_DATA = int(Window.A_DATA)  # the window offset bit that selects the data register
_LAST = int(Window.B_DATA)

PCLK = 4_915_200
RX_FIFO_LEN = 3
MODEM_POLL_NS = 10_000_000

# RR0
RR0_RX_AVAIL, RR0_ZC, RR0_TX_EMPTY, RR0_DCD = 0x01, 0x02, 0x04, 0x08
RR0_SYNC, RR0_CTS, RR0_TX_UNDERRUN, RR0_BREAK = 0x10, 0x20, 0x40, 0x80
RR0_STATUS = RR0_DCD | RR0_SYNC | RR0_CTS | RR0_BREAK
#: RR0 of an idle channel (rr0_now with both transmit registers empty, nothing received, no
#: status latched, no break) without the modem lines
_RR0_IDLE = RR0_TX_UNDERRUN | RR0_TX_EMPTY
# RR1
RR1_ALL_SENT, RR1_RESIDUE_8 = 0x01, 0x06
RR1_PARITY, RR1_OVERRUN, RR1_FRAMING = 0x10, 0x20, 0x40
# WR1
WR1_EXT_IE, WR1_TX_IE, WR1_PARITY_SPECIAL = 0x01, 0x02, 0x04
# WR9
WR9_VIS, WR9_NV, WR9_DLC, WR9_MIE, WR9_STATUS_HIGH, WR9_SOFT_INTACK = 1, 2, 4, 8, 0x10, 0x20
# WR14
WR14_LOCAL_LOOPBACK = 0x10

CLOCK_MODE = (1, 16, 32, 64)
DATA_BITS = (5, 7, 6, 8)  # WR5 D6..5 / WR3 D7..6 encoding

# interrupt sources by daisy-chain priority (0 highest)
SRC_RX, SRC_TX, SRC_EXT = 0, 1, 2
#: RR3 bit for each priority index: A-Rx 0x20, A-Tx 0x10, A-Ext 0x08, B-Rx 4, B-Tx 2, B-Ext 1
RR3_BITS = (0x20, 0x10, 0x08, 0x04, 0x02, 0x01)
_RR3_OF_MASK = tuple(sum(RR3_BITS[i] for i in range(6) if m >> i & 1) for m in range(64))
#: status codes (V3..V1) per priority index for an ordinary condition
_VEC_CODE = (6, 4, 5, 2, 0, 1)
_VEC_NONE = 3


class _Channel:
    """One SCC channel: its registers, FIFOs and CharPort."""

    def __init__(self, scc: Am85C30, index: int, chardev: Chardev | None) -> None:
        self.scc = scc
        self.index = index  # 0 = A, 1 = B
        self.letter = "AB"[index]
        self.base = 3 * index  # daisy-chain priority index of this channel's Rx source
        self.wr = [0] * 16
        self.wr7p = 0
        self.ptr = 0
        self.rxf = bytearray()
        self.rr8 = 0
        self.rr1_err = 0
        self.rx_fc_armed = True
        self.rx_fc_pending = False
        self.tx_ip = False
        self.ext_ip = False
        self.tsr = -1
        self.tbuf = -1
        #: write_data_port may take its lock-free path (update_direct)
        self._direct = False
        self.brk = False
        #: DCD/SYNC(DSR)/CTS as RR0 bits; asserted when the backend has no modem lines
        self.lines = RR0_DCD | RR0_SYNC | RR0_CTS
        self.seen = self.lines  # status the guest was last shown (change reference)
        self.latched = -1  # RR0 status latched while an ext/status interrupt is pending
        self.poll_timer: Timer | None = None
        self.polled_at = -MODEM_POLL_NS
        #: one character time at the programmed rate, and when the last character left:
        #: All Sent (RR1 D0) follows the last character by one character time
        self.char_ns = 0
        self.sent_at = -(1 << 62)
        name = f"{scc.name}.{self.letter}"
        self.port = CharPort(chardev, scc.lock, name, can_read=self.can_read,
                             read=self.receive, event=self.event, be_change=self.be_change)
        self.sink = self.port.sink
        self.now_ns = scc.now_ns

    # -- the polled putc's accessors (Am85C30.accessors) ----------------------------------

    def read_control(self, offset: int, size: int) -> int:
        """Am85C30.read at this channel's control port: RR0 at pointer 0 without the lock,
        when the backend has no modem lines to poll. The polled putc's RR0 (an idle
        channel) is computed here, one Python frame per guest access; rr0_now otherwise."""
        if self.ptr or size != 1 or self.port.tiocm_ok:
            return self.scc.read(offset, size)
        if self.tsr < 0 and self.tbuf < 0 and self.latched < 0 and not (self.rxf or self.brk):
            return _RR0_IDLE | self.lines
        return self.rr0_now()

    def write_data_port(self, offset: int, size: int, value: int) -> None:
        """Am85C30.write at this channel's data port: the byte leaves in one C-level call
        (OutputSink) when the transmitter is empty and no interrupt or loopback is involved.

        No lock: register accesses come from one thread (docs/embedding.md), and the I/O
        thread clears tsr and tbuf (and so sets ``_direct``) only after their bytes went to
        the backend (a byte put here comes after them); Tx IP stays clear (Tx interrupts
        off), nothing else changes.
        """
        sink = self.sink
        if sink.fast and self._direct and size == 1:
            put = sink.put_byte  # a slot load and a call: `sink.put_byte(v)` costs more
            try:
                put(value)
            except ValueError:  # not a byte (a caller outside the machine): write() masks
                self.scc.write(offset, size, value)
                return
            if sink.idle:
                sink.wake()
            now_ns = self.now_ns  # likewise: `self.now_ns()` is a method call's slow path
            self.sent_at = now_ns()
            return
        self.scc.write(offset, size, value)

    def update_direct(self) -> None:
        """Whether a data write may take write_data_port's lock-free path: both transmit
        registers empty, no Tx interrupt pending or enabled, no local loopback (five tests
        folded into one flag, about 800 instructions per polled byte). Recomputed under the
        lock after everything that changes them: a register write (Am85C30.write), a
        channel or hardware reset, the end of a transmission (tx_finished), load_state."""
        wr = self.wr
        self._direct = self.tsr < 0 and self.tbuf < 0 and not self.tx_ip and not (
            wr[_WR_MISC_CTRL] & WR14_LOCAL_LOOPBACK or wr[_WR_INT_MODE] & WR1_TX_IE)

    # -- reset ---------------------------------------------------------------------------

    def channel_reset(self) -> None:
        wr = self.wr
        wr[WR.CMD] = 0
        wr[WR.INT_MODE] &= 0x24
        wr[WR.RX_PARAMS] &= 0xFE
        wr[WR.MODES] |= 0x04
        wr[WR.TX_PARAMS] &= 0x61
        wr[WR.MISC_TXRX] &= 0x60
        wr[WR.MISC_CTRL] = (wr[WR.MISC_CTRL] & 0xC3) | 0x20
        wr[WR.EXT_IE] = 0xF8
        self.ptr = 0
        self.rxf.clear()
        self.rr1_err = 0
        self.rx_fc_armed = True
        self.rx_fc_pending = False
        self.tx_ip = False
        self.ext_ip = False
        self.brk = False
        self.latched = -1
        self.seen = self.lines
        self.recalc_char_time()
        self.update_direct()
        self.port.line_reset()  # WR5 break, DTR and RTS are cleared
        self.port.room_again()

    # -- status ------------------------------------------------------------------------

    def rr0(self) -> int:
        if self.port.tiocm_ok:
            # a backend with modem lines (host tty): refresh them at most every 10 ms
            now = self.scc.clock.now_ns()
            if now - self.polled_at >= MODEM_POLL_NS:
                self.polled_at = now
                self.poll_modem()
                self.scc.update_irq()
        return self.rr0_now()

    def rr0_now(self) -> int:
        """RR0 from the channel state alone (no modem poll): safe without the lock."""
        v = RR0_TX_UNDERRUN
        if self.rxf:
            v |= RR0_RX_AVAIL
        if self.tsr < 0 and self.tbuf < 0:
            v |= RR0_TX_EMPTY
        latched = self.latched
        if latched >= 0:
            return v | latched
        return v | self.lines | (RR0_BREAK if self.brk else 0)

    def rr1(self) -> int:
        v = self.rr1_err | RR1_RESIDUE_8
        if self.tsr < 0 and self.tbuf < 0 and \
                self.scc.now_ns() - self.sent_at >= self.char_ns:
            v |= RR1_ALL_SENT
        return v

    def special(self) -> bool:
        mask = RR1_OVERRUN | RR1_FRAMING
        if self.wr[WR.INT_MODE] & WR1_PARITY_SPECIAL:
            mask |= RR1_PARITY
        return bool(self.rr1_err & mask)

    def pending(self) -> int:
        """Interrupt-pending bits of this channel, shifted to its daisy-chain position."""
        wr1 = self.wr[WR.INT_MODE]
        p = 0
        mode = (wr1 >> 3) & 3
        if mode and (self.special() or (mode == 2 and self.rxf)
                     or (mode == 1 and self.rx_fc_pending)):
            p |= 1 << SRC_RX
        if self.tx_ip and wr1 & WR1_TX_IE:
            p |= 1 << SRC_TX
        if self.ext_ip and wr1 & WR1_EXT_IE:
            p |= 1 << SRC_EXT
        return p << self.base

    def ext_check(self) -> None:
        """Latch an external/status change as an interrupt when enabled (Zilog latch rules)."""
        if self.latched >= 0:
            return  # the change will show once the guest resets ext/status
        cur = self.lines | (RR0_BREAK if self.brk else 0)
        changed = cur ^ self.seen
        self.seen = cur
        if changed & self.wr[WR.EXT_IE] & RR0_STATUS and self.wr[WR.INT_MODE] & WR1_EXT_IE:
            self.latched = cur
            self.ext_ip = True

    def set_lines(self, lines: int) -> None:
        if lines != self.lines:
            self.lines = lines
            self.ext_check()

    def poll_modem(self) -> None:
        bits = self.port.get_tiocm()
        if bits is None:
            return
        self.set_lines((RR0_DCD if bits & Tiocm.CAR else 0) | (RR0_CTS if bits & Tiocm.CTS else 0)
                       | (RR0_SYNC if bits & Tiocm.DSR else 0))

    def update_poll(self) -> None:
        want = bool(self.wr[WR.INT_MODE] & WR1_EXT_IE
                    and self.wr[WR.EXT_IE] & (RR0_DCD | RR0_SYNC | RR0_CTS)
                    and self.port.connected and self.port.tiocm_ok is not False)
        if want and self.poll_timer is None:
            clock = self.scc.clock
            self.poll_timer = clock.call_at(clock.now_ns() + MODEM_POLL_NS, self.poll_tick)
        elif not want and self.poll_timer is not None:
            self.poll_timer.cancel()
            self.poll_timer = None

    def poll_tick(self) -> None:
        with self.scc.lock:
            self.poll_timer = None
            self.poll_modem()
            self.scc.update_irq()
            self.update_poll()

    # -- receive -------------------------------------------------------------------------

    def can_read(self) -> int:
        if not self.wr[WR.RX_PARAMS] & 0x01 or self.wr[WR.MISC_CTRL] & WR14_LOCAL_LOOPBACK:
            return 0
        return RX_FIFO_LEN - len(self.rxf)

    def receive(self, data: bytes) -> None:
        with self.scc.lock:
            for b in data:
                self.rx_push(b)
            self.scc.update_irq()

    def event(self, event: ChardevEvent) -> None:
        if event != ChardevEvent.BREAK:
            return
        with self.scc.lock:
            self.brk = True
            self.ext_check()
            self.rx_push(0)
            if not self.wr[WR.RX_PARAMS] & 0x01:
                self.brk = False  # nobody will read the break character
                self.ext_check()
            self.scc.update_irq()

    def rx_push(self, b: int) -> None:
        if not self.wr[WR.RX_PARAMS] & 0x01:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: receiver disabled, character %#x discarded", self.port.name, b)
            return
        rxf = self.rxf
        if len(rxf) >= RX_FIFO_LEN:
            rxf[-1] = b  # the newest character overwrites the last FIFO entry
            self.rr1_err |= RR1_OVERRUN
        else:
            rxf.append(b)
        if self.rx_fc_armed:
            self.rx_fc_armed = False
            self.rx_fc_pending = True

    def read_data(self) -> int:
        rxf = self.rxf
        if not rxf:
            return self.rr8
        b = self.rr8 = rxf.pop(0)
        self.rx_fc_pending = False
        if self.brk and b == 0:
            self.brk = False
            self.ext_check()
        self.port.room_again()
        self.scc.update_irq()
        return b

    # -- transmit ------------------------------------------------------------------------

    def write_data(self, b: int) -> None:
        was = self.tx_ip
        self.tx_ip = False
        if self.wr[_WR_MISC_CTRL] & WR14_LOCAL_LOOPBACK:
            self.rx_push(b)
            self.sent_at = self.scc.now_ns()
            self.tx_ip = bool(self.wr[_WR_INT_MODE] & WR1_TX_IE)
            self.scc.update_irq()
            return
        if self.tsr < 0 and self.tbuf < 0:
            # hot path: idle transmitter, the byte leaves at once (OutQueue.write's success
            # case inlined; a refusal or an unconnected port takes its general path)
            sink = self.port.sink
            if sink.fast:  # one C-level call (OutputSink)
                sink.put(BYTE[b])
                if sink.idle:
                    sink.wake()
                accepted = True
            else:
                fe = self.port.fe
                accepted = (fe is not None and fe.write(BYTE[b]) > 0) \
                    or self.port.out.write(BYTE[b]) > 0
            if accepted:
                self.sent_at = self.scc.now_ns()
                self.tx_ip = bool(self.wr[_WR_INT_MODE] & WR1_TX_IE)
                if self.tx_ip != was:
                    self.scc.update_irq()
                return
            self.tsr = b
            self.wait_tx()
        else:
            if self.tbuf >= 0 and log.isEnabledFor(logging.DEBUG):
                log.debug("%s: data write while Tx buffer full overwrites it", self.port.name)
            self.tbuf = b
        if was:
            self.scc.update_irq()

    def wait_tx(self) -> None:
        if not self.port.out.wait_writable(self.tx_pump):
            log.warning("%s: backend gone, untransmitted byte(s) dropped", self.port.name)
            self.tsr = self.tbuf = -1
            self.tx_finished()

    def tx_pump(self) -> None:
        if self.tsr < 0:
            if self.tbuf < 0:
                return
            self.tsr, self.tbuf = self.tbuf, -1
        data = BYTE[self.tsr] + (BYTE[self.tbuf] if self.tbuf >= 0 else b"")
        n = self.port.out.write(data)
        if n <= 0:
            self.wait_tx()
            return
        if n == 1 and self.tbuf >= 0:
            self.tsr, self.tbuf = self.tbuf, -1
            self.wait_tx()
            return
        self.tsr = self.tbuf = -1
        self.tx_finished()

    def tx_finished(self) -> None:
        self.sent_at = self.scc.now_ns()
        self.tx_ip = bool(self.wr[WR.INT_MODE] & WR1_TX_IE)
        self.update_direct()
        self.scc.update_irq()

    # -- line parameters -----------------------------------------------------------------

    def line_params(self) -> SerialParams | None:
        wr = self.wr
        tc = wr[WR.TC_LOW] | (wr[WR.TC_HIGH] << 8)
        n = wr[WR.SYNC_1] & 0x3F
        if wr[WR.SYNC_2] & 0x80 and n:  # MCST xN mode: clock factor N/2 instead of WR4's
            speed = PCLK / (n * (tc + 2))
        else:
            speed = PCLK / (2 * CLOCK_MODE[wr[WR.MODES] >> 6] * (tc + 2))
        wr4 = wr[WR.MODES]
        parity = ("E" if wr4 & 0x02 else "O") if wr4 & 0x01 else "N"
        stop = 2 if wr4 & 0x08 else 1  # 1.5 stop bits round up to 2
        return SerialParams(speed=max(1, round(speed)), parity=parity,
                            data_bits=DATA_BITS[(wr[WR.TX_PARAMS] >> 5) & 3], stop_bits=stop)

    def recalc_char_time(self) -> None:
        p = self.line_params()
        if p is not None:
            frame = 1 + p.data_bits + (p.parity != "N") + p.stop_bits
            self.char_ns = int(frame * 1e9 / p.speed)

    def push_params(self) -> None:
        self.recalc_char_time()
        if self.wr[WR.RX_PARAMS] & 0x01 or self.wr[WR.TX_PARAMS] & 0x08:  # channel enabled
            self.port.set_params(self.line_params())

    def apply_line(self) -> None:
        """Everything a (new) backend should know: params, break, DTR/RTS, modem lines."""
        port = self.port
        if not port.connected:
            return
        wr5 = self.wr[WR.TX_PARAMS]
        port.set_params(self.line_params())
        port.set_break(bool(wr5 & 0x10))
        port.set_modem_out(bool(wr5 & 0x80), bool(wr5 & 0x02))
        self.poll_modem()
        self.update_poll()

    def be_change(self) -> int:
        with self.scc.lock:
            self.port.after_swap()
            self.apply_line()
            self.scc.update_irq()
        return 0

    # -- register writes -----------------------------------------------------------------

    def write_reg(self, reg: int, v: int) -> None:
        scc = self.scc
        wr = self.wr
        if reg == WR.TX_DATA:
            self.write_data(v)
            return
        if reg == WR.MASTER_INT:
            scc.write_wr9(v)
            return
        if reg == WR.VECTOR:
            scc.wr2 = v
            wr[WR.VECTOR] = v
            return
        if reg == WR.SYNC_2 and wr[WR.EXT_IE] & 0x01:
            self.wr7p = v
            return
        old = wr[reg]
        wr[reg] = v
        if reg == WR.INT_MODE:
            if (v >> 3) & 3 == 1 and (old >> 3) & 3 != 1:
                self.rx_fc_armed = True
            if (v ^ old) & WR1_EXT_IE:
                self.ext_check()
                self.update_poll()
        elif reg == WR.RX_PARAMS:
            if v & 0x01 and not old & 0x01:
                self.port.room_again()
                self.push_params()
        elif reg == WR.TX_PARAMS:
            if (v ^ old) & 0x10:
                self.port.set_break(bool(v & 0x10))
                if v & 0x10 and wr[WR.MISC_CTRL] & WR14_LOCAL_LOOPBACK:
                    self.brk = True
                    self.ext_check()
                    self.rx_push(0)
            if self.port.connected and (v ^ old) & 0x82:
                self.port.set_modem_out(bool(v & 0x80), bool(v & 0x02))
            self.push_params()
        elif reg in _LINE_WRS:
            self.push_params()
        elif reg == WR.MISC_CTRL:
            if (old ^ v) & WR14_LOCAL_LOOPBACK and not v & WR14_LOCAL_LOOPBACK:
                self.port.room_again()
        elif reg == WR.EXT_IE:
            self.ext_check()
            self.update_poll()
        scc.update_irq()

    def command(self, cmd: int) -> None:
        """WR0 bits 5..3 (command 1, point high, is handled by the caller)."""
        if cmd == 2:  # reset external/status interrupts: reopen the latch
            self.ext_ip = False
            self.latched = -1
            self.ext_check()
        elif cmd == 4:  # enable interrupt on next Rx character
            self.rx_fc_armed = True
        elif cmd == 5:  # reset Tx interrupt pending
            self.tx_ip = False
        elif cmd == 6:  # error reset
            self.rr1_err = 0
        elif cmd == 7:  # reset highest IUS
            ius = self.scc.ius
            self.scc.ius = ius & (ius - 1)
        # 0 null, 3 send abort (SDLC only): nothing to do in async mode
        self.scc.update_irq()

    # -- register reads ------------------------------------------------------------------

    def read_reg(self, reg: int) -> int:
        scc = self.scc
        if self.wr7p & 0x40:  # 85C30 extended read
            if reg in _EXT_IMAGE:
                return self.wr[_EXT_IMAGE[reg]]
            if reg == RR.RR14:
                return self.wr7p
        reg = _MIRROR.get(reg, reg)
        if reg == RR.STATUS:
            return self.rr0()
        if reg == RR.SPECIAL:
            return self.rr1()
        if reg == RR.VECTOR:
            value = scc.wr2 if self.index == 0 else scc.status_vector()
            if scc.wr9 & WR9_SOFT_INTACK:
                scc.intack()  # software interrupt acknowledge: sets the IUS bit
            return value
        if reg == RR.IP:
            return _RR3_OF_MASK[scc.pending_sources()] if self.index == 0 else 0
        if reg == RR.RX_DATA:
            return self.read_data()
        if reg == RR.TC_LOW:
            return self.wr[WR.TC_LOW]
        if reg == RR.TC_HIGH:
            return self.wr[WR.TC_HIGH]
        if reg == RR.EXT_IE:
            return self.wr[WR.EXT_IE] & 0xFA
        return 0  # RR10: no loop/SDLC status in async mode

    def state(self) -> dict[str, Any]:
        return {
            "wr": list(self.wr), "wr7p": self.wr7p, "ptr": self.ptr, "rx_fifo": list(self.rxf),
            "rr8": self.rr8, "rr1_err": self.rr1_err, "rx_fc_armed": self.rx_fc_armed,
            "rx_fc_pending": self.rx_fc_pending, "tx_ip": self.tx_ip, "ext_ip": self.ext_ip,
            "tsr": self.tsr, "tbuf": self.tbuf, "brk": self.brk, "lines": self.lines,
            "seen": self.seen, "latched": self.latched,
        }

    def load_state(self, s: dict[str, Any]) -> None:
        self.wr = [int(x) & 0xFF for x in list(s["wr"])[:16]] + [0] * max(0, 16 - len(s["wr"]))
        self.wr7p = int(s.get("wr7p", 0)) & 0xFF
        self.ptr = int(s.get("ptr", 0)) & 0x0F
        self.rxf = bytearray(bytes(s.get("rx_fifo", ()))[:RX_FIFO_LEN])
        self.rr8 = int(s.get("rr8", 0)) & 0xFF
        self.rr1_err = int(s.get("rr1_err", 0)) & 0x70
        self.rx_fc_armed = bool(s.get("rx_fc_armed", True))
        self.rx_fc_pending = bool(s.get("rx_fc_pending", False))
        self.tx_ip = bool(s.get("tx_ip", False))
        self.ext_ip = bool(s.get("ext_ip", False))
        tsr, tbuf = int(s.get("tsr", -1)), int(s.get("tbuf", -1))
        self.tsr = tsr & 0xFF if tsr >= 0 else -1
        self.tbuf = tbuf & 0xFF if tbuf >= 0 else -1
        self.brk = bool(s.get("brk", False))
        self.lines = int(s.get("lines", self.lines)) & (RR0_DCD | RR0_SYNC | RR0_CTS)
        self.seen = int(s.get("seen", self.lines)) & RR0_STATUS
        latched = int(s.get("latched", -1))
        self.latched = latched & RR0_STATUS if latched >= 0 else -1
        self.update_direct()


class Am85C30(SerialDevice):
    """Two-channel SCC at MCST offsets; see the module docstring."""

    def __init__(self, chardev_a: Chardev | None = None, chardev_b: Chardev | None = None,
                 irq: IrqLine | None = None, *, clock: Clock | None = None,
                 lock: threading.RLock | None = None, name: str = "am85c30") -> None:
        super().__init__(clock, lock)
        self.name = name
        #: the clock's now_ns, bound once (no thread unless a timer is armed)
        self.now_ns = self.clock.now_ns
        self.irq = irq if irq is not None else IrqLine()
        self.wr2 = 0
        self.wr9 = 0
        self.ius = 0
        self.a = _Channel(self, 0, chardev_a)
        try:
            self.b = _Channel(self, 1, chardev_b)
        except Exception:
            self.a.port.close()  # e.g. the same chardev twice: leave nothing attached
            raise
        self.channels = (self.a, self.b)
        self.ports.extend((self.a.port, self.b.port))
        with self.lock:
            self._hardware_reset()
            for ch in self.channels:
                if ch.port.connected:
                    ch.poll_modem()
                    ch.seen = ch.lines

    # ------------------------------------------------------------------------------------
    # register interface

    def accessors(self, offset: int) -> tuple[Callable[[int, int], int],
                                              Callable[[int, int, int], None]]:
        """RR0 reads and data writes get their channel's own accessors
        (device.SerialDevice.accessors): the polled putc is one Python frame per access."""
        if 0 <= offset <= _LAST:
            ch = self.channels[offset >> 1]
            if offset & _DATA:
                return self.read, ch.write_data_port
            return ch.read_control, self.write
        return self.read, self.write

    def read(self, offset: int, size: int) -> int:
        if size != 1 or not 0 <= offset <= _LAST:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: read of unsupported offset %#x size %d", self.name, offset, size)
            return 0
        ch = self.channels[offset >> 1]
        if not offset & _DATA and ch.ptr == 0 and not ch.port.tiocm_ok:
            # hot path of every polled putc: RR0 is a pure function of the channel state
            # (only the CPU thread moves the pointer), so it needs no lock; rr0_now, not
            # rr0: a hotswap on the I/O thread may set tiocm_ok meanwhile, and polling the
            # modem lines must not happen outside the lock
            return ch.rr0_now()
        with self.lock:
            if offset & _DATA:
                return ch.read_data()
            ptr = ch.ptr
            if ptr == 0:  # RR0
                return ch.rr0()
            ch.ptr = 0
            return ch.read_reg(ptr)

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or not 0 <= offset <= _LAST:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: write of unsupported offset %#x size %d value %#x",
                          self.name, offset, size, value)
            return
        value &= 0xFF
        ch = self.channels[offset >> 1]
        lock = self.lock  # acquire/release, not `with`: 0.1 us less per polled byte
        lock.acquire()
        try:
            if offset & _DATA:
                ch.write_data(value)
                return
            ptr = ch.ptr
            if ptr:
                ch.ptr = 0
                ch.write_reg(ptr, value)
                return
            # WR0: register pointer and command
            cmd = (value >> 3) & 7
            ch.wr[WR.CMD] = value
            ch.ptr = (value & 7) | (8 if cmd == 1 else 0)  # command 1: point high
            if cmd > 1:
                ch.command(cmd)
        finally:
            ch.update_direct()  # (WR9's resets update both channels themselves)
            lock.release()

    # ------------------------------------------------------------------------------------
    # interrupts

    # the channels call update_irq, pending_sources and write_wr9: the interrupt logic and
    # WR9 span both channels

    def pending_sources(self) -> int:
        """Interrupt-pending bits of both channels, by daisy-chain position."""
        return self.a.pending() | self.b.pending()

    def _requesting(self) -> int:
        """Pending sources not blocked by an equal or higher-priority IUS."""
        pend = self.pending_sources()
        ius = self.ius
        if ius:
            pend &= (ius & -ius) - 1
        return pend

    def update_irq(self) -> None:
        """Drive the interrupt line from WR9 MIE and the sources not blocked by an IUS."""
        self.irq.set(bool(self.wr9 & WR9_MIE and self._requesting()))

    def _vector_code(self, pend: int) -> int:
        if not pend:
            return _VEC_NONE
        i = (pend & -pend).bit_length() - 1
        code = _VEC_CODE[i]
        if i % 3 == SRC_RX and self.channels[i // 3].special():
            code |= 1  # special receive condition
        return code

    def _vector_with(self, code: int) -> int:
        vec = self.wr2
        if self.wr9 & WR9_STATUS_HIGH:
            bits = ((code >> 2) & 1) << 4 | ((code >> 1) & 1) << 5 | (code & 1) << 6
            return (vec & ~0x70) | bits
        return (vec & ~0x0E) | (code << 1)

    def status_vector(self) -> int:
        """RR2 of channel B: the vector modified by the highest-priority pending condition."""
        return self._vector_with(self._vector_code(self._requesting() or self.pending_sources()))

    def intack(self) -> int:
        """Interrupt acknowledge: sets the IUS of the highest requesting source, returns the
        vector the chip would drive (status included when WR9 VIS is set)."""
        with self.lock:
            req = self._requesting()
            code = self._vector_code(req)
            if req:
                self.ius |= req & -req
                self.update_irq()
            return self._vector_with(code) if self.wr9 & WR9_VIS else self.wr2

    def write_wr9(self, v: int) -> None:
        """WR9 (master interrupt control), one register for both channels."""
        reset = v & 0xC0
        if reset == 0xC0:
            self._hardware_reset()
            self.wr9 = v & 0x03
        else:
            if reset == 0x80:
                self._channel_reset(self.a)
            elif reset == 0x40:
                self._channel_reset(self.b)
            self.wr9 = v & (0x3F if not reset else 0x1F)
        self.a.wr[WR.MASTER_INT] = self.b.wr[WR.MASTER_INT] = self.wr9
        self.update_irq()

    def _channel_reset(self, ch: _Channel) -> None:
        ch.channel_reset()
        self.wr9 &= ~WR9_SOFT_INTACK
        self.ius &= ~(7 << ch.base)
        ch.update_poll()

    def _hardware_reset(self) -> None:
        for ch in self.channels:
            ch.channel_reset()
            ch.wr[WR.MISC_TXRX] = 0
            ch.wr[WR.CLOCKS] = 0x08
            ch.wr[WR.MISC_CTRL] = (ch.wr[WR.MISC_CTRL] & 0xC0) | 0x20
            ch.update_direct()
            ch.update_poll()
        self.wr9 = 0
        self.ius = 0

    # ------------------------------------------------------------------------------------
    # reset and state

    def reset(self) -> None:
        """Power-on: a hardware reset plus the registers a reset leaves undefined cleared."""
        with self.lock:
            for ch in self.channels:
                ch.wr = [0] * 16
                ch.wr7p = 0
                ch.rr8 = 0
            self.wr2 = 0
            self._hardware_reset()
            self.update_irq()

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"wr2": self.wr2, "wr9": self.wr9, "ius": self.ius,
                    "a": self.a.state(), "b": self.b.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state() snapshot; line state is re-applied to the backends."""
        with self.lock:
            self.wr2 = int(state["wr2"]) & 0xFF
            self.wr9 = int(state["wr9"]) & 0x3F
            self.ius = int(state.get("ius", 0)) & 0x3F
            for ch, key in ((self.a, "a"), (self.b, "b")):
                ch.port.out.cancel_wait()
                ch.load_state(state[key])
                ch.recalc_char_time()
                ch.port.forget_line_state()
                ch.apply_line()
                if ch.tsr >= 0 or ch.tbuf >= 0:
                    ch.tx_pump()
                ch.port.room_again()
            self.update_irq()

    def __repr__(self) -> str:
        return f"<Am85C30 {self.name} A.rr0={self.a.rr0_now():#04x} B.rr0={self.b.rr0_now():#04x}>"
