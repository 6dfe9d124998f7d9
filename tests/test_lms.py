"""LMS simulator console (ports 0x300..0x304 as window offsets 0..4)."""

from __future__ import annotations

import json

import pytest
from e2kchar.devices import IrqLine, LmsConsole
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from recording import RecChardev, write_during_swap_window

from e2kchar import ChardevError, ChardevRegistry


@pytest.fixture
def reg():
    with ChardevRegistry() as r:
        r.register_backend("ringbuf", RecChardev)
        yield r


def lms_putc(dev: LmsConsole, c: int, spins: int = 100000) -> None:
    """The kernel/BIOS protocol: wait while busy, byte write, then the 0 strobe."""
    for _ in range(spins):
        if dev.read(0, 4) == 0:
            break
    else:
        raise AssertionError("console stayed busy")
    dev.write(0, 1, c)
    dev.write(0, 1, 0)


def test_probe_busy_and_strobe(reg):
    chr_ = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=chr_)
    assert dev.read(0, 4) != 0xFFFFFFFF  # present
    assert dev.read(0, 4) == 0  # not busy
    for c in b"LMS boot\n":
        lms_putc(dev, c)
    assert chr_.peek() == b"LMS boot\n"  # the 0 strobes are not output
    assert chr_.ioctls == []
    dev.close()


def test_unconnected_console_reads_absent():
    dev = LmsConsole(chardev=None)
    assert dev.read(0, 4) == 0xFFFFFFFF
    assert dev.read(0, 1) == 0xFF
    dev.write(0, 1, 0x41)  # harmless
    dev.close()


def test_input_status_and_data(reg):
    chr_ = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=chr_)
    assert dev.read(1, 1) == 0 and dev.read(0, 1) == 0
    data = bytes(range(1, 200))
    chr_.feed(data)  # more than the input buffer: flow control holds the rest
    got = bytearray()

    def drain() -> bool:
        while dev.read(1, 1):
            got.append(dev.read(0, 1))
        return bytes(got) == data

    assert reg.run_until(drain, 5)
    assert dev.read(0, 4) == 0  # input never makes the port look busy
    dev.close()


def test_input_through_a_mux_is_not_stranded(reg):
    mux = reg.new("con", "ringbuf,size=4096,mux=on")
    dev = LmsConsole(chardev=mux)
    data = bytes(range(0x20, 0x7F)) + b"!" * 60  # more than the console and mux buffers hold
    reg.find("con-base").feed(data)
    got = bytearray()

    def drain() -> bool:
        while dev.read(1, 1):
            got.append(dev.read(0, 1))
        return len(got) >= len(data)

    assert reg.run_until(drain, 5), len(got)
    assert bytes(got) == data
    dev.close()


def test_blocked_backend_keeps_busy_and_loses_nothing(reg):
    chr_ = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=chr_)
    chr_.set_blocked(True)
    dev.write(0, 1, ord("a"))
    dev.write(0, 1, 0)
    assert dev.read(0, 4) == 1  # busy while the byte waits
    dev.write(0, 1, ord("b"))  # a guest that ignores busy still loses nothing
    chr_.set_blocked(False)
    assert reg.run_until(lambda: dev.read(0, 4) == 0)
    assert chr_.peek() == b"ab"
    dev.close()


def test_hotswap_moves_pending_output(reg):
    chr_ = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=chr_)
    lms_putc(dev, ord("1"))
    chr_.set_blocked(True)
    dev.write(0, 1, ord("2"))
    reg.change("lms", {"type": "ringbuf", "data": {"size": 4096}})
    new = reg.find("lms")
    assert reg.run_until(lambda: dev.read(0, 4) == 0)
    lms_putc(dev, ord("3"))
    assert chr_.peek() + new.peek() == b"123"
    new.feed(b"k")
    assert reg.run_until(lambda: dev.read(1, 1) == 1)
    assert dev.read(0, 1) == ord("k")
    dev.close()


@pytest.mark.parametrize("refuse", [False, True])
def test_byte_written_while_a_swap_is_in_progress_is_not_lost(reg, monkeypatch, refuse):
    old = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=old)
    lms_putc(dev, ord("a"))
    write_during_swap_window(monkeypatch, lambda: lms_putc(dev, ord("b")), refuse)
    if refuse:
        with pytest.raises(ChardevError):
            reg.change("lms", {"type": "ringbuf", "data": {"size": 4096}})
    else:
        reg.change("lms", {"type": "ringbuf", "data": {"size": 4096}})
    new = reg.find("lms")
    assert (new is old) == refuse
    assert reg.run_until(lambda: dev.read(0, 4) == 0)
    lms_putc(dev, ord("c"))
    assert old.peek() + (b"" if refuse else new.peek()) == b"abc"
    dev.close()


def test_other_ports_and_bad_accesses(reg):
    chr_ = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=chr_)
    dev.write(1, 1, 3)  # shift count for the tracer
    dev.write(4, 4, 1)  # tracer start
    assert dev.read(4, 4) == 1
    dev.write(4, 4, 0)
    assert dev.read(2, 4) == 0 and dev.read(3, 4) == 0
    for off in (-1, 5, 0x100, 1 << 33):
        assert dev.read(off, 4) == 0
        dev.write(off, 1, 0x41)
    for size in (0, 3, 16):
        assert dev.read(0, size) == 0
        dev.write(0, size, 0x41)
    assert chr_.peek() == b""
    dev.close()


def test_state_roundtrip(reg):
    chr_ = reg.new("lms", "ringbuf,size=4096")
    dev = LmsConsole(chardev=chr_)
    chr_.feed(b"xy")
    assert reg.run_until(lambda: dev.read(1, 1) == 1 and len(dev.state()["inbuf"]) == 2)
    dev.write(4, 1, 1)
    snap = json.loads(json.dumps(dev.state()))
    chr2 = reg.new("lms2", "ringbuf,size=4096")
    dev2 = LmsConsole(chardev=chr2)
    dev2.load_state(snap)
    assert dev2.state() == dev.state()
    assert dev2.read(0, 1) == ord("x")
    dev.reset()
    assert dev.read(1, 1) == 0 and dev.read(4, 4) == 0
    dev.close()
    dev2.close()


class LmsMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.reg = ChardevRegistry()
        self.reg.register_backend("ringbuf", RecChardev)
        self.chr = self.reg.new("l", "ringbuf,size=65536")
        self.irq = IrqLine()
        self.dev = LmsConsole(chardev=self.chr, irq=self.irq)
        self.sent = bytearray()
        self.old: list[RecChardev] = []

    def teardown(self) -> None:
        if hasattr(self, "dev"):
            self.chr.set_blocked(False)
            assert self.reg.run_until(lambda: self.dev.read(0, 4) == 0, 5)
            out = b"".join(c.peek() for c in self.old) + self.chr.peek()
            assert out == bytes(self.sent)  # nothing lost, nothing extra, across swaps
            self.dev.close()
            self.reg.close()

    @rule(offset=st.integers(-1, 6), size=st.sampled_from([0, 1, 2, 4, 8]))
    def read(self, offset: int, size: int) -> None:
        v = self.dev.read(offset, size)
        assert 0 <= v < (1 << (8 * max(size, 1)))

    @rule(offset=st.integers(1, 6), size=st.sampled_from([1, 2, 4]), value=st.integers(0, 255))
    def write_other(self, offset: int, size: int, value: int) -> None:
        self.dev.write(offset, size, value)

    @rule(value=st.integers(0, 0x1FF), size=st.sampled_from([1, 1, 1, 2, 4, 8]))
    def write_data(self, value: int, size: int) -> None:
        self.dev.write(0, size, value)
        if value & 0xFF:  # the low byte is the character; 0 is the strobe
            self.sent.append(value & 0xFF)

    @rule(data=st.binary(max_size=30))
    def host_input(self, data: bytes) -> None:
        self.chr.feed(data)

    @rule(flag=st.booleans())
    def blocks(self, flag: bool) -> None:
        self.chr.set_blocked(flag)

    @rule()
    def hotswap(self) -> None:
        self.reg.change("l", {"type": "ringbuf", "data": {"size": 65536}})
        self.old.append(self.chr)
        self.chr = self.reg.find("l")

    @invariant()
    def bounded(self) -> None:
        if hasattr(self, "dev"):
            s = self.dev.state()
            assert len(s["inbuf"]) <= 64
            assert not self.irq.level and self.dev.irq is self.irq  # a polled port


LmsMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_lms_state_machine = LmsMachine.TestCase
