"""hub chardev (QEMU 10.0): output to every member, input from any, members hot-swappable."""

from __future__ import annotations

import threading
import time

import pytest

from e2kchar import ChardevError, ChardevRegistry
from e2kchar.chardev.spec import parse_spec, to_chardev_string
from e2kchar.chardev.types import ChardevEvent


@pytest.fixture
def reg():
    with ChardevRegistry() as r:
        yield r


def test_syntax_and_qemu_errors(reg):
    spec = parse_spec("hub,id=h,chardevs.0=a,chardevs.1=b", None)
    assert spec.backend.chardevs == ["a", "b"]
    assert to_chardev_string(spec) == "hub,id=h,chardevs.0=a,chardevs.1=b"
    with pytest.raises(ChardevError, match="hub: 'chardevs' list is not defined"):
        reg.new("h", "hub")
    with pytest.raises(ChardevError, match="hub: chardev can't be found by id 'nope'"):
        reg.new("h", "hub,chardevs.0=nope")
    reg.new("m", "ringbuf,mux=on")
    with pytest.raises(ChardevError, match="can't be stacked, check chardev 'm'"):
        reg.new("h", "hub,chardevs.0=m")
    reg.new("a", "ringbuf")
    reg.attach("a")
    with pytest.raises(ChardevError, match="Device 'a' is in use"):
        reg.new("h", "hub,chardevs.0=a")
    reg.new("b", "ringbuf")
    with pytest.raises(ChardevError, match="Device 'b' is in use"):
        reg.new("h", "hub,chardevs.0=b,chardevs.1=b")
    assert not reg.find("b").busy  # a failed hub lets its members go


def test_output_to_all_input_from_any_no_member_cap(reg):
    names = [f"r{i}" for i in range(6)]
    for n in names:
        reg.new(n, "ringbuf,size=4096")
    opts = ",".join(f"chardevs.{i}={n}" for i, n in enumerate(names))
    reg.new("h", f"hub,{opts}")
    got = bytearray()
    events = []
    fe = reg.attach("h")
    fe.set_handlers(lambda: 4096, got.extend, events.append)
    assert reg.run_until(lambda: ChardevEvent.OPENED in events)
    fe.write_all(b"hello all\n")
    for n in names:
        assert reg.ringbuf_read(n, 100) == "hello all\n"
    reg.ringbuf_write("r3", "from three")  # ringbuf-write does not feed a frontend
    assert reg.query_backends()  # sanity
    # QAPI form
    reg.new("x", "ringbuf")
    reg.new("y", "ringbuf")
    assert reg.add("h2", {"type": "hub", "data": {"chardevs": ["x", "y"]}}) == {}


def test_input_from_any_member(reg, tmp_path):
    import socket
    a = reg.new("a", "socket,host=127.0.0.1,port=0,server=on,wait=off")
    b = reg.new("b", "socket,host=127.0.0.1,port=0,server=on,wait=off")
    reg.new("h", "hub,chardevs.0=a,chardevs.1=b")
    got = bytearray()
    fe = reg.attach("h")
    fe.set_handlers(lambda: 4096, got.extend, lambda e: None)
    ca = socket.create_connection(("127.0.0.1", int(a.addr.port)))
    cb = socket.create_connection(("127.0.0.1", int(b.addr.port)))
    try:
        assert reg.run_until(lambda: a.connected and b.connected)
        ca.sendall(b"A")
        assert reg.run_until(lambda: got == b"A")
        cb.sendall(b"B")
        assert reg.run_until(lambda: got == b"AB")
        fe.write_all(b"both")
        for c in (ca, cb):
            c.settimeout(5)
            buf = b""
            while len(buf) < 4:
                buf += c.recv(10)
            assert buf == b"both"
    finally:
        ca.close()
        cb.close()


def test_member_hotswap_while_printing_loses_and_doubles_nothing(reg, tmp_path):
    reg.new("a", "ringbuf,size=1048576")
    reg.new("b", f"file,path={tmp_path / 'b1.log'}")
    reg.new("h", "hub,chardevs.0=a,chardevs.1=b")
    fe = reg.attach("h")
    fe.set_handlers(lambda: 0, lambda d: None, lambda e: None)
    lines = [f"line {i:06d}\n".encode() for i in range(20000)]
    stop = threading.Event()

    def guest():
        for line in lines:
            for byte in line:
                fe.write(bytes([byte]))
        stop.set()

    t = threading.Thread(target=guest)
    t.start()
    files = [tmp_path / "b1.log"]
    i = 2
    while not stop.is_set() and i < 8:
        time.sleep(0.02)
        path = tmp_path / f"b{i}.log"
        reg.change("b", {"type": "file", "data": {"out": str(path)}})
        files.append(path)
        i += 1
    t.join(60)
    expect = b"".join(lines)
    assert len(files) > 2
    assert b"".join(p.read_bytes() for p in files) == expect
    out = reg.ringbuf_read("a", len(expect) + 10, format="base64")
    import base64
    assert base64.b64decode(out) == expect


def test_a_member_that_stops_reading_stalls_neither_the_guest_nor_the_others(reg, tmp_path,
                                                                             caplog):
    """QEMU 10's hub writes at the pace of its slowest member; here a unix-socket peer that
    never reads gets a bounded backlog and then misses output (counted, logged once), while
    the guest's 4 MiB go out at once and the file member gets every byte."""
    import socket

    path = str(tmp_path / "slow.sock")
    slow = reg.new("slow", f"socket,path={path},server=on,wait=off,history=0")
    reg.new("f", f"file,path={tmp_path / 'all.log'}")
    hub = reg.new("h", "hub,chardevs.0=slow,chardevs.1=f")
    fe = reg.attach("h")
    fe.set_handlers(lambda: 0, lambda d: None, lambda e: None)
    peer = socket.socket(socket.AF_UNIX)
    peer.connect(path)
    assert reg.run_until(lambda: slow.connected, 5)
    chunk = bytes(range(256)) * 64  # 16 KiB
    done = threading.Event()

    def guest():
        for _ in range(256):
            assert fe.write_all(chunk) == len(chunk)
        done.set()

    t = threading.Thread(target=guest, daemon=True)
    t0 = time.monotonic()
    t.start()
    assert done.wait(10), "the guest's output waits for a peer that does not read"
    took = time.monotonic() - t0
    stats = hub.member_stats()
    assert stats["f"] == {"backlog": 0, "dropped": 0}
    assert 0 < stats["slow"]["backlog"] <= hub.MEMBER_BACKLOG
    assert stats["slow"]["dropped"] > 2 * 1024 * 1024
    assert (tmp_path / "all.log").read_bytes() == chunk * 256
    assert sum("output dropped" in r.getMessage() for r in caplog.records) == 1
    # the slow peer reads at last: what it gets is whole chunks, in order, then the backlog
    peer.settimeout(2)
    got = bytearray()
    try:
        while True:
            data = peer.recv(1 << 16)
            if not data:
                break
            got += data
    except TimeoutError:
        pass
    peer.close()
    assert got and len(got) % len(chunk) == 0 and got == chunk * (len(got) // len(chunk))
    assert reg.run_until(lambda: hub.member_stats()["slow"]["backlog"] == 0, 5)
    assert took < 10
