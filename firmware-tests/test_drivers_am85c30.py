"""Am85C30 guest drivers on the E2K machine: MCST BIOS init + polled output on both channels
(found through boot_info and PCI), the 2023 boot putc (RR1->WR1 quirk), and the l_zilog
interrupt protocol (RR3 loop, reset highest IUS) through the PLIC, with file, ringbuf and
socket backends."""

from __future__ import annotations

import random
import re

import pytest
from fw_support import BackgroundRun, ConsoleSet, GatedRingbuf, wait_output, wait_until

BIOS_A = (b"am85c30: boot_info serial_base 0x40000000, pci 00:02.2 1fff:8019 class 0x070002"
          b" bar1 0x40000000 size 0x1000\nchannel A: polled output ok\n")
BIOS_B = b"channel B: polled output ok\n"
SUMMARY = re.compile(rb"\nrx=(\d+) irqs=(\d+) loops=(\d+) txints=(\d+) spurious=(\d+)\n$")


@pytest.fixture
def consoles(registry, tmp_path):
    with ConsoleSet(registry, tmp_path) as made:
        yield made


@pytest.mark.parametrize("kind", ["file", "ringbuf", "socket"])
def test_bios_init_and_polled_output_on_both_channels(kind, registry, machine, consoles,
                                                      build_driver):
    a = consoles(kind, "cha")
    b = consoles("ringbuf", "chb")
    m = machine(serial=[a.chr, b.chr, None])
    m.load(build_driver("am85c30_bios"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert wait_output(registry, a, BIOS_A) == BIOS_A
    assert b.data() == BIOS_B
    # channel B was set up last: its registers hold the BIOS values; MIE stays clear
    st = m.devices["am85c30"].state()
    wr = st["b"]["wr"]
    assert [wr[r] for r in (3, 4, 5, 6, 11, 12, 13)] == [0xC1, 0x44, 0x68, 0x15, 0x50,
                                                        0x1E, 0x00]
    assert not st["wr9"] & 0x08


def test_bios_init_channel_b_on_a_file(registry, machine, consoles, build_driver):
    a = consoles("ringbuf", "cha")
    b = consoles("file", "chb")
    m = machine(serial=[a.chr, b.chr, None])
    m.load(build_driver("am85c30_bios"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert a.data() == BIOS_A
    assert wait_output(registry, b, BIOS_B) == BIOS_B


BOOT_PUTC_A = (b"boot putc 2023 on channel A\r\nA line 0\r\nA line 1\r\nA line 2\r\nno irq\r\n")
BOOT_PUTC_B = b"boot putc 2023 on channel B\r\n"


@pytest.mark.parametrize("kind", ["file", "ringbuf"])
def test_boot_putc_2023_survives_rr1_to_wr1(kind, registry, machine, consoles, build_driver):
    """The RR1->WR1 restore sets interrupt enables in WR1; with WR9.MIE clear (as the BIOS
    leaves it) the chip must not interrupt, and every byte must come out once."""
    a = consoles(kind, "cha")
    b = consoles("ringbuf", "chb")
    m = machine(serial=[a.chr, b.chr, None])
    m.load(build_driver("am85c30_boot_putc"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert wait_output(registry, a, BOOT_PUTC_A) == BOOT_PUTC_A
    assert b.data() == BOOT_PUTC_B


def _check_echo(out: bytes, sent: bytes) -> dict[str, int]:
    assert out.startswith(b"ready\n"), out[:80]
    m = SUMMARY.search(out)
    assert m, out[-200:]
    body = out[len(b"ready\n"):m.start()]
    assert body == sent.replace(b"\x04", b""), (body, sent)
    rx, irqs, loops, txints, spurious = (int(x) for x in m.groups())
    assert rx == len(sent)
    assert spurious == 0
    # every interrupt the guest took had a cause: a receive batch or a transmitted byte
    assert 1 <= irqs <= rx + txints
    assert loops >= 1
    return {"rx": rx, "irqs": irqs, "loops": loops, "txints": txints}


@pytest.mark.parametrize("channel", [0, 1], ids=["A", "B"])
@pytest.mark.parametrize("kind", ["ringbuf", "socket"])
def test_irq_echo_rr3_loop(kind, channel, registry, machine, consoles, build_driver):
    con = consoles(kind, "echo")
    other = consoles("ringbuf", "other")
    serial = [con.chr, other.chr, None] if channel == 0 else [other.chr, con.chr, None]
    m = machine(serial=serial)
    m.load(build_driver("am85c30_irq_echo", defines={"ECHO_CH": channel}))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    sent = b"hello, am85c30! " * 8 + b"\x04"
    con.feed(sent)
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    out = wait_output(registry, con, b"ready\n" + sent)
    registry.run_until(lambda: SUMMARY.search(con.data()) is not None, 5)
    counts = _check_echo(con.data(), sent)
    assert other.data() == b""
    # the machine saw at least as many Am85C30 interrupts as the guest handled
    irqs = m.stats.get("irqs")
    if isinstance(irqs, int):
        assert irqs >= counts["irqs"]
    assert out


def test_irq_echo_input_from_a_file(registry, machine, consoles, build_driver):
    """File input arrives at boot; the receiver is off until the driver enables it, so the
    backend holds the bytes back and none is lost."""
    sent = b"file input line\n" + b"\x04"
    con = consoles("file", "echo", in_data=sent)
    m = machine(serial=[con.chr, None, None])
    m.load(build_driver("am85c30_irq_echo"))
    res = m.run(timeout=30)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: SUMMARY.search(con.data()) is not None, 5)
    _check_echo(con.data(), sent)


def test_irq_echo_lockstep_one_interrupt_per_byte(registry, machine, consoles, build_driver):
    """Bytes sent one at a time, each after the previous echo came back: a byte normally
    needs its own Rx interrupt (one can still slip into the handler's RR3 loop while it
    finishes the previous echo), and at most one more for its transmit completion."""
    con = consoles("ringbuf", "echo")
    m = machine(serial=[con.chr, None, None])
    m.load(build_driver("am85c30_irq_echo"))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    text = b"lockstep!!"
    for i, byte in enumerate(text):
        con.feed(bytes([byte]))
        want = b"ready\n" + text[:i + 1]
        wait_until(registry, lambda want=want: con.data() == want, 10, f"echo of byte {i}")
    con.feed(b"\x04")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: SUMMARY.search(con.data()) is not None, 5)
    counts = _check_echo(con.data(), text + b"\x04")
    n = len(text) + 1
    assert n // 2 < counts["irqs"] <= 2 * n, counts
    assert counts["txints"] >= len(text) - 1, counts   # Tx completions were interrupts too
    assert m.stats["irqs"] >= counts["irqs"]


@pytest.mark.parametrize("channel", [0, 1])
def test_irq_echo_without_eot_exit_is_a_loopback(channel, registry, machine, consoles,
                                                 build_driver):
    """EOT_EXITS=0: EOT is echoed like any byte and the guest keeps running (a loopback
    for clients that send every byte value, such as pyserial's own tests)."""
    con = consoles("ringbuf", "echo")
    other = consoles("ringbuf", "other")
    m = machine(serial=[con.chr, other.chr, None] if channel == 0 else [other.chr, con.chr, None])
    m.load(build_driver("am85c30_irq_echo", defines={"ECHO_CH": channel, "EOT_EXITS": 0}))
    run = BackgroundRun(m, 3)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    sent = bytes(range(256)) * 2
    con.feed(sent)
    wait_until(registry, lambda: con.data() == b"ready\n" + sent, 10, "echo")
    assert other.data() == b""
    assert not run.done()
    assert run.result().reason == "timeout"


@pytest.mark.parametrize("kind,clock", [("ringbuf", "virtual"), ("socket", "virtual"),
                                        ("ringbuf", "host")])
def test_irq_echo_bulk_binary_no_loss(kind, clock, registry, machine, consoles, build_driver):
    """8 KiB of binary input at once: far more than the 3-byte FIFO and the driver's
    256-byte echo queue. The backend waits for FIFO room, the driver throttles its Rx
    interrupt while the queue is full: every byte comes back, in order."""
    rng = random.Random(85030)
    sent = bytes(b for b in rng.randbytes(9000) if b != 0x04)[:8192] + b"\x04"
    con = consoles(kind, "echo")
    m = machine(serial=[con.chr, None, None], clock=clock)
    m.load(build_driver("am85c30_irq_echo"))
    run = BackgroundRun(m, 60)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    con.feed(sent)
    res = run.result(60)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: SUMMARY.search(con.data()) is not None, 5)
    _check_echo(con.data(), sent)


def test_polled_output_waits_for_a_refusing_backend(registry, machine, build_driver):
    """Channel A's backend refuses output: Tx buffer empty stays clear, the BIOS-style putc
    keeps polling RR0, and once the backend takes data the text comes out exactly once."""
    registry.register_backend("ringbuf", GatedRingbuf)
    a = registry.new("cha", "ringbuf,size=65536")
    b = registry.new("chb", "ringbuf,size=65536")
    b.open_gate()
    m = machine(serial=[a, b, None])
    m.load(build_driver("am85c30_bios"))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: a.refused >= 1, 10, "a refused write")
    reads = m.stats["mmio_reads"]
    wait_until(registry, lambda: m.stats["mmio_reads"] > reads + 1000, 10, "RR0 polling")
    assert not run.done()
    assert a.peek() == b""
    a.open_gate()
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: len(a.peek()) >= len(BIOS_A), 5)
    assert a.peek() == BIOS_A
    assert b.peek() == BIOS_B
