"""virtio-console: multiport handshake, data paths with flow control, emergency write, hotswap."""

from __future__ import annotations

import fcntl
import logging
import os
import struct

import pytest
from e2kchar.devices import BytearrayMemory, IrqLine, VirtioConsole, VirtioMmio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from virtio_guest import (
    ACK,
    CONFIG,
    CONSOLE_PORT,
    DEVICE_READY,
    DRIVER,
    DRIVER_OK,
    F_EVENT_IDX,
    F_INDIRECT,
    FEATURES_OK,
    INT_STATUS,
    NEEDS_RESET,
    PORT_ADD,
    PORT_NAME,
    PORT_OPEN,
    PORT_READY,
    PORT_REMOVE,
    RAM_BASE,
    RAM_SIZE,
    RESIZE,
    STATUS,
    ConsoleGuest,
    rx_queue,
)

from e2kchar import CharBackend, ChardevEvent
from e2kchar.chardev.ringbuf import RingbufChardev

BAD_ID = 0xFFFFFFFF
BIG_RING = "ringbuf,size=1048576"


class Rig:
    """A console behind virtio-mmio, a guest driver, and the registry that owns the backends."""

    def __init__(self, reg, max_ports=4, multiport=True, extra=0, ports=()):
        self.reg = reg
        self.mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
        self.irq = IrqLine()
        self.con = VirtioConsole(max_ports=max_ports)
        self.chr = {}
        for label, spec, name, console in ports:
            c = reg.new(label, spec) if spec else reg.find(label)
            self.chr[label] = c
            self.con.add_port(chardev=c, name=name, console=console)
        self.mmio = VirtioMmio(device=self.con, memory=self.mem, irq=self.irq)
        self.g = ConsoleGuest(self.mmio, self.mem)
        self.g.start(max_ports, multiport, extra)

    def handshake(self, open_ports=()):
        g = self.g
        g.send_ctrl(BAD_ID, DEVICE_READY, 1)
        added = g.read_ctrl()
        for pid, _, _, _ in added:
            g.send_ctrl(pid, PORT_READY, 1)
        for p in open_ports:
            g.send_ctrl(p, PORT_OPEN, 1)
        g.read_ctrl()
        return added

    def wait(self, pred, timeout=5.0):
        assert self.reg.run_until(pred, timeout), "timed out"


def host_connected(rig, nr):
    return lambda: rig.con.port(nr).host_connected


# ---------------------------------------------------------------------------------------
# handshake


def test_multiport_handshake_message_exact(reg):
    reg.new("c0", "ringbuf")
    reg.new("p1", "ringbuf")
    con = VirtioConsole(max_ports=4)
    assert con.add_port(chardev=reg.find("p1"), name="org.test.0", console=False) == 1
    assert con.add_port(chardev=reg.find("c0"), console=True) == 0
    assert con.add_port(chardev=None, name="org.nobackend", console=False) == 2
    mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
    mmio = VirtioMmio(device=con, memory=mem, irq=IrqLine())
    g = ConsoleGuest(mmio, mem)
    g.start(4)
    assert reg.run_until(lambda: con.port(1).host_connected, 2)
    assert g.read_ctrl() == []  # nothing before DEVICE_READY
    g.send_ctrl(BAD_ID, DEVICE_READY, 1)
    assert g.read_ctrl() == [(0, PORT_ADD, 1, b""), (1, PORT_ADD, 1, b""), (2, PORT_ADD, 1, b"")]
    g.send_ctrl(0, PORT_READY, 1)
    assert g.read_ctrl() == [(0, CONSOLE_PORT, 1, b""), (0, PORT_OPEN, 1, b"")]
    g.send_ctrl(1, PORT_READY, 1)
    assert g.read_ctrl() == [(1, PORT_NAME, 1, b"org.test.0\0"), (1, PORT_OPEN, 1, b"")]
    g.send_ctrl(2, PORT_READY, 1)  # no backend: named, host side not open
    assert g.read_ctrl() == [(2, PORT_NAME, 1, b"org.nobackend\0")]
    # the guest opens the generic port: its backend's frontend becomes open
    assert {c["label"]: c["frontend-open"] for c in reg.query()} == {"c0": True, "p1": False}
    g.send_ctrl(1, PORT_OPEN, 1)
    assert {c["label"]: c["frontend-open"] for c in reg.query()} == {"c0": True, "p1": True}
    g.send_ctrl(1, PORT_OPEN, 0)
    assert {c["label"]: c["frontend-open"] for c in reg.query()}["p1"] is False
    # resize: spec order (cols, rows) after the 8-byte header
    con.resize(0, 80, 25)
    assert g.read_ctrl() == [(0, RESIZE, 0, struct.pack("<HH", 80, 25))]
    # hot-plug and hot-unplug
    reg.new("p3", "ringbuf")
    assert con.add_port(chardev=reg.find("p3"), name="late", console=False) == 3
    assert g.read_ctrl() == [(3, PORT_ADD, 1, b"")]
    con.remove_port(3)
    assert g.read_ctrl() == [(3, PORT_REMOVE, 1, b"")]
    assert reg.query()[-1] == {"label": "p3", "filename": "ringbuf", "frontend-open": False}


def test_add_port_rules():
    con = VirtioConsole(max_ports=3)
    assert con.add_port(None, name="a", console=False) == 1
    assert con.add_port(None, console=True) == 0
    assert con.add_port(None, console=True) == 2  # a second console is not port 0
    with pytest.raises(ValueError, match="no free port"):
        con.add_port(None, console=False)
    with pytest.raises(ValueError, match="already in use"):
        con.add_port(None, name="a", console=True)
    with pytest.raises(ValueError, match="max_ports"):
        VirtioConsole(max_ports=0)
    with pytest.raises(ValueError, match="reserved for a console"):
        VirtioConsole(max_ports=3).add_port(None, console=False, nr=0)


def test_garbage_control_messages_are_ignored(reg, caplog):
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    g = rig.g
    with caplog.at_level(logging.WARNING):
        q = g.queues[3]
        q.add(outs=[b"\x01\x02\x03"])  # short
        q.add(outs=[struct.pack("<IHH", 0, 99, 1)])  # unknown event
        q.add(outs=[struct.pack("<IHH", 7, PORT_READY, 1)])  # unknown port
        q.add(outs=[struct.pack("<IHH", 0, PORT_ADD, 1)])  # device-only event
        q.add(outs=[struct.pack("<IHH", 0, PORT_OPEN, 1) + b"x" * 9000])  # oversized
        q.kick()
        assert len(q.get_used()) == 5
        g.send_ctrl(BAD_ID, DEVICE_READY, 0)  # the guest failed to initialise
    assert g.read_ctrl() == []
    assert "short control message" in caplog.text and "unknown port 7" in caplog.text
    assert "unknown control event 99" in caplog.text
    assert not g.r(STATUS) & NEEDS_RESET
    assert rig.handshake([0])[0] == (0, PORT_ADD, 1, b"")  # and the device still works


# ---------------------------------------------------------------------------------------
# guest -> host


def test_guest_output_split_indirect_and_batched(reg):
    rig = Rig(reg, extra=1 << F_INDIRECT, ports=[("c0", BIG_RING, None, True)])
    rig.handshake([0])
    q = rig.g.queues[1]
    q.add(outs=[b"one ", b"two "])
    q.add(outs=[b"three ", b"four "], indirect=True)
    q.add(outs=[b"five"])
    q.kick()
    assert rig.chr["c0"].peek() == b"one two three four five"
    assert [u.len for u in q.get_used()] == [0, 0, 0]
    assert rig.g.r(INT_STATUS) & 1 and rig.irq.level


def test_console_port_without_multiport(reg):
    """A driver that does not negotiate MULTIPORT: port 0 only, connected on DRIVER_OK."""
    rig = Rig(reg, multiport=False, ports=[("c0", BIG_RING, None, True)])
    rig.g.send(0, b"hello")
    assert rig.chr["c0"].peek() == b"hello"
    assert rig.g.queues[1].get_used()[0].len == 0


class ShortWriter(RingbufChardev):
    """Accepts at most 5 bytes per write and refuses every other attempt (a slow host)."""

    def open(self) -> bool:
        self.got = bytearray()
        self.calls = 0
        self.stall = False
        return super().open()

    def chr_write(self, data):
        self.calls += 1
        if self.stall or self.calls % 2 == 0:
            raise BlockingIOError
        n = min(5, len(data))
        self.got += data[:n]
        return n

    def chr_arm_watch(self) -> None:
        if not self.stall:
            super().chr_arm_watch()


def test_guest_output_backpressure_on_console_port_loses_nothing(reg):
    reg.register_backend("ringbuf", ShortWriter)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    data = bytes(range(256)) * 8
    chunks = [data[i:i + 300] for i in range(0, len(data), 300)]
    for c in chunks:
        rig.g.send(0, c, kick=False)
    rig.g.queues[1].kick()
    port = rig.con.port(0)
    assert port.throttled  # the first short write throttled the port
    w = rig.chr["c0"]
    rig.wait(lambda: len(w.got) == len(data))
    assert bytes(w.got) == data
    rig.wait(lambda: rig.g.queues[1].pending_used() == len(chunks))
    assert not port.throttled


def fifo_pair(tmp_path, name, out_pipe_size=4096):
    base = str(tmp_path / name)
    os.mkfifo(base + ".in")
    os.mkfifo(base + ".out")
    return base


def slow_read(reg, path, n, piece, timeout=20.0):
    """Read n bytes from a fifo `piece` bytes at a time (a slow reader), running reg meanwhile."""
    import time

    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        got = bytearray()
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            try:
                got += os.read(reader, piece)
            except BlockingIOError:
                reg.run_until(lambda: False, 0.002)
        return bytes(got)
    finally:
        os.close(reader)


def test_guest_output_backpressure_through_a_slow_pipe(reg, tmp_path):
    base = fifo_pair(tmp_path, "p")
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True), ("p1", f"pipe,path={base}", "slow", False)])
    rig.wait(host_connected(rig, 1))
    rig.handshake([0, 1])
    out_fd = rig.chr["p1"].out_fd
    fcntl.fcntl(out_fd, fcntl.F_SETPIPE_SZ, 4096)
    data = os.urandom(200_000)
    q = rig.g.queues[rx_queue(1) + 1]
    for i in range(0, len(data), 50_000):
        q.add(outs=[data[i:i + 50_000]])
    q.kick()  # the pipe fills up: the port throttles instead of dropping
    assert rig.con.port(1).throttled
    assert slow_read(reg, base + ".out", len(data), 1000, timeout=10) == data
    rig.wait(lambda: q.pending_used() == 4)


def test_generic_port_holds_output_until_the_host_connects(reg):
    class Sockish(RingbufChardev):
        def open(self) -> bool:
            super().open()
            return False  # like a socket server waiting for its client

    reg.register_backend("ringbuf", Sockish)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True), ("s1", "ringbuf", "sock", False)])
    rig.handshake([1])
    assert (1, PORT_OPEN, 1, b"") not in rig.g.ctrl_log  # host side not connected
    s = rig.chr["s1"]
    rig.g.send(1, b"held back")
    assert s.peek() == b"" and rig.g.queues[rx_queue(1) + 1].pending_used() == 0
    reg.ioloop.run_sync(lambda: s.be_event(ChardevEvent.OPENED))
    assert rig.g.read_ctrl() == [(1, PORT_OPEN, 1, b"")]
    assert s.peek() == b"held back"
    reg.ioloop.run_sync(lambda: s.be_event(ChardevEvent.CLOSED))
    assert rig.g.read_ctrl() == [(1, PORT_OPEN, 0, b"")]
    reg.ioloop.run_sync(lambda: s.be_event(ChardevEvent.CLOSED))  # no duplicate
    assert rig.g.read_ctrl() == []
    reg.ioloop.run_sync(lambda: s.be_event(ChardevEvent.OPENED))
    assert rig.g.read_ctrl() == [(1, PORT_OPEN, 1, b"")]


class Gate(RingbufChardev):
    """Takes everything while open; while `blocked` refuses and stays unwritable. Records
    what it was handed while its host side was reported closed."""

    def open(self) -> bool:
        self.got = bytearray()
        self.while_closed = bytearray()
        self.blocked = False
        return super().open()

    def chr_write(self, data):
        if self.blocked:
            raise BlockingIOError
        (self.got if self.be_open else self.while_closed).extend(data)
        return len(data)

    def chr_arm_watch(self) -> None:
        if not self.blocked:
            super().chr_arm_watch()


def test_generic_port_holds_the_rest_of_a_chain_while_the_host_is_away(reg):
    """The host disconnects while a chain is half written: the rest is not written into
    the void (a socket drops it) but waits for the next connection, exactly once."""
    reg.register_backend("ringbuf", Gate)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True), ("s1", "ringbuf", "g", False)])
    rig.wait(host_connected(rig, 1))
    rig.handshake([1])
    s = rig.chr["s1"]
    data = os.urandom(3000)
    s.blocked = True
    rig.g.send(1, data[:1000], kick=False)
    q = rig.g.queues[rx_queue(1) + 1]
    q.add(outs=[data[1000:2000], data[2000:]])  # one chain of two segments
    q.kick()
    assert rig.con.port(1).throttled and s.got == b""
    # the host goes away; then the backend becomes writable again (as a closed socket does)
    reg.ioloop.run_sync(lambda: s.be_event(ChardevEvent.CLOSED))
    s.blocked = False
    reg.ioloop.run_sync(s.fire_watches)
    reg.ioloop.run_sync(lambda: None)
    assert s.while_closed == b"" and q.pending_used() == 0
    reg.ioloop.run_sync(lambda: s.be_event(ChardevEvent.OPENED))
    rig.wait(lambda: q.pending_used() == 2)
    assert bytes(s.got) == data and s.while_closed == b""


def test_port_without_backend_discards_output(reg):
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.con.add_port(None, name="void", console=False)
    rig.handshake([1])
    rig.g.send(1, b"nobody listens")
    assert rig.g.queues[rx_queue(1) + 1].get_used()[0].len == 0


# ---------------------------------------------------------------------------------------
# host -> guest


def collect(rig, nr, total, bufsize, batch=3):
    """Receive `total` bytes on port nr, posting `batch` small buffers whenever none are left."""
    g = rig.g
    got = bytearray()
    sizes = []
    outstanding = 0

    def step():
        nonlocal outstanding
        for u in g.recv(nr):
            assert 0 < u.len <= bufsize
            got.extend(u.data)
            sizes.append(u.len)
            outstanding -= 1
        if outstanding == 0 and len(got) < total:
            g.post_rx(nr, batch, bufsize)
            outstanding += batch
        return len(got) >= total

    rig.wait(step, 10)
    return bytes(got), sizes


def test_host_input_split_across_small_buffers_none_lost(reg, tmp_path):
    base = fifo_pair(tmp_path, "in")
    rig = Rig(reg, ports=[("c0", f"pipe,path={base}", None, True)])
    wfd = os.open(base + ".in", os.O_WRONLY | os.O_NONBLOCK)
    try:
        data = os.urandom(6000)
        os.write(wfd, data[:2000])  # the guest has posted no buffers yet
        rig.handshake([0])
        os.write(wfd, data[2000:])
        port = rig.con.port(0)
        assert not port.rx_elems and not port.pending_in
        got, sizes = collect(rig, 0, len(data), 16)
        assert got == data
        assert max(sizes) == 16 and len(sizes) >= len(data) // 16
    finally:
        os.close(wfd)


class Feeder(RingbufChardev):
    """Hands the frontend queued input strictly within can_read (like every fd backend)."""

    def open(self) -> bool:
        self.queued = bytearray()
        self.offered = []
        return super().open()

    def feed(self, data: bytes) -> None:
        self.queued += data
        self.chr_update_read_handler()

    def chr_update_read_handler(self) -> None:
        while self.queued:
            n = min(self.be_can_write(), len(self.queued))
            if n <= 0:
                return
            chunk = bytes(self.queued[:n])
            del self.queued[:n]
            self.offered.append(n)
            self.be_write(chunk)

    def chr_accept_input(self) -> None:
        self.chr_update_read_handler()


def test_can_read_is_zero_without_buffers_and_input_resumes_on_post(reg):
    reg.register_backend("ringbuf", Feeder)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    f = rig.chr["c0"]
    reg.ioloop.run_sync(f.feed, b"early bird")  # guest port not open yet
    assert f.queued == b"early bird"
    rig.handshake([0])
    reg.ioloop.run_sync(f.chr_update_read_handler)
    assert f.queued == b"early bird"  # open, but no receive buffers posted
    rig.g.post_rx(0, 2, 4)  # the post triggers accept_input
    rig.wait(lambda: rig.g.queues[0].pending_used() == 2)
    assert [u.data for u in rig.g.recv(0)] == [b"earl", b"y bi"]
    assert f.offered == [8]
    rig.g.post_rx(0, 1, 64)
    rig.wait(lambda: rig.g.queues[0].pending_used() == 1)
    assert rig.g.recv(0)[0].data == b"rd"
    assert rig.irq.level


def test_event_idx_suppresses_interrupts(reg):
    rig = Rig(reg, extra=1 << F_EVENT_IDX, ports=[("c0", BIG_RING, None, True)])
    rig.handshake([0])
    g, irq = rig.g, rig.irq
    q = g.queues[1]
    g.ack_irq()
    q.set_used_event(100)  # "don't interrupt me until used idx passes 100"
    g.send(0, b"a")
    first = irq.level  # the first notification is never suppressed
    g.ack_irq()
    g.send(0, b"b")
    assert first and not irq.level
    assert q.avail_event() == 2  # the device asks for a kick on the next buffer
    q.set_used_event(q.used_idx())  # now: interrupt on the next one
    g.send(0, b"c")
    assert irq.level and rig.chr["c0"].peek() == b"abc"


# ---------------------------------------------------------------------------------------
# emergency write


def test_emergency_write(reg):
    rig = Rig(reg, ports=[("p1", "ringbuf", "x", False), ("c0", "ringbuf", None, True)])
    m = rig.mmio
    m.write(CONFIG + 8, 4, 0x4142)  # low byte only
    m.write(CONFIG + 8, 1, ord("!"))
    m.write(CONFIG + 8, 4, 0)  # 0 is still a byte (the guest wrote it)
    assert rig.chr["c0"].peek() == b"B!\0"
    assert rig.chr["p1"].peek() == b""
    assert m.read(CONFIG + 8, 4) == 0  # write-only
    m.write(CONFIG + 0, 4, 0x1234)  # cols/rows are read-only
    assert m.read(CONFIG, 4) == 0


def test_emergency_write_before_init_with_backpressure(reg):
    reg.register_backend("ringbuf", ShortWriter)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.mmio.write(STATUS, 4, 0)
    for ch in b"panic: emergency":
        rig.mmio.write(CONFIG + 8, 4, ch)
    w = rig.chr["c0"]
    rig.wait(lambda: bytes(w.got) == b"panic: emergency")


def _console_short_of_driver_ok(reg):
    """One console port on "c0", its queues set up by a driver that has not said DRIVER_OK."""
    reg.new("c0", BIG_RING)
    con = VirtioConsole(max_ports=1)
    con.add_port(reg.find("c0"))
    mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
    mmio = VirtioMmio(device=con, memory=mem, irq=IrqLine())
    g = ConsoleGuest(mmio, mem)
    g.init(queues={0: 8, 1: 8}, driver_ok=False)
    return mmio, g


def test_emergency_write_before_driver_ok_consumes_no_buffers(reg):
    """Spec 2.1.2: no buffers are used before DRIVER_OK, even when an emergency write
    kicks the console's output path; they go out once the driver is ready."""
    mmio, g = _console_short_of_driver_ok(reg)
    g.send(0, b"queued")
    mmio.write(CONFIG + 8, 4, ord("!"))
    assert reg.find("c0").peek() == b"!" and g.queues[1].used_idx() == 0
    g.w(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK)
    assert reg.find("c0").peek() == b"!queued" and g.queues[1].used_idx() == 1


# ---------------------------------------------------------------------------------------
# hostile guests


def test_wrong_direction_data_buffers_are_returned_and_nothing_is_lost(reg, caplog):
    """A receive buffer the device may only read, a transmit chain it may only write:
    both come back with len 0, no NEEDS_RESET, and host input waits for a good buffer."""
    reg.register_backend("ringbuf", Feeder)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    g, f = rig.g, rig.chr["c0"]
    rxq, txq = g.queues[0], g.queues[1]
    with caplog.at_level(logging.WARNING):
        rxq.add(outs=[b"\xaa" * 8])  # device-readable where a writable buffer is required
        rxq.kick()
        reg.ioloop.run_sync(f.feed, b"input")
        txq.add(ins=[8])  # device-writable only: nothing to transmit
        txq.kick()
    assert [(u.len, u.data) for u in rxq.get_used()] == [(0, b"")]
    assert [u.len for u in txq.get_used()] == [0] and f.peek() == b""
    assert "no writable space" in caplog.text
    assert not g.r(STATUS) & NEEDS_RESET
    g.post_rx(0, 1, 16)
    rig.wait(lambda: rxq.pending_used() == 1)
    assert rxq.get_used()[0].data == b"input"


def test_control_receive_buffer_without_writable_space_keeps_the_message(reg, caplog):
    reg.new("c0", "ringbuf")
    con = VirtioConsole(max_ports=4)
    con.add_port(reg.find("c0"))
    mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
    g = ConsoleGuest(VirtioMmio(device=con, memory=mem, irq=IrqLine()), mem)
    g.start(4, ctrl_bufs=0)  # the control receive queue's first buffer is device-readable
    q = g.queues[2]
    q.add(outs=[b"\0" * 16])  # wrong direction
    q.kick()
    with caplog.at_level(logging.WARNING):
        g.send_ctrl(BAD_ID, DEVICE_READY, 1)
    assert [u.len for u in q.get_used()] == [0]
    assert "no writable space" in caplog.text
    assert not g.r(STATUS) & NEEDS_RESET
    q.add(ins=[64])
    q.kick()
    assert g.read_ctrl() == [(0, PORT_ADD, 1, b"")]  # the message waited for a good buffer



def test_descriptor_loop_sets_needs_reset_and_host_data_survives(reg):
    reg.register_backend("ringbuf", Feeder)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    g = rig.g
    q = g.queues[1]
    q.write_desc(q.desc, 0, RAM_BASE + 0x100, 4, 1, 1)
    q.write_desc(q.desc, 1, RAM_BASE + 0x100, 4, 1, 0)
    q.publish(0)
    f = rig.chr["c0"]
    reg.ioloop.run_sync(f.feed, b"keep me")
    q.kick()
    assert g.r(STATUS) & NEEDS_RESET and g.r(INT_STATUS) & 2
    # a broken device takes no more input; the backend still holds it
    reg.ioloop.run_sync(f.chr_update_read_handler)
    assert f.queued == b"keep me"
    # the guest resets and starts over: the held input arrives
    g.w(STATUS, 0)
    g.queues.clear()
    g.alloc.next = RAM_BASE + 0x100000
    g.start(4)
    rig.handshake([0])
    g.post_rx(0, 1, 64)
    rig.wait(lambda: g.queues[0].pending_used() == 1)
    assert g.recv(0)[0].data == b"keep me"


def test_receive_buffer_outside_ram_needs_reset(reg):
    reg.register_backend("ringbuf", Feeder)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    q = rig.g.queues[0]
    q.write_desc(q.desc, 5, RAM_BASE + RAM_SIZE - 2, 64, 2, 0)  # device-writable, past RAM
    q.publish(5)
    q.kick()
    f = rig.chr["c0"]
    reg.ioloop.run_sync(f.feed, b"data")
    assert rig.g.r(STATUS) & NEEDS_RESET
    assert bytes(f.queued) + bytes(rig.con.port(0).pending_in) == b"data"


def test_sloppy_driver_notifies_before_driver_ok(reg):
    """Buffers posted before DRIVER_OK are used once the driver says DRIVER_OK."""
    mmio, g = _console_short_of_driver_ok(reg)
    g.send(0, b"before ok")
    assert reg.find("c0").peek() == b""
    g.w(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK)
    assert reg.find("c0").peek() == b"before ok"


# ---------------------------------------------------------------------------------------
# hotswap


class Stuck(ShortWriter):
    """Takes the first 1000 bytes, then never becomes writable again."""

    def chr_write(self, data):
        if len(self.got) >= 1000:
            self.stall = True
            raise BlockingIOError
        n = min(len(data), 1000 - len(self.got))
        self.got += data[:n]
        return n


@pytest.mark.parametrize("console", [True, False])
def test_hotswap_mid_transfer_loses_and_doubles_nothing(reg, tmp_path, console):
    reg.register_backend("ringbuf", Stuck)
    reg.new("p", "ringbuf")
    reg.new("c0", "ringbuf")
    ports = [("c0", None, None, True), ("p", None, "swap", False)] if not console else \
        [("p", None, None, True)]
    rig = Rig(reg, ports=ports)
    nr = 0 if console else 1
    rig.wait(host_connected(rig, nr))
    rig.handshake([nr])
    old = reg.find("p")
    data = os.urandom(5000)
    rig.g.send(nr, data[:3000], kick=False)
    rig.g.send(nr, data[3000:])
    port = rig.con.port(nr)
    assert port.throttled and len(old.got) == 1000
    out = tmp_path / "new"
    reg.change("p", {"type": "file", "data": {"out": str(out)}})
    rig.wait(lambda: out.exists() and out.stat().st_size >= 4000)
    assert bytes(old.got) + out.read_bytes() == data
    rig.wait(lambda: rig.g.queues[rx_queue(nr) + 1].pending_used() == 2)
    assert not port.throttled
    fe_open = {c["label"]: c["frontend-open"] for c in reg.query()}["p"]
    # virtconsole re-registers with set_open; virtserialport keeps the guest's state unsent
    assert fe_open is console
    assert port.guest_connected and port.host_connected
    # and later output goes straight to the new backend
    rig.g.send(nr, b"after")
    assert out.read_bytes().endswith(b"after")


def test_hotswap_generic_port_reports_host_state(reg):
    reg.new("c0", "ringbuf")
    reg.new("p1", "ringbuf")
    rig = Rig(reg, ports=[("c0", None, None, True), ("p1", None, "h", False)])
    rig.wait(host_connected(rig, 1))
    rig.handshake([1])
    rig.g.read_ctrl()
    reg.change("p1", {"type": "null"})  # null never reports OPENED
    assert rig.g.read_ctrl() == [(1, PORT_OPEN, 0, b"")]
    reg.change("p1", {"type": "ringbuf", "data": {}})
    rig.wait(host_connected(rig, 1))
    assert rig.g.read_ctrl() == [(1, PORT_OPEN, 1, b"")]
    # the guest reopens: now the new backend's frontend is open
    rig.g.send_ctrl(1, PORT_OPEN, 1)
    rig.g.send_ctrl(1, PORT_OPEN, 0)
    rig.g.send_ctrl(1, PORT_OPEN, 1)
    assert {c["label"]: c["frontend-open"] for c in reg.query()}["p1"] is True


def test_guest_open_and_close_reach_the_listener(reg):
    """What a monitor turns into VSERPORT_CHANGE: every change of the guest's open state,
    by PORT_OPEN and by a device reset, and nothing for a repeated PORT_OPEN."""
    reg.new("c0", "ringbuf")
    reg.new("p1", "ringbuf")
    rig = Rig(reg, ports=[("c0", None, None, True), ("p1", None, "h", False)])
    seen = []
    rig.con.on_guest_open = lambda nr, is_open: seen.append((nr, is_open))
    rig.handshake([0])
    assert seen == [(0, True)]
    rig.g.send_ctrl(1, PORT_OPEN, 1)
    rig.g.send_ctrl(1, PORT_OPEN, 1)
    rig.g.send_ctrl(1, PORT_OPEN, 0)
    assert seen == [(0, True), (1, True), (1, False)]
    rig.g.send_ctrl(1, PORT_OPEN, 1)
    del seen[:]
    rig.mmio.write(0x70, 4, 0)      # Status 0: the reset closes both ports
    assert sorted(seen) == [(0, False), (1, False)]

    def broken(nr, is_open):
        raise RuntimeError("listener bug")

    rig.con.on_guest_open = broken  # a failing listener is logged, never reaches the guest
    rig.g.start(4, True, 0)
    rig.handshake([1])
    assert rig.con.port(1).guest_connected


def test_frontend_handle_is_a_charbackend(reg):
    reg.new("c0", "ringbuf")
    con = VirtioConsole(max_ports=2)
    con.add_port(reg.find("c0"))
    assert isinstance(con.port(0).fe, CharBackend)
    with pytest.raises(Exception, match="is in use"):
        con.add_port(reg.find("c0"), console=False)


# ---------------------------------------------------------------------------------------
# property: whatever the guest puts in the queues, the device never raises


CTRL = st.one_of(
    st.binary(max_size=24),
    st.builds(lambda i, e, v, tail: struct.pack("<IHH", i, e, v) + tail,
              st.sampled_from([0, 1, 2, 3, 31, 0xFFFFFFFF]), st.integers(0, 9),
              st.integers(0, 2), st.binary(max_size=8)))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(CTRL, max_size=12),
       writes=st.lists(st.tuples(st.integers(0, 5), st.binary(min_size=1, max_size=40)),
                       max_size=8),
       junk=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 15), st.binary(min_size=16,
                                                                                  max_size=16)),
                     max_size=3))
def test_random_guest_traffic_never_raises(reg, msgs, writes, junk):
    logging.disable(logging.CRITICAL)
    try:
        label = f"h{len(reg.labels())}"
        reg.new(label, BIG_RING)
        con = VirtioConsole(max_ports=3)
        con.add_port(reg.find(label))
        con.add_port(None, name="n", console=False)
        mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
        mmio = VirtioMmio(device=con, memory=mem, irq=IrqLine())
        g = ConsoleGuest(mmio, mem)
        g.start(3)
        for m in msgs:
            g.queues[3].add(outs=[m])
        g.queues[3].kick()
        for q, data in writes:
            vq = g.queues.get(q)
            if vq is not None and vq.free:
                vq.add(outs=[data]) if q % 2 else vq.add(ins=[len(data)])
                vq.kick()
        for q, slot, raw in junk:  # scribble over descriptor tables
            vq = g.queues.get(q)
            if vq is not None:
                mem.write(vq.desc + 16 * (slot % vq.num), raw)
                vq.publish(slot % vq.num)
                vq.kick()
        g.read_ctrl()
        assert rig_consistent(con, mmio)
    finally:
        logging.disable(logging.NOTSET)


def rig_consistent(con, mmio) -> bool:
    return mmio.irq.level == bool(con.isr) and mmio.read(0x70, 4) & 0x0F == 0x0F


def test_queue_reset_forgets_held_receive_buffers(reg):
    reg.register_backend("ringbuf", Feeder)
    rig = Rig(reg, extra=1 << 40, ports=[("c0", "ringbuf", None, True)])  # RING_RESET
    rig.handshake([0])
    g, f = rig.g, rig.chr["c0"]
    g.post_rx(0, 2, 4)
    reg.ioloop.run_sync(f.feed, b"ab")  # fills the first buffer; the device holds the second
    assert [u.data for u in g.recv(0)] == [b"ab"] and len(rig.con.port(0).rx_elems) == 1
    g.w(0x30, 0)  # QueueSel 0
    g.w(0xC0, 1)  # QueueReset
    assert not rig.con.port(0).rx_elems
    g.queues.pop(0)
    g.setup_queue(0, 8)
    g.post_rx(0, 1, 8)
    reg.ioloop.run_sync(f.feed, b"xyz")
    assert [u.data for u in g.recv(0)] == [b"xyz"]


def test_both_directions_at_once_across_threads(reg, tmp_path):
    """Host input lands on the I/O thread while the guest transmits on this (CPU) thread."""
    import threading
    import time

    base = fifo_pair(tmp_path, "both")
    rig = Rig(reg, ports=[("c0", f"pipe,path={base}", None, True)])
    rig.handshake([0])
    fcntl.fcntl(rig.chr["c0"].out_fd, fcntl.F_SETPIPE_SZ, 4096)
    h2g, g2h = os.urandom(40_000), os.urandom(40_000)
    wfd = os.open(base + ".in", os.O_WRONLY)
    rfd = os.open(base + ".out", os.O_RDONLY | os.O_NONBLOCK)
    out = bytearray()
    stop = threading.Event()

    def host() -> None:
        os.write(wfd, h2g)  # blocks while the guest is slow to post buffers

    def drain() -> None:
        while not stop.is_set():
            try:
                out.extend(os.read(rfd, 4096))
            except BlockingIOError:
                time.sleep(0.001)

    threads = [threading.Thread(target=host), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    try:
        got = bytearray()
        g = rig.g
        tx = g.queues[1]
        sent = 0
        outstanding = 0
        deadline = time.monotonic() + 20
        while (len(got) < len(h2g) or sent < len(g2h)) and time.monotonic() < deadline:
            if sent < len(g2h) and len(tx.free) > 0:
                g.send(0, g2h[sent:sent + 1000])
                sent += 1000
            tx.get_used()
            for u in g.recv(0):
                got += u.data
                outstanding -= 1
            if outstanding < 4:
                g.post_rx(0, 4, 512)
                outstanding += 4
        assert bytes(got) == h2g
        rig.wait(lambda: len(out) == len(g2h), 10)
        assert bytes(out) == g2h
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        os.close(wfd)
        os.close(rfd)


def test_reset_while_throttled_then_output_flows_again(reg):
    reg.register_backend("ringbuf", ShortWriter)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    first = b"x" * 400
    rig.g.send(0, first)
    port, w = rig.con.port(0), rig.chr["c0"]
    assert port.throttled
    rig.g.w(STATUS, 0)  # the guest resets with output in flight: it asked for it to go
    assert not port.throttled and port.tx_elem is None
    rig.g.queues.clear()
    rig.g.start(4)
    rig.handshake([0])
    rig.g.send(0, b"after")
    rig.wait(lambda: bytes(w.got).endswith(b"after"))
    assert first.startswith(bytes(w.got)[:-5])


def test_state_snapshot_round_trips_through_json(reg):
    import json

    rig = Rig(reg, ports=[("c0", BIG_RING, None, True), ("p1", BIG_RING, "n", False)])
    rig.wait(host_connected(rig, 1))
    rig.handshake([0, 1])
    rig.con.port(1).pending_in += b"unsent"  # host bytes the guest had no buffer for yet
    snap = json.loads(json.dumps(rig.mmio.state()))
    reg2 = type(reg)()
    try:
        other = Rig(reg2, ports=[("c0", BIG_RING, None, True), ("p1", BIG_RING, "n", False)])
        other.wait(host_connected(other, 1))
        other.mmio.load_state(snap)
        assert json.loads(json.dumps(other.mmio.state())) == snap
        p1 = other.con.port(1)
        assert p1.guest_connected and p1.guest_ready and p1.pending_in == b"unsent"
        # the restored device keeps working: the guest's rings are in (copied) guest memory
        other.mem.data[:] = rig.mem.data
        other.g.queues = rig.g.queues
        for q in other.g.queues.values():
            q.drv = other.g
        other.g.post_rx(1, 1, 64)
        assert other.g.recv(1)[0].data == b"unsent"
    finally:
        reg2.close()


# ---------------------------------------------------------------------------------------
# 1 MiB each way, with checksums, through real file and socket backends


MIB = 1 << 20


def pump_tx(rig, nr, data, chunk, timeout=60.0):
    """The guest sends data on port nr in chains of `chunk` bytes, reusing queue slots."""
    q = rig.g.queues[rx_queue(nr) + 1]
    sent = 0

    def step():
        nonlocal sent
        for u in q.get_used():
            assert u.len == 0  # transmit buffers: the device writes nothing into them
        added = False
        while sent < len(data) and q.free:
            q.add(outs=[data[sent:sent + chunk]])
            sent += chunk
            added = True
        if added:
            q.kick()
        return sent >= len(data) and not q.chains

    rig.wait(step, timeout)


def sha(data) -> str:
    import hashlib

    return hashlib.sha256(bytes(data)).hexdigest()


def test_one_mib_each_way_through_files(reg, tmp_path):
    """Host->guest from a file's input, guest->host into a file: 1 MiB each, checksummed."""
    h2g, g2h = os.urandom(MIB), os.urandom(MIB)
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(h2g)
    rig = Rig(reg, ports=[("c0", f"file,path={dst},input-path={src}", None, True)])
    rig.handshake([0])
    got, sizes = collect(rig, 0, len(h2g), 4096, batch=16)
    assert len(got) == len(h2g) and sha(got) == sha(h2g)
    assert sum(sizes) == MIB and max(sizes) == 4096
    assert rig.con.port(0).stats["rx_bytes"] == MIB
    pump_tx(rig, 0, g2h, 12_345)  # odd chain sizes: no alignment help
    rig.wait(lambda: dst.stat().st_size >= MIB, 10)
    assert sha(dst.read_bytes()) == sha(g2h)
    assert rig.con.port(0).stats["tx_bytes"] == MIB


def unix_client(path):
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def test_one_mib_each_way_through_a_socket_with_a_slow_reader(reg, tmp_path):
    """Guest output to a slow socket client throttles the port and loses nothing; host
    input the guest has no buffers for waits in the socket; connect/disconnect of the
    client reach the guest as PORT_OPEN 1/0."""
    import threading
    import time

    path = tmp_path / "vport.sock"
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True),
                          ("s1", f"socket,path={path},server=on,wait=off", "org.e2k.1", False)])
    rig.handshake([1])
    assert (1, PORT_OPEN, 1, b"") not in rig.g.ctrl_log  # nobody connected yet
    cli = unix_client(path)
    try:
        rig.wait(host_connected(rig, 1))
        rig.wait(lambda: (1, PORT_OPEN, 1, b"") in rig.g.read_ctrl())
        # guest -> host: the client reads small pieces with pauses
        g2h = os.urandom(MIB)
        received = bytearray()

        def slow_reader():
            cli.settimeout(20)
            while len(received) < len(g2h):
                piece = cli.recv(2048)
                if not piece:
                    break
                received.extend(piece)
                if len(received) % (64 << 10) < 2048:
                    time.sleep(0.02)

        reader = threading.Thread(target=slow_reader)
        reader.start()
        pump_tx(rig, 1, g2h, 64 << 10)
        reader.join(30)
        assert len(received) == len(g2h) and sha(received) == sha(g2h)
        port = rig.con.port(1)
        assert port.stats["throttles"] > 0  # the reader really was slower than the guest
        assert not port.throttled and port.stats["tx_bytes"] == MIB
        # host -> guest: the client writes 1 MiB at once; the guest posts buffers slowly
        h2g = os.urandom(MIB)
        writer = threading.Thread(target=cli.sendall, args=(h2g,))
        writer.start()
        got, sizes = collect(rig, 1, len(h2g), 3000, batch=8)
        writer.join(30)
        assert len(got) == len(h2g) and sha(got) == sha(h2g)
        assert port.stats["rx_bytes"] == MIB
    finally:
        cli.close()
    # the client goes away: the guest hears PORT_OPEN 0
    rig.wait(lambda: not rig.con.port(1).host_connected)
    rig.wait(lambda: (1, PORT_OPEN, 0, b"") in rig.g.read_ctrl())
    # and a new client is announced again
    cli = unix_client(path)
    try:
        rig.wait(lambda: (1, PORT_OPEN, 1, b"") in rig.g.read_ctrl())
    finally:
        cli.close()


def test_indices_wrap_at_u16_in_both_directions(reg, tmp_path):
    """Free-running u16 indices: a device restored (state/load_state) just below the wrap
    carries on across it in both directions, avail_event included, losing nothing."""
    import struct as st_

    out, src = tmp_path / "out.bin", tmp_path / "in.bin"
    h2g, g2h = os.urandom(3000), os.urandom(3000)
    src.write_bytes(h2g)
    rig = Rig(reg, extra=1 << F_EVENT_IDX,
              ports=[("c0", f"file,path={out},input-path={src}", None, True)])
    start = 0xFFFF - 200
    snap = rig.mmio.state()
    for qi in (0, 1):  # nothing posted on the data queues yet: move both sides to `start`
        q = rig.g.queues[qi]
        q.avail_idx = q.last_used = start
        rig.mem.write(q.avail + 2, st_.pack("<H", start))
        rig.mem.write(q.used + 2, st_.pack("<H", start))
        snap["device"]["queues"][qi].update(last_avail_idx=start, used_idx=start)
    rig.mmio.load_state(snap)
    rig.handshake([0])
    pump_tx(rig, 0, g2h, 7)  # 429 chains: crosses 0xFFFF -> 0
    tx = rig.g.queues[1]
    assert tx.used_idx() == (start + 429) & 0xFFFF == tx.avail_idx < start
    assert tx.avail_event() == tx.avail_idx  # the device asks for the next kick past the wrap
    rig.wait(lambda: out.stat().st_size >= len(g2h))
    assert out.read_bytes() == g2h
    got, sizes = collect(rig, 0, len(h2g), 5, batch=32)  # 600 buffers
    assert got == h2g and len(sizes) == 600
    assert rig.g.queues[0].used_idx() == (start + 600) & 0xFFFF


class StuckFeeder(Feeder, Stuck):
    """Input as Feeder; output as Stuck (1000 bytes, then never writable again)."""


def test_snapshot_keeps_held_receive_buffers_and_a_half_written_chain(reg, tmp_path):
    """Chains the device has popped but not returned survive state()/load_state(): the
    receive buffer it held is still used, the transmit chain resumes where it stopped."""
    import json

    reg.register_backend("ringbuf", StuckFeeder)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    g, f = rig.g, rig.chr["c0"]
    g.post_rx(0, 2, 4)
    reg.ioloop.run_sync(f.feed, b"ab")  # fills one buffer; the device holds the other
    assert [u.data for u in g.recv(0)] == [b"ab"] and len(rig.con.port(0).rx_elems) == 1
    data = os.urandom(3000)
    q = g.queues[1]
    q.add(outs=[data[:1500], data[1500:]])
    q.kick()
    assert len(f.got) == 1000 and rig.con.port(0).throttled
    snap = json.loads(json.dumps(rig.mmio.state()))
    reg2 = type(reg)()
    try:
        out, src = tmp_path / "restored.out", tmp_path / "restored.in"
        src.write_bytes(b"cdef")
        other = Rig(reg2, ports=[("c0", f"file,path={out},input-path={src}", None, True)])
        other.mem.data[:] = rig.mem.data  # guest RAM first, then the device
        other.g.queues = g.queues
        for gq in g.queues.values():
            gq.drv = other.g
        other.mmio.load_state(snap)
        other.wait(lambda: out.stat().st_size >= 2000)
        assert bytes(f.got) + out.read_bytes() == data  # nothing lost, nothing doubled
        assert [u.len for u in q.get_used()] == [0]
        other.wait(lambda: g.queues[0].pending_used() == 1)
        assert [u.data for u in other.g.recv(0)] == [b"cdef"]  # the held buffer, used once
    finally:
        reg2.close()


# ---------------------------------------------------------------------------------------
# zero-copy output: the backend writes guest RAM itself


class ViewRecorder(RingbufChardev):
    """Notes what chr_write was handed, and copies it (as every backend must)."""

    def open(self) -> bool:
        self.handed = []
        return super().open()

    def chr_write(self, data):
        self.handed.append(data.obj)
        return super().chr_write(data)


def test_guest_output_reaches_the_backend_as_a_view_of_guest_ram(reg):
    reg.register_backend("ringbuf", ViewRecorder)
    rig = Rig(reg, ports=[("c0", "ringbuf,size=1048576", None, True)])
    rig.handshake([0])
    data = os.urandom(65536)
    rig.g.send(0, data)
    w = rig.chr["c0"]
    assert w.peek() == data
    assert w.handed == [rig.mem.data]  # not a copy of it
    assert rig.g.queues[1].get_used()[0].len == 0


def test_big_guest_writes_skip_the_coalescing_copy_and_keep_the_logfile(tmp_path):
    from e2kchar import ChardevRegistry

    out, logf = tmp_path / "out", tmp_path / "log"
    with ChardevRegistry(coalesce_output=True) as reg:
        rig = Rig(reg, ports=[("c0", f"file,path={out},logfile={logf}", None, True)])
        rig.handshake([0])
        small, big = b"coalesced ", os.urandom(65536)
        rig.g.send(0, small)
        rig.g.send(0, big)      # written at once, behind the small write
        assert rig.g.queues[1].pending_used() == 2
        rig.wait(lambda: out.stat().st_size == len(small) + len(big))
        assert reg.find("c0").flush()
    assert out.read_bytes() == small + big
    assert logf.read_bytes() == small + big


def test_a_stalled_pipe_keeps_guest_output_exact_on_a_coalescing_registry(tmp_path):
    from e2kchar import ChardevRegistry

    base = fifo_pair(tmp_path, "p")
    with ChardevRegistry(coalesce_output=True) as reg:
        rig = Rig(reg, ports=[("c0", "ringbuf", None, True),
                              ("p1", f"pipe,path={base}", "slow", False)])
        rig.wait(host_connected(rig, 1))
        rig.handshake([0, 1])
        fcntl.fcntl(rig.chr["p1"].out_fd, fcntl.F_SETPIPE_SZ, 4096)
        data = os.urandom(300_000)
        q = rig.g.queues[rx_queue(1) + 1]
        for i in range(0, len(data), 60_000):
            q.add(outs=[data[i:i + 30_000], data[i + 30_000:i + 60_000]])
        q.kick()
        assert rig.con.port(1).throttled and q.pending_used() == 0
        assert slow_read(reg, base + ".out", len(data), 3000) == data
        rig.wait(lambda: q.pending_used() == 5)


class VecWriter(RingbufChardev):
    """Takes at most `take` bytes per (vectored) write, cutting across buffers and chains,
    and refuses every other attempt: the backend of a batch that goes out in pieces."""

    take = 7777

    def open(self) -> bool:
        self.got = bytearray()
        self.batches: list[int] = []
        self.attempts = 0
        return super().open()

    def chr_writev(self, bufs):
        self.attempts += 1
        if self.attempts % 2 == 0:
            raise BlockingIOError
        self.batches.append(len(bufs))
        taken = b"".join(bufs)[:self.take]
        self.got += taken
        return len(taken)

    def chr_write(self, data):
        return self.chr_writev([data])


def test_a_notify_hands_all_its_chains_to_the_backend_in_one_vectored_write(reg):
    reg.register_backend("ringbuf", VecWriter)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    w = rig.chr["c0"]
    w.take = 1 << 30
    q = rig.g.queues[1]
    data = os.urandom(60 * 1000)
    for i in range(0, len(data), 2000):  # one- and two-buffer chains, and empty ones
        q.add(outs=[data[i:i + 1000]])
        q.add(outs=[data[i + 1000:i + 1500], data[i + 1500:i + 2000]])
        q.add(outs=[b""])
    q.kick()
    assert w.batches == [len(data) // 2000 * 3]  # one write of every non-empty buffer
    assert bytes(w.got) == data
    assert [u.len for u in q.get_used()] == [0] * (len(data) // 2000 * 3)


def test_a_batch_the_backend_takes_in_pieces_returns_each_chain_once_when_all_is_out(reg):
    reg.register_backend("ringbuf", VecWriter)
    rig = Rig(reg, ports=[("c0", "ringbuf", None, True)])
    rig.handshake([0])
    w = rig.chr["c0"]
    q = rig.g.queues[1]
    data = os.urandom(100_000)
    sent = []
    for i in range(0, len(data), 5000):
        sent.append(q.add(outs=[data[i:i + 3000], data[i + 3000:i + 5000]]))
    q.kick()
    port = rig.con.port(0)
    assert port.throttled and q.pending_used() == 1  # 7777 bytes: one chain of 5000 went
    heads: list[int] = []

    def progress():
        for u in q.get_used():
            heads.append(u.head)
            assert len(w.got) >= 5000 * len(heads)  # returned only once all of it was taken
        return len(heads) == len(sent)

    rig.wait(progress)
    assert heads == sent and bytes(w.got) == data and not port.throttled
    assert rig.con.port(0).stats["tx_bytes"] == len(data)
