"""NS16550A guest drivers on COM1 of the E2K machine: the Linux 8250 autoconfig and Xen
existence probes with polled output, and an interrupt-driven echo through the interrupt
controller (PLIC source 4), with file, ringbuf and socket backends. The same sources must
also build for QEMU's virt map (benchmarks run them there)."""

from __future__ import annotations

import random
import re

import pytest
from fw_support import BackgroundRun, ConsoleSet, wait_output, wait_until

PROBE_OUT = (b"ns16550: 16550A at 0x1010003f8 (linux autoconfig ok, xen probe ok, "
             b"loopback ok)\n")
SUMMARY = re.compile(rb"\nrx=(\d+) irqs=(\d+) thri=(\d+) spurious=(\d+)\n$")


@pytest.fixture
def consoles(registry, tmp_path):
    with ConsoleSet(registry, tmp_path) as made:
        yield made


@pytest.mark.parametrize("kind", ["file", "ringbuf", "socket"])
def test_probe_and_polled_output(kind, registry, machine, consoles, build_driver):
    com1 = consoles(kind, "com1")
    m = machine(serial=[None, None, com1.chr])
    m.load(build_driver("ns16550_probe"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    # the loopback byte of the probe must not reach the host
    assert wait_output(registry, com1, PROBE_OUT) == PROBE_OUT
    # left as the early-console init programs it: 8N1, 115200, DTR|RTS, no interrupts, FIFO
    st = m.devices["com1"].state()
    assert (st["lcr"], st["divider"], st["mcr"], st["ier"]) == (0x03, 1, 0x03, 0)
    assert st["fcr"] & 0xC1 == 0xC1


def _run_echo(registry, machine, consoles, build_driver, kind, sent, defines=None,
              clock="virtual"):
    con = consoles(kind, "com1")
    m = machine(serial=[None, None, con.chr], clock=clock)
    m.load(build_driver("ns16550_irq_echo", defines=defines))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    con.feed(sent)
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: SUMMARY.search(con.data()) is not None, 5)
    out = con.data()
    match = SUMMARY.search(out)
    assert match, out[-200:]
    assert out[len(b"ready\n"):match.start()] == sent.replace(b"\x04", b"")
    rx, irqs, thri, spurious = (int(x) for x in match.groups())
    assert rx == len(sent)
    assert spurious == 0
    assert 1 <= irqs <= rx + thri
    assert thri >= 1            # echo goes out from the THRE interrupt
    stats_irqs = m.stats.get("irqs")
    if isinstance(stats_irqs, int):
        assert stats_irqs >= irqs
    return rx, irqs, thri


@pytest.mark.parametrize("kind", ["ringbuf", "socket"])
def test_irq_echo_trigger_1(kind, registry, machine, consoles, build_driver):
    sent = b"The quick brown fox jumps over the lazy dog. " * 6 + b"\x04"
    _run_echo(registry, machine, consoles, build_driver, kind, sent)


@pytest.mark.parametrize("clock", ["virtual", "host"])
def test_irq_echo_trigger_14_uses_character_timeout(clock, registry, machine, consoles,
                                                    build_driver):
    """With the Rx trigger at 14 bytes, a 10-byte tail is only delivered by the character
    timeout interrupt: the echo completes only if that works, on either machine clock."""
    sent = b"0123456789abcdefghijklmnopqrstuvwxyz!" + b"\x04"
    _run_echo(registry, machine, consoles, build_driver, "ringbuf", sent,
              defines={"FCR_VALUE": "0xC7"}, clock=clock)


@pytest.mark.parametrize("name", ["ns16550_probe", "ns16550_irq_echo", "hello_16550"])
def test_drivers_build_for_qemu_virt(name, build_driver):
    elf = build_driver(name, map="virt")
    data = elf.read_bytes()
    assert data[:4] == b"\x7fELF"
    assert int.from_bytes(data[18:20], "little") == 243   # EM_RISCV


def test_irq_echo_lockstep_one_interrupt_per_byte(registry, machine, consoles, build_driver):
    """One byte at a time: a byte normally needs its own Rx-data interrupt (one can slip
    into the IIR loop of the previous one); THRI shares it."""
    con = consoles("ringbuf", "com1")
    m = machine(serial=[None, None, con.chr])
    m.load(build_driver("ns16550_irq_echo"))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    text = b"step by step"
    for i, byte in enumerate(text):
        con.feed(bytes([byte]))
        want = b"ready\n" + text[:i + 1]
        wait_until(registry, lambda want=want: con.data() == want, 10, f"echo of byte {i}")
    con.feed(b"\x04")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: SUMMARY.search(con.data()) is not None, 5)
    rx, irqs, thri, spurious = (int(x) for x in SUMMARY.search(con.data()).groups())
    n = len(text) + 1
    assert rx == n and spurious == 0
    assert n // 2 < irqs <= 2 * n
    assert thri == len(text)            # one THRE interrupt per echoed byte
    assert m.stats["irqs"] >= irqs


@pytest.mark.parametrize("kind", ["ringbuf", "socket"])
def test_irq_echo_bulk_binary_no_loss(kind, registry, machine, consoles, build_driver):
    """8 KiB of binary input at once through a 16-byte FIFO and a 256-byte echo queue:
    backend flow control plus the driver's RDI throttle lose nothing."""
    rng = random.Random(16550)
    sent = bytes(b for b in rng.randbytes(9000) if b != 0x04)[:8192] + b"\x04"
    _run_echo(registry, machine, consoles, build_driver, kind, sent)


def test_irq_echo_without_eot_exit_is_a_loopback(registry, machine, consoles, build_driver):
    """EOT_EXITS=0: EOT is echoed like any byte and the guest keeps running (a loopback
    for clients that send every byte value, such as pyserial's own tests)."""
    con = consoles("ringbuf", "com1")
    m = machine(serial=[None, None, con.chr])
    m.load(build_driver("ns16550_irq_echo", defines={"EOT_EXITS": 0}))
    run = BackgroundRun(m, 3)
    wait_until(registry, lambda: con.data().startswith(b"ready\n"), 10, "ready")
    sent = bytes(range(256))
    con.feed(sent)
    wait_until(registry, lambda: con.data() == b"ready\n" + sent, 10, "echo")
    assert not run.done()
    assert run.result().reason == "timeout"
