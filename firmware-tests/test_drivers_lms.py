"""LMS simulator console guest driver: 32-bit probe read of port 0x300, busy spin while a
read of 0x300 is non-zero, byte write then a 0 strobe (which must not reach the host)."""

from __future__ import annotations

import pytest
from fw_support import BackgroundRun, ConsoleSet, GatedRingbuf, wait_output, wait_until

LMS_OUT = b"LMS console: hello from the simulator port\nsecond line\n"


@pytest.fixture
def consoles(registry, tmp_path):
    with ConsoleSet(registry, tmp_path) as made:
        yield made


@pytest.mark.parametrize("kind", ["file", "ringbuf", "socket"])
def test_lms_probe_busy_strobe(kind, registry, machine, consoles, build_driver):
    lms = consoles(kind, "lms")
    m = machine(serial=[None, None, None], lms=lms.chr)
    m.load(build_driver("lms_console"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert wait_output(registry, lms, LMS_OUT) == LMS_OUT


def test_lms_output_leaves_other_consoles_alone(registry, machine, consoles, build_driver):
    lms = consoles("ringbuf", "lms")
    a = consoles("ringbuf", "cha")
    com1 = consoles("ringbuf", "com1")
    m = machine(serial=[a.chr, None, com1.chr], lms=lms.chr)
    m.load(build_driver("lms_console"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert lms.data() == LMS_OUT
    assert a.data() == b"" and com1.data() == b""


def test_lms_absent_is_detected_by_the_probe(registry, machine, build_driver):
    """No chardev behind the LMS port: the 32-bit probe reads all-ones, the driver gives up
    with its 'no console' exit code instead of spinning on the busy check."""
    m = machine(serial=[None, None, None], lms=None)
    m.load(build_driver("lms_console"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 2), res


def test_lms_guest_waits_while_busy(registry, machine, build_driver):
    """A backend that refuses output: the console reads busy, the driver spins on it and
    nothing is lost or doubled once the backend takes data again."""
    registry.register_backend("ringbuf", GatedRingbuf)
    lms = registry.new("lms", "ringbuf,size=65536")
    m = machine(serial=[None, None, None], lms=lms)
    m.load(build_driver("lms_console"))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: lms.refused >= 1, 10, "a refused write")
    reads = m.stats["mmio_reads"]
    wait_until(registry, lambda: m.stats["mmio_reads"] > reads + 1000, 10, "busy polling")
    assert not run.done()
    assert lms.peek() == b""
    lms.open_gate()
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    registry.run_until(lambda: len(lms.peek()) >= len(LMS_OUT), 5)
    assert lms.peek() == LMS_OUT
