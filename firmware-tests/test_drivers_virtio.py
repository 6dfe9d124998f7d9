"""virtio-console guest drivers over virtio-mmio slot 0: spec-order init with VERSION_1 and
output on port 0 (completions waited for on the slot's interrupt, PLIC source 16), input on
port 0, the multiport control-queue handshake with a named port, and a sloppy sDDF-like
driver that skips steps (the device must refuse or cope, never crash)."""

from __future__ import annotations

import pytest
from fw_support import BackgroundRun, ConsoleSet, wait_output, wait_until

PORT0_OUT = b"virtio console: hello from port 0\nsecond buffer\n"


@pytest.fixture
def consoles(registry, tmp_path):
    with ConsoleSet(registry, tmp_path) as made:
        yield made


@pytest.mark.parametrize("kind", ["file", "ringbuf", "socket"])
def test_spec_order_output_on_port0(kind, registry, machine, consoles, build_driver):
    con = consoles(kind, "vcon")
    m = machine(serial=[None, None, None])
    m.add_virtio_port(con.chr, console=True)
    m.load(build_driver("virtio_console"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert wait_output(registry, con, PORT0_OUT) == PORT0_OUT
    # completions raise the slot's interrupt (the line stays up until the guest acks it)
    assert m.stats["irqs"] >= 1


@pytest.mark.parametrize("kind", ["ringbuf", "socket"])
def test_port0_input_echo(kind, registry, machine, consoles, build_driver):
    con = consoles(kind, "vcon")
    m = machine(serial=[None, None, None])
    m.add_virtio_port(con.chr, console=True)
    m.load(build_driver("virtio_console", defines={"ECHO": 1}))
    run = BackgroundRun(m, 30)
    wait_until(registry, lambda: con.data() == PORT0_OUT, 10, "port 0 output")
    con.feed(b"ping from the host\n")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    expected = PORT0_OUT + b"got: ping from the host\n"
    assert wait_output(registry, con, expected) == expected


def test_no_virtio_device_without_ports(registry, machine, build_driver):
    """With no port the console still sits in slot 0 (docs/interfaces.md): the driver finds
    it, its output for the missing port 0 is dropped, and it finishes with exit 0."""
    m = machine(serial=[None, None, None])
    m.load(build_driver("virtio_console"))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res


@pytest.mark.parametrize("kind", ["ringbuf", "socket"])
def test_multiport_handshake_and_named_port(kind, registry, machine, consoles, build_driver):
    con = consoles("ringbuf", "vcon")
    named = consoles(kind, "vport")
    m = machine(serial=[None, None, None])
    assert m.add_virtio_port(con.chr, console=True) == 0
    assert m.add_virtio_port(named.chr, name="org.e2k.test", console=False) == 1
    m.load(build_driver("virtio_console", defines={"MULTIPORT": 1, "EXPECT_PORTS": 2}))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    expected0 = (b"virtio-console: 2 ports\nport 0 console\nport 1 generic name org.e2k.test\n"
                 + PORT0_OUT)
    assert con.data() == expected0
    named_out = b"hello from port 1 (org.e2k.test)\n"
    assert wait_output(registry, named, named_out) == named_out


def test_sloppy_driver_without_version_1_is_refused(registry, machine, consoles, build_driver):
    """sDDF-style: no DriverFeatures (VERSION_1 not accepted), Status written
    non-cumulatively, notify before QueueReady, 512-entry queues. A v2 device refuses
    FEATURES_OK; nothing reaches the host and the emulator carries on."""
    con = consoles("ringbuf", "vcon")
    m = machine(serial=[None, None, None])
    m.add_virtio_port(con.chr, console=True)
    m.load(build_driver("virtio_sloppy"))
    res = m.run(timeout=20)
    assert res.reason == "exit", res
    # exit code = 10 + FEATURES_OK seen (1) + bytes completed (2) + NEEDS_RESET seen (4)
    flags = res.exit_code - 10
    assert 0 <= flags < 8, res
    assert not flags & 1, "FEATURES_OK accepted without VERSION_1"
    assert not flags & 2, "buffers completed on a device that refused its features"
    assert con.data() == b""


def test_sloppy_driver_with_version_1(registry, machine, consoles, build_driver):
    """The same sloppy sequence but accepting VERSION_1. The device may ignore the
    non-cumulative Status writes or the oversized queues (NEEDS_RESET, bit 4): either the
    1-byte descriptors come out whole and in order, or nothing does — never a crash or a
    half-written message."""
    con = consoles("ringbuf", "vcon")
    m = machine(serial=[None, None, None])
    m.add_virtio_port(con.chr, console=True)
    m.load(build_driver("virtio_sloppy", defines={"SLOPPY_FEATURES": 1}))
    res = m.run(timeout=20)
    assert res.reason == "exit", res
    flags = res.exit_code - 10
    assert 0 <= flags < 8, res
    if flags & 2:
        assert wait_output(registry, con, b"sloppy\n") == b"sloppy\n"
    else:
        assert con.data() == b""


@pytest.mark.parametrize("defines", [None, {"MULTIPORT": 1, "EXPECT_PORTS": 2}])
def test_virtio_drivers_build_for_qemu_virt(defines, build_driver):
    for name in ("virtio_console", "virtio_sloppy"):
        elf = build_driver(name, map="virt", defines=defines)
        assert elf.read_bytes()[:4] == b"\x7fELF"
