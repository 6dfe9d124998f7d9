"""NS16550A model through its register interface, with ringbuf-style and real file backends."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from e2kchar.devices import IrqLine, Ns16550a, VirtualClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from recording import RecChardev, write_during_swap_window

from e2kchar import ChardevError, ChardevRegistry
from e2kchar.chardev.types import ChardevIoctl, SerialParams, Tiocm

RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)
FCR = 2


@pytest.fixture
def reg():
    with ChardevRegistry() as r:
        r.register_backend("ringbuf", RecChardev)
        yield r


def make(reg, regshift=0, clock=None, label="com1"):
    chr_ = reg.new(label, "ringbuf,size=65536")
    irq = IrqLine()
    uart = Ns16550a(chardev=chr_, irq=irq, regshift=regshift, baudbase=115200,
                    clock=clock if clock is not None else VirtualClock())
    return uart, irq, chr_


class Guest:
    """Byte-register accessors as a driver would use them."""

    def __init__(self, uart: Ns16550a, shift: int = 0, size: int = 1) -> None:
        self.u, self.shift, self.size = uart, shift, size

    def r(self, reg: int) -> int:
        return self.u.read(reg << self.shift, self.size) & 0xFF

    def w(self, reg: int, v: int) -> None:
        self.u.write(reg << self.shift, self.size, v)

    def init_8n1(self, divisor: int = 1, fcr: int = 0x07) -> None:
        self.w(IER, 0)
        self.w(LCR, 0x80)
        self.w(RBR, divisor & 0xFF)
        self.w(IER, divisor >> 8)
        self.w(LCR, 0x03)
        self.w(FCR, fcr)
        self.w(MCR, 0x0B)

    def putc(self, c: int) -> None:
        while not self.r(LSR) & 0x20:
            pass
        self.w(RBR, c)


def test_reset_values(reg):
    uart, irq, _ = make(reg)
    g = Guest(uart)
    assert [g.r(i) for i in (IER, IIR, LCR, MCR, LSR, MSR, SCR)] == [0, 1, 0, 8, 0x60, 0xB0, 0]
    assert not irq.level
    g.w(LCR, 0x80)
    assert (g.r(0), g.r(1)) == (12, 0)  # divisor 12: 9600 baud at 115200
    uart.close()


def test_dlab_divisor_and_params(reg):
    uart, _, chr_ = make(reg)
    g = Guest(uart)
    g.w(LCR, 0x80)
    g.w(0, 0x34)
    g.w(1, 0x12)
    assert (g.r(0), g.r(1), g.r(LCR)) == (0x34, 0x12, 0x80)
    g.w(0, 1)
    g.w(1, 0)
    g.w(LCR, 0x03)
    assert chr_.of(ChardevIoctl.SET_PARAMS)[-1] == SerialParams(115200, "N", 8, 1)
    g.w(LCR, 0x80)
    g.w(0, 12)
    g.w(LCR, 0x1E)  # 7 bits, 2 stop, even parity
    assert chr_.of(ChardevIoctl.SET_PARAMS)[-1] == SerialParams(9600, "E", 7, 2)
    n = len(chr_.of(ChardevIoctl.SET_PARAMS))
    g.w(LCR, 0x1E)  # unchanged: no ioctl
    assert len(chr_.of(ChardevIoctl.SET_PARAMS)) == n
    # IER is not visible under DLAB and vice versa
    g.w(IER, 0x05)
    assert g.r(IER) == 0x05
    uart.close()


def test_scratch_register(reg):
    uart, _, _ = make(reg)
    g = Guest(uart)
    for v in (0, 0x55, 0xAA, 0xFF):
        g.w(SCR, v)
        assert g.r(SCR) == v
    uart.close()


@pytest.mark.parametrize("shift,size", [(0, 1), (2, 1), (2, 4)])
def test_polled_output_and_regshift(reg, shift, size):
    uart, _, _ = make(reg, regshift=shift)
    g = Guest(uart, shift, size)
    g.init_8n1()
    for c in b"Hello, E2K!\n":
        g.putc(c)
    assert reg.ringbuf_read("com1", 100) == "Hello, E2K!\n"
    uart.close()


def test_bad_offsets_and_sizes_never_raise(reg):
    uart, _, _ = make(reg)
    for size in (0, 2, 3, 4, 8, 16):
        assert uart.read(0, size) == 0
        uart.write(0, size, 0x41)
    for off in (8, 9, 0x100, -1, 1 << 40):
        assert uart.read(off, 1) == 0
        uart.write(off, 1, 0x41)
    assert reg.ringbuf_read("com1", 10) == ""
    uart4, _, _ = make(reg, regshift=2, label="c4")
    assert uart4.read(1, 1) == 0 and uart4.read(4, 8) == 0  # unaligned / too wide
    uart4.write(1 << 2, 4, 0x0F)
    assert uart4.read(1 << 2, 4) == 0x0F
    uart.close()
    uart4.close()


@pytest.mark.parametrize("bits,level", [(0, 1), (1, 4), (2, 8), (3, 14)])
def test_fifo_trigger_levels(reg, bits, level):
    clock = VirtualClock()
    uart, irq, chr_ = make(reg, clock=clock)
    g = Guest(uart)
    g.init_8n1(fcr=0x07 | (bits << 6))
    g.w(IER, 0x01)
    assert g.r(IIR) == 0xC1
    chr_.feed(bytes(range(0x30, 0x30 + level - 1)))
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == level - 1)
    assert uart.state()["rx_fifo"] == list(range(0x30, 0x30 + level - 1))
    assert g.r(IIR) == 0xC1 and not irq.level
    chr_.feed(b"!")
    assert reg.run_until(lambda: irq.level)
    assert g.r(IIR) == 0xC4
    got = bytearray()
    while g.r(LSR) & 1:
        got.append(g.r(RBR))
    assert got == bytes(range(0x30, 0x30 + level - 1)) + b"!"
    assert g.r(IIR) == 0xC1 and not irq.level
    uart.close()


def test_character_timeout_interrupt(reg):
    clock = VirtualClock()
    uart, irq, chr_ = make(reg, clock=clock)
    g = Guest(uart)
    g.init_8n1(fcr=0x87)  # trigger 8
    g.w(IER, 0x01)
    chr_.feed(b"abc")
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == 3)
    assert not irq.level
    char_ns = 10 * 1_000_000_000 // 115200
    clock.advance(3 * char_ns)
    assert not irq.level
    clock.advance(2 * char_ns)
    assert irq.level and g.r(IIR) == 0xCC
    assert g.r(RBR) == ord("a")  # any RBR read clears the timeout
    assert g.r(IIR) == 0xC1 and not irq.level
    clock.advance(5 * char_ns)  # re-armed for the bytes still waiting
    assert g.r(IIR) == 0xCC
    assert g.r(RBR) == ord("b") and g.r(RBR) == ord("c")
    clock.advance(10 * char_ns)
    assert g.r(IIR) == 0xC1 and not irq.level
    assert clock.next_deadline() is None
    uart.close()


def test_no_timer_when_polled(reg):
    clock = VirtualClock()
    uart, _, chr_ = make(reg, clock=clock)
    g = Guest(uart)
    g.init_8n1()
    chr_.feed(b"xyz")
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == 3)
    for c in b"out":
        g.putc(c)
    assert clock.next_deadline() is None  # IER = 0: nothing needs a timer
    uart.close()


def test_thre_interrupt_semantics(reg):
    uart, irq, _ = make(reg)
    g = Guest(uart)
    g.init_8n1()
    g.w(IER, 0x02)
    assert irq.level and g.r(IIR) == 0xC2
    assert not irq.level and g.r(IIR) == 0xC1  # IIR read cleared it
    g.w(IER, 0x02)  # rewriting THRI while THRE is set re-arms it
    assert irq.level and g.r(IIR) == 0xC2
    g.w(RBR, ord("x"))  # transmit completes -> THRE again -> interrupt
    assert irq.level
    g.w(IER, 0)
    assert not irq.level
    # Linux serial8250_startup THRE test must not flag UART_BUG_THRE
    g.w(IER, 0x02)
    iir1 = g.r(IIR)
    g.w(IER, 0)
    g.w(IER, 0x02)
    iir = g.r(IIR)
    g.w(IER, 0)
    assert not (not iir1 & 1 and iir & 1)
    uart.close()


def test_iir_priorities_and_lsr_errors_clear_on_read(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1(fcr=0x07)
    g.w(MCR, 0x10)  # loopback
    for i in range(17):  # one more than the FIFO: overrun
        g.w(RBR, i)
    g.w(MCR, 0x11)  # DTR toggled in loopback: DSR delta
    g.w(IER, 0x0F)
    assert g.r(IIR) == 0xC6  # line status first
    lsr = g.r(LSR)
    assert lsr & 0x02 and lsr & 0x01
    assert not g.r(LSR) & 0x02  # OE cleared by the read
    assert g.r(IIR) == 0xC4  # then received data (16 >= trigger 1)
    for _ in range(16):
        g.r(RBR)
    assert g.r(IIR) == 0xC2  # then THR empty (cleared by this read)
    assert g.r(IIR) == 0xC0  # then modem status
    msr = g.r(MSR)
    assert msr & 0x02 and msr & 0x20
    assert g.r(IIR) == 0xC1 and not irq.level
    assert reg.ringbuf_read("com1", 100) == ""  # loopback: nothing reached the host
    uart.close()


def test_loopback_msr_mapping_and_deltas(reg):
    uart, _, _ = make(reg)
    g = Guest(uart)
    g.w(MCR, 0x1A)
    assert g.r(MSR) & 0xF0 == 0x90
    g.w(MCR, 0x1F)
    msr = g.r(MSR)
    assert msr & 0xF0 == 0xF0 and msr & 0x0F == 0x02  # DSR delta (RI rising is no event)
    assert g.r(MSR) & 0x0F == 0  # deltas clear on read
    g.w(MCR, 0x1B)  # OUT1 -> RI falls: trailing-edge RI
    assert g.r(MSR) & 0x04
    g.w(MCR, 0x10)
    assert g.r(MSR) & 0xF0 == 0
    uart.close()


def test_modem_lines_from_backend(reg):
    chr_ = reg.new("com1", "ringbuf,size=64")
    chr_.tiocm = int(Tiocm.CTS | Tiocm.CAR)
    uart = Ns16550a(chardev=chr_, irq=IrqLine(), clock=VirtualClock())
    uart.write(MCR, 1, 0x0B)
    assert uart.read(MSR, 1) & 0xF0 == 0x90
    sets = chr_.of(ChardevIoctl.SET_TIOCM)
    assert sets and sets[-1] & (Tiocm.DTR | Tiocm.RTS) == Tiocm.DTR | Tiocm.RTS
    uart.write(MCR, 1, 0x08)
    assert chr_.of(ChardevIoctl.SET_TIOCM)[-1] & (Tiocm.DTR | Tiocm.RTS) == 0
    uart.close()


def test_break_both_ways(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1()
    g.w(LCR, 0x43)
    g.w(LCR, 0x03)
    assert chr_.of(ChardevIoctl.SET_BREAK) == [True, False]
    g.w(IER, 0x05)
    reg.send_break("com1")
    assert reg.run_until(lambda: irq.level)
    assert g.r(IIR) == 0xC6
    lsr = g.r(LSR)
    assert lsr & 0x10 and lsr & 0x01
    assert g.r(RBR) == 0
    assert not g.r(LSR) & 0x11
    uart.close()


def test_break_belongs_to_its_fifo_position(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1()
    chr_.feed(b"ab")
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == 2)
    reg.send_break("com1")
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == 3)
    lsr = g.r(LSR)
    assert lsr & 0x80 and not lsr & 0x10  # an error in the FIFO, not at its head
    assert g.r(RBR) == ord("a")
    assert not g.r(LSR) & 0x10
    assert g.r(RBR) == ord("b")
    lsr = g.r(LSR)
    assert lsr & 0x10 and lsr & 0x01  # the NUL at the head is the break
    assert g.r(RBR) == 0
    lsr = g.r(LSR)
    assert not lsr & 0x91
    uart.close()


def _linux_autoconfig(g: Guest) -> str:
    """Clean-room replay of the register sequence of Linux 8250 autoconfig."""
    scratch = g.r(IER)
    g.w(IER, 0)
    scratch2 = g.r(IER) & 0x0F
    g.w(IER, 0x0F)
    scratch3 = g.r(IER) & 0x0F
    g.w(IER, scratch)
    if scratch2 != 0 or scratch3 != 0x0F:
        return "none"
    save_mcr = g.r(MCR)
    save_lcr = g.r(LCR)
    g.w(MCR, 0x10 | 0x0A)
    status1 = g.r(MSR) & 0xF0
    g.w(MCR, save_mcr)
    if status1 != 0x90:
        return "none"
    g.w(LCR, 0xBF)
    g.w(2, 0)  # EFR on 16650+, FCR here
    g.w(LCR, 0)
    g.w(FCR, 0x01)
    kind = g.r(IIR) >> 6
    g.w(LCR, save_lcr)
    if kind != 3:
        return {0: "8250", 1: "unknown", 2: "16550"}[kind]
    # autoconfig_16550a: EFR probes under DLAB and 0xBF read IIR (non-zero) here
    g.w(LCR, 0x80)
    assert g.r(2) != 0
    g.w(LCR, 0xBF)
    assert g.r(2) != 0
    g.w(LCR, 0)
    # IER UUE bit (XScale) must not stick
    iersave = g.r(IER)
    g.w(IER, iersave & ~0x40)
    if not g.r(IER) & 0x40:
        g.w(IER, iersave | 0x40)
        if g.r(IER) & 0x40:
            return "xscale"
    g.w(IER, iersave)
    # size_fifo: loopback, divisor 1, 256 bytes out, count what comes back
    g.w(FCR, 0x07)
    g.w(MCR, 0x10)
    g.w(LCR, 0x80)
    old_dl = g.r(0) | g.r(1) << 8
    g.w(0, 1)
    g.w(1, 0)
    g.w(LCR, 0x03)
    for c in range(256):
        g.w(RBR, c)
    count = 0
    while g.r(LSR) & 1 and count < 1024:
        g.r(RBR)
        count += 1
    g.w(LCR, 0x80)
    g.w(0, old_dl & 0xFF)
    g.w(1, old_dl >> 8)
    g.w(LCR, 0)
    g.w(MCR, save_mcr)
    g.w(FCR, 0x07)
    g.r(RBR)
    g.w(IER, 0)
    return "16550A-U6" if count == 64 else f"16550A/{count}"


def test_linux_autoconfig_identifies_16550a(reg):
    uart, irq, _ = make(reg)
    g = Guest(uart)
    assert _linux_autoconfig(g) == "16550A/16"
    assert not irq.level
    # the probe's loopback left no trace in the modem status: DCD, DSR and CTS are back
    assert g.r(MCR) == 0x08 and g.r(MSR) & 0xF0 == 0xB0
    assert reg.ringbuf_read("com1", 1000) == ""  # the probe's loopback traffic stays inside
    uart.close()


def test_xen_existence_probe(reg):
    uart, _, _ = make(reg)
    g = Guest(uart)
    scratch = g.r(IER)
    g.w(IER, 0)
    scratch2 = g.r(IER) & 0x0F
    g.w(IER, 0x0F)
    scratch3 = g.r(IER) & 0x0F
    g.w(IER, scratch)
    assert (scratch2, scratch3) == (0, 0x0F)
    g.w(MCR, 0x10 | 0x0A)
    assert g.r(MSR) & 0xF0 == 0x90
    # Xen leaves loopback with its MCR = DTR|RTS setup write: the outside lines come back
    g.w(MCR, 0x03)
    assert g.r(MSR) == 0xB0 | 0x02  # DSR returned (delta); DCD, CTS stayed asserted
    assert g.r(MSR) == 0xB0
    uart.close()


def test_leaving_loopback_shows_the_backend_lines(reg):
    chr_ = reg.new("com1", "ringbuf,size=64")
    chr_.tiocm = int(Tiocm.DSR)
    uart = Ns16550a(chardev=chr_, irq=IrqLine(), clock=VirtualClock())
    assert uart.read(MSR, 1) == 0x20  # power-on: the lines, no deltas
    uart.write(MCR, 1, 0x1F)
    assert uart.read(MSR, 1) & 0xF0 == 0xF0
    chr_.tiocm = int(Tiocm.CTS | Tiocm.CAR)  # the host lines moved meanwhile
    uart.write(MCR, 1, 0x08)
    assert uart.read(MSR, 1) & 0xF0 == 0x90
    uart.close()


def test_interrupt_driven_rx_never_drops(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1(fcr=0x47)  # trigger 4
    g.w(IER, 0x05)
    data = bytes(i & 0xFF for i in range(3000))
    chr_.feed(data)
    got = bytearray()
    while len(got) < len(data):
        assert reg.run_until(lambda: irq.level or uart.state()["rx_fifo"], 5)
        while True:
            iir = g.r(IIR)
            if iir & 1:
                # below the trigger level with no timeout (virtual clock): poll drains
                break
            assert iir & 0x0F in (0x04, 0x0C), hex(iir)
            while g.r(LSR) & 1:
                got.append(g.r(RBR))
        lsr = g.r(LSR)
        assert not lsr & 0x02, "overrun"
        while lsr & 1:
            got.append(g.r(RBR))
            lsr = g.r(LSR)
    assert bytes(got) == data
    uart.close()


def test_interrupt_driven_tx_with_backpressure(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1()
    data = bytes(range(256)) * 4
    pos = 0
    interrupts = 0
    g.w(IER, 0x02)
    while pos < len(data):
        assert reg.run_until(lambda: irq.level, 5)
        assert g.r(IIR) == 0xC2  # THR empty; the read acknowledges it
        interrupts += 1
        if interrupts == 10:
            chr_.set_blocked(True)
        burst = data[pos:pos + 16]  # a FIFO's worth per interrupt, as Linux does
        for c in burst:
            g.w(RBR, c)
        pos += len(burst)
        if interrupts == 10:
            # the backend refuses: the transmitter stays busy and raises nothing
            assert g.r(LSR) & 0x60 == 0 and not irq.level
            assert g.r(IIR) == 0xC1
            chr_.set_blocked(False)
    assert reg.run_until(lambda: g.r(LSR) & 0x60 == 0x60)
    assert chr_.peek() == data
    uart.close()


def test_blocked_backend_loses_nothing(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1()
    chr_.set_blocked(True)
    g.w(RBR, ord("A"))
    assert g.r(LSR) & 0x60 == 0
    for c in b"BCDEFGHIJKLMNOP":  # a FIFO-filling burst
        g.w(RBR, c)
    assert uart.state()["tx_fifo"] == list(b"BCDEFGHIJKLMNOP")
    chr_.set_blocked(False)
    assert reg.run_until(lambda: g.r(LSR) & 0x60 == 0x60)
    assert chr_.peek() == b"ABCDEFGHIJKLMNOP"
    uart.close()


def test_hotswap_mid_transmit(reg, monkeypatch):
    uart, irq, old = make(reg)
    g = Guest(uart)
    g.init_8n1(divisor=3)  # 38400
    g.w(LCR, 0x1B)  # 8E1
    g.w(MCR, 0x0B)
    g.w(IER, 0x02)
    g.r(IIR)
    g.w(RBR, ord("1"))
    old.set_blocked(True)
    for c in b"234":
        g.w(RBR, c)
    assert not g.r(LSR) & 0x40
    assert uart.read(MSR << 0, 1) == 0xB0  # the old backend has no modem lines
    monkeypatch.setattr(RecChardev, "default_tiocm", int(Tiocm.CTS | Tiocm.DSR))
    reg.change("com1", {"type": "ringbuf", "data": {"size": 4096}})
    new = reg.find("com1")
    assert new is not old
    assert new.of(ChardevIoctl.SET_PARAMS) == [SerialParams(38400, "E", 8, 1)]
    assert new.of(ChardevIoctl.SET_BREAK) == [False]
    # modem lines: the new backend's lines reach MSR (with a DCD delta), MCR's reach it
    assert ChardevIoctl.GET_TIOCM in [c for c, _ in new.ioctls]
    assert new.of(ChardevIoctl.SET_TIOCM) == [int(Tiocm.CTS | Tiocm.DSR | Tiocm.DTR | Tiocm.RTS)]
    assert g.r(MSR) == 0x30 | 0x08
    assert reg.run_until(lambda: new.peek() == b"234")
    assert reg.run_until(lambda: irq.level and g.r(LSR) & 0x60 == 0x60)
    assert old.peek() + new.peek() == b"1234"
    for c in b"56":
        g.putc(c)
    assert new.peek() == b"23456"
    # the new backend's input reaches the guest too
    new.feed(b"in")
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == 2)
    uart.close()


@pytest.mark.parametrize("fcr", [0x00, 0x07])
def test_a_line_typed_at_once_through_a_mux_reaches_the_guest(reg, fcr):
    # the mux hands the UART what its FIFO (or RBR) has room for and keeps the rest: the
    # device must ask for it again once the guest reads (it never answered 0)
    mux = reg.new("con", "ringbuf,size=4096,mux=on")
    uart = Ns16550a(chardev=mux, irq=IrqLine(), clock=VirtualClock())
    g = Guest(uart)
    g.init_8n1(fcr=fcr)
    line = b"echo 0123456789abcdefghij-and-more-than-the-mux-buffer-holds\r"
    got = bytearray()
    reg.find("con-base").feed(line)

    def drain() -> bool:
        while g.r(LSR) & 1:
            got.append(g.r(RBR))
        return len(got) >= len(line)

    assert reg.run_until(drain, 5), bytes(got)
    assert bytes(got) == line and not g.r(LSR) & 0x02
    uart.close()


def test_real_file_backend(reg, tmp_path):
    out = tmp_path / "out.txt"
    chr_ = reg.new("f", f"file,path={out}")
    uart = Ns16550a(chardev=chr_, irq=IrqLine(), clock=VirtualClock())
    g = Guest(uart)
    g.init_8n1()
    for c in b"boot log\n":
        g.putc(c)
    assert out.read_bytes() == b"boot log\n"
    uart.close()


def test_real_fifo_backend_input_and_backpressure(reg, tmp_path):
    base = tmp_path / "com"
    os.mkfifo(f"{base}.in")
    os.mkfifo(f"{base}.out")
    chr_ = reg.new("p", f"pipe,path={base}")
    uart = Ns16550a(chardev=chr_, irq=IrqLine(), clock=VirtualClock())
    g = Guest(uart)
    g.init_8n1()
    wfd = os.open(f"{base}.in", os.O_WRONLY | os.O_NONBLOCK)
    rfd = os.open(f"{base}.out", os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.write(wfd, b"typed")
        got = bytearray()

        def drain() -> bool:
            while g.r(LSR) & 1:
                got.append(g.r(RBR))
            return bytes(got) == b"typed"

        assert reg.run_until(drain, 5)
        # more output than the host pipe holds: the UART must wait, not drop
        data = bytes((i * 7) & 0xFF for i in range(150_000))
        received = bytearray()
        done = threading.Event()

        blocked_seen = threading.Event()

        def reader() -> None:
            # let the pipe fill up first: the transmitter must hold a refused byte
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not done.is_set():
                if uart.state()["tsr"] >= 0:
                    blocked_seen.set()
                    break
                time.sleep(0.001)
            while len(received) < len(data) and not done.is_set():
                try:
                    chunk = os.read(rfd, 4096)
                except BlockingIOError:
                    time.sleep(0.002)
                    continue
                received.extend(chunk)
                time.sleep(0.0005)  # a slow consumer

        t = threading.Thread(target=reader)
        t.start()
        try:
            for c in data:
                g.putc(c)
            assert reg.run_until(lambda: len(received) >= len(data), 20)
        finally:
            done.set()
            t.join(5)
        assert blocked_seen.is_set()
        assert bytes(received) == data
    finally:
        os.close(wfd)
        os.close(rfd)
    uart.close()


def test_state_roundtrip(reg):
    uart, irq, chr_ = make(reg)
    g = Guest(uart)
    g.init_8n1(fcr=0x87)
    g.w(SCR, 0x5A)
    g.w(IER, 0x03)
    chr_.feed(b"abc")
    assert reg.run_until(lambda: len(uart.state()["rx_fifo"]) == 3)
    snap = json.loads(json.dumps(uart.state()))
    uart2, irq2, _ = make(reg, label="com2")
    uart2.load_state(snap)
    assert uart2.state() == uart.state()
    assert irq2.level == irq.level
    g2 = Guest(uart2)
    assert bytes(g2.r(RBR) for _ in range(3)) == b"abc"
    uart.reset()
    assert uart.read(LSR, 1) == 0x60 and uart.read(IIR, 1) == 1 and not irq.level
    uart.close()
    uart2.close()


def test_unconnected_port(reg):
    irq = IrqLine()
    uart = Ns16550a(chardev=None, irq=irq, clock=VirtualClock())
    g = Guest(uart)
    g.init_8n1()
    for c in b"nowhere":
        g.putc(c)
    assert g.r(LSR) & 0x60 == 0x60
    uart.close()


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        Ns16550a(chardev=None, irq=IrqLine(), regshift=7)
    with pytest.raises(ValueError):
        Ns16550a(chardev=None, irq=IrqLine(), baudbase=0)


# ----------------------------------------------------------------------------------------
# hypothesis: any access sequence keeps the invariants

def expected_iir(s: dict) -> int:
    ier, lsr = s["ier"], s["lsr"]
    if ier & 4 and lsr & 0x1E:
        return 6
    if ier & 1:
        if s["timeout_ipending"]:
            return 0x0C
        trig = (1, 4, 8, 14)[s["fcr"] >> 6]
        if lsr & 1 and (not s["fcr"] & 1 or len(s["rx_fifo"]) >= trig):
            return 4
    if ier & 2 and s["thr_ipending"]:
        return 2
    if ier & 8 and s["msr"] & 0x0F:
        return 0
    return 1


class UartMachine(RuleBasedStateMachine):
    """Random register traffic, host input, breaks, time, back-pressure and hotswaps.

    Besides the IIR/IRQ/LSR consistency, the transmit path is checked for conservation:
    the bytes the backends got (old ones included) followed by those still in the
    transmitter change only by what the step did - a THR write appends one byte (or
    overwrites the one a full holding register/FIFO gives up, as the chip does), a
    transmit-FIFO reset drops the FIFO - and never between steps.
    """

    regshift = 0

    @initialize()
    def setup(self) -> None:
        self.reg = ChardevRegistry()
        self.reg.register_backend("ringbuf", RecChardev)
        self.chr = self.reg.new("h", "ringbuf,size=65536")
        self.old: list[RecChardev] = []
        self.clock = VirtualClock()
        self.irq = IrqLine()
        self.uart = Ns16550a(chardev=self.chr, irq=self.irq, clock=self.clock,
                             regshift=self.regshift)
        self.total = b""

    def teardown(self) -> None:
        if hasattr(self, "uart"):
            self.chr.set_blocked(False)
            # whatever the guest left in the transmitter drains once the backend takes it
            assert self.reg.run_until(lambda: self.uart.read(5 << self.regshift, 1) & 0x40, 5)
            assert self._out() == self.total
            self.uart.close()
            self.reg.close()

    # ------------------------------------------------------------------------------------
    # the transmit ledger

    def _out(self) -> bytes:
        return b"".join(c.peek() for c in self.old) + self.chr.peek()

    def _tx_total(self) -> bytes:
        """Delivered + still in the transmitter; call with the device lock held."""
        s = self.uart.state()
        pending = bytes(([s["tsr"]] if s["tsr"] >= 0 else []) + s["tx_fifo"])
        return self._out() + pending

    def _step(self, action, expect) -> None:
        """Run action under the device lock; expect(pre_state, pre_total) -> post total."""
        with self.uart.lock:
            pre_total = self._tx_total()
            assert pre_total == self.total, "transmit bytes moved between steps"
            pre = self.uart.state()
            action()
            self.total = self._tx_total()
            assert self.total == expect(pre, pre_total)

    def _settled(self) -> None:
        """After a step run without the lock (it calls into the I/O thread)."""
        with self.uart.lock:
            assert self._tx_total() == self.total

    # ------------------------------------------------------------------------------------
    # rules

    @rule(index=st.integers(-1, 9), skew=st.sampled_from([0, 0, 0, 1, 2, 3]),
          size=st.sampled_from([0, 1, 2, 3, 4, 8]))
    def read(self, index: int, skew: int, size: int) -> None:
        v = self.uart.read((index << self.regshift) + skew, size)
        assert 0 <= v <= 0xFF

    @rule(index=st.integers(-1, 9), skew=st.sampled_from([0, 0, 0, 1, 2, 3]),
          size=st.sampled_from([1, 1, 1, 2, 4]), value=st.integers(0, 0x1FF))
    def write(self, index: int, skew: int, size: int, value: int) -> None:
        self._write((index << self.regshift) + skew, size, value)

    @rule(fcr=st.sampled_from([0x00, 0x01, 0x41, 0x81, 0xC1, 0x07]))
    def configure(self, fcr: int) -> None:
        """What a driver does before it transmits: 8N1, DTR|RTS|OUT2, a FIFO mode."""
        for idx, v in ((3, 0x03), (4, 0x0B), (2, fcr)):
            self._write(idx << self.regshift, 1, v)

    @rule(data=st.one_of(st.binary(min_size=1, max_size=4), st.binary(min_size=15, max_size=20)),
          block=st.booleans())
    def transmit(self, data: bytes, block: bool) -> None:
        """A burst of THR writes, often into a backend that refuses it (the guest may
        ignore THRE: a full holding register or FIFO then gives up a byte)."""
        if block:
            self.backend_blocks(True)
        for b in data:
            self._write(0, 1, b)

    def _write(self, offset: int, size: int, value: int) -> None:
        step = 1 << self.regshift
        valid = offset % step == 0 and 0 <= offset < 8 * step and size in self.uart._sizes
        idx = offset // step

        def expect(pre: dict, total: bytes) -> bytes:
            if not valid:
                return total
            if idx == 0 and not pre["lcr"] & 0x80 and not pre["mcr"] & 0x10:
                pending = pre["tx_fifo"]
                busy = pre["tsr"] >= 0 or pending
                b = bytes((value & 0xFF,))
                if busy and pre["fcr"] & 1 and len(pending) >= 16:
                    cut = len(total) - len(pending)  # the oldest FIFO byte gives way
                    return total[:cut] + total[cut + 1:] + b
                if busy and not pre["fcr"] & 1 and pending:
                    return total[:-1] + b  # 16450 holding register: the last write wins
                return total + b
            if idx == 2 and (value & 0x04 or (value ^ pre["fcr"]) & 0x01):
                return total[:len(total) - len(pre["tx_fifo"])]  # transmit FIFO reset
            return total

        self._step(lambda: self.uart.write(offset, size, value), expect)

    @rule(data=st.binary(max_size=20))
    def host_input(self, data: bytes) -> None:
        self.chr.feed(data)

    @rule()
    def host_break(self) -> None:
        self.reg.send_break("h")

    @rule(ns=st.integers(0, 10_000_000))
    def time_passes(self, ns: int) -> None:
        self._step(lambda: self.clock.advance(ns), lambda pre, total: total)

    @rule(flag=st.booleans())
    def backend_blocks(self, flag: bool) -> None:
        self.chr.set_blocked(flag)
        self._settled()

    @rule()
    def hotswap(self) -> None:
        self.reg.change("h", {"type": "ringbuf", "data": {"size": 65536}})
        self.old.append(self.chr)
        self.chr = self.reg.find("h")
        self._settled()

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "uart"):
            return
        with self.uart.lock:
            s = self.uart.state()
            level = self.irq.level
            assert self._tx_total() == self.total
        depth = 16 if s["fcr"] & 1 else 1
        assert len(s["rx_fifo"]) <= depth and len(s["tx_fifo"]) <= depth
        assert bool(s["lsr"] & 1) == bool(s["rx_fifo"])
        assert len(s["rx_brk"]) == len(s["rx_fifo"])
        assert s["iir"] == expected_iir(s)
        assert level == (s["iir"] != 1)
        busy = s["tsr"] >= 0 or s["tx_fifo"]
        assert bool(s["lsr"] & 0x40) == (not busy)
        if busy:
            assert not s["lsr"] & 0x20 or s["tsr"] >= 0 and not s["tx_fifo"]


class Uart4Machine(UartMachine):
    regshift = 2


_settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
UartMachine.TestCase.settings = settings(_settings, max_examples=300)
Uart4Machine.TestCase.settings = settings(_settings, max_examples=20)
test_uart_state_machine = UartMachine.TestCase
test_uart_regshift2_state_machine = Uart4Machine.TestCase



def test_byte_written_while_the_swap_is_in_progress_reaches_the_new_backend(reg, monkeypatch):
    uart, _, old = make(reg)
    g = Guest(uart)
    g.init_8n1()
    g.putc(ord("a"))
    write_during_swap_window(monkeypatch, lambda: g.w(RBR, ord("b")))
    reg.change("com1", {"type": "ringbuf", "data": {"size": 4096}})
    new = reg.find("com1")
    assert reg.run_until(lambda: g.r(LSR) & 0x60 == 0x60)
    g.putc(ord("c"))
    assert old.peek() + new.peek() == b"abc"
    uart.close()


def test_byte_written_while_a_failed_swap_is_in_progress_stays_on_the_old_backend(
        reg, monkeypatch):
    uart, _, old = make(reg)
    g = Guest(uart)
    g.init_8n1()
    g.putc(ord("a"))
    write_during_swap_window(monkeypatch, lambda: g.w(RBR, ord("b")), refuse=True)
    with pytest.raises(ChardevError):
        reg.change("com1", {"type": "ringbuf", "data": {"size": 4096}})
    assert reg.find("com1") is old
    assert reg.run_until(lambda: g.r(LSR) & 0x60 == 0x60)
    g.putc(ord("c"))
    assert old.peek() == b"abc"
    uart.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("feed"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("read"), st.integers(0, 20)),
    st.tuples(st.just("fcr"), st.sampled_from([0x01, 0x41, 0x81, 0xC1])),  # trigger only
    st.tuples(st.just("ier"), st.integers(0, 15)),
    st.tuples(st.just("time"), st.integers(0, 2_000_000))), max_size=25))
def test_host_input_arrives_whole_and_in_order(reg, ops):
    """Whatever the guest does between reads (trigger levels, IER, time), host input is
    neither dropped nor reordered: flow control holds what the FIFO has no room for."""
    clock = VirtualClock()
    label = f"rx{len(reg.query())}"
    uart, _, chr_ = make(reg, clock=clock, label=label)
    g = Guest(uart)
    g.init_8n1(fcr=0x07)
    fed = bytearray()
    got = bytearray()
    for op, arg in ops:
        if op == "feed":
            chr_.feed(arg)
            fed += arg
        elif op == "read":
            for _ in range(arg):
                if g.r(LSR) & 1:
                    got.append(g.r(RBR))
        elif op == "fcr":
            g.w(FCR, arg)
        elif op == "ier":
            g.w(IER, arg)
        else:
            clock.advance(arg)
        assert not g.r(LSR) & 0x02, "overrun"

    def drain() -> bool:
        while g.r(LSR) & 1:
            got.append(g.r(RBR))
        return len(got) >= len(fed)

    assert reg.run_until(drain, 5)
    assert bytes(got) == bytes(fed)
    uart.close()
