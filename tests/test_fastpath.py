"""The UARTs' output hot path (OutputSink, docs/architecture.md "The output hot path"),
driven through the devices' public accessors as the machine's MMIO callbacks drive them: the
logfile, taps, history, a mux and a hub see every byte once; a stalled backend holds the
transmitter (backpressure) and loses nothing; swaps under a printing thread are exact."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from e2kchar.devices import Am85C30, LmsConsole, Ns16550a
from recording import drain

from e2kchar import ChardevRegistry

DEVICES = ["com1", "am85c30", "lms"]


class Guest:
    """A polled putc through a device's accessors (the machine's per-offset dispatch)."""

    def __init__(self, kind: str, chardev) -> None:
        self.kind = kind
        if kind == "com1":
            self.dev = Ns16550a(chardev)
            self.owner = self.dev
            self._status, _ = self.dev.accessors(5)
            _, self._data = self.dev.accessors(0)
        elif kind == "am85c30":
            self.dev = Am85C30(chardev_a=chardev)
            self.owner = self.dev.a
            self._status, _ = self.dev.accessors(0)
            _, self._data = self.dev.accessors(1)
        else:
            self.dev = LmsConsole(chardev)
            self.owner = self.dev
            self._status, self._data = self.dev.accessors(0)

    @property
    def sink(self):
        return self.owner.sink

    def ready(self) -> bool:
        if self.kind == "com1":
            return bool(self._status(5, 1) & 0x20)  # LSR THRE
        if self.kind == "am85c30":
            return bool(self._status(0, 1) & 0x04)  # RR0 Tx buffer empty
        return self._status(0, 4) == 0  # LMS: not busy

    def put(self, b: int) -> None:
        if self.kind == "com1":
            self._data(0, 1, b)
        elif self.kind == "am85c30":
            self._data(1, 1, b)
        else:
            self._data(0, 1, b)
            self._data(0, 1, 0)  # the strobe

    def print(self, data: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for b in data:
            while not self.ready():
                assert time.monotonic() < deadline, "transmitter stuck"
                time.sleep(0.0005)
            self.put(b)

    def close(self) -> None:
        self.dev.close()


def payload(n: int) -> bytes:
    return bytes(1 + (i * 7919) % 255 for i in range(n))  # no NUL: the LMS strobe value


@pytest.fixture
def creg():
    with ChardevRegistry(coalesce_output=True) as reg:  # the CLI's registry
        yield reg


@pytest.mark.parametrize("kind", DEVICES)
def test_logfile_and_taps_see_every_fast_path_byte(creg, tmp_path, kind):
    out, log = tmp_path / "out", tmp_path / "log"
    chr_ = creg.new("c", f"file,path={out},logfile={log}")
    tapped = bytearray()
    chr_.add_tap(tapped.extend)
    g = Guest(kind, chr_)
    try:
        assert g.sink.fast and g.sink.drainer is chr_  # bound at attach
        data = payload(30000)
        g.print(data)
        assert chr_.flush()
        assert out.read_bytes() == data
        assert log.read_bytes() == data
        assert bytes(tapped) == data
    finally:
        g.close()


@pytest.mark.parametrize("kind", DEVICES)
def test_a_lone_byte_after_an_idle_spell_goes_out(creg, tmp_path, kind):
    """The flusher stops when output stops; a byte put after that must wake it (the
    sink's idle flag), however the put and the flusher's last look interleave."""
    out = tmp_path / "out"
    chr_ = creg.new("c", f"file,path={out}")
    g = Guest(kind, chr_)
    try:
        sent = bytearray()
        for i in range(60):
            b = payload(61)[i]
            if i % 3 == 0:
                # let the flusher go idle first, sometimes just about now
                creg.run_until(lambda: g.sink.idle, 1)
                time.sleep((i % 5) * 0.0004)
            g.print(bytes([b]))
            sent.append(b)
            assert creg.run_until(lambda: out.stat().st_size == len(sent), 2), \
                f"byte {i} stranded in the sink"
        assert out.read_bytes() == bytes(sent)
    finally:
        g.close()


@pytest.mark.parametrize("kind", DEVICES)
def test_a_stalled_backend_holds_the_transmitter_and_loses_nothing(creg, fifos, kind):
    base, _wr, rd = fifos
    chr_ = creg.new("p", f"pipe,path={base}")
    g = Guest(kind, chr_)
    try:
        data = payload(1 << 20)
        sent = 0
        deadline = time.monotonic() + 10
        # print until the transmitter stays busy: pipe and coalescing buffer full
        while sent < len(data):
            if not g.ready():
                if creg.run_until(g.ready, 0.2):
                    continue
                break
            g.put(data[sent])
            sent += 1
            assert time.monotonic() < deadline
        assert 65536 <= sent < len(data)  # backpressure: the guest was held
        assert not g.sink.fast  # the stalled backend turned the hot path off
        got = bytearray()
        rest = threading.Thread(target=g.print, args=(data[sent:sent + 50000], 20))
        rest.start()  # goes on as the reader drains
        end = sent + 50000
        deadline = time.monotonic() + 20
        while len(got) < end and time.monotonic() < deadline:
            got += drain(rd)
            time.sleep(0.001)
        rest.join(20)
        assert bytes(got) == data[:end]
        assert creg.run_until(lambda: g.sink.fast, 2)  # and back on once it drains
    finally:
        g.close()


@pytest.mark.parametrize("kind", DEVICES)
def test_history_of_a_server_sees_the_bytes(creg, tmp_path, kind):
    """A listening socket keeps what it got while nobody listened (history): not a
    coalescing backend, so the device writes through CharBackend.write."""
    path = tmp_path / "s.sock"
    chr_ = creg.new("s", f"socket,path={path},server=on,wait=off")
    g = Guest(kind, chr_)
    try:
        assert not g.sink.fast
        data = payload(3000)
        g.print(data)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(path))
            c.settimeout(5)
            got = bytearray()
            while len(got) < len(data):
                chunk = c.recv(65536)
                assert chunk
                got += chunk
        assert bytes(got) == data
    finally:
        g.close()


@pytest.mark.parametrize("kind", DEVICES)
def test_a_mux_and_a_hub_see_every_byte(creg, tmp_path, kind):
    mux = creg.new("m", f"file,path={tmp_path / 'mux'},mux=on")
    creg.new("a", f"file,path={tmp_path / 'a'}")
    creg.new("b", f"file,path={tmp_path / 'b'}")
    hub = creg.new("h", "hub,chardevs.0=a,chardevs.1=b")
    gm, gh = Guest(kind, mux), Guest(kind, hub)
    try:
        data = payload(20000)
        gm.print(data)
        gh.print(data[::-1])
        assert not gm.sink.fast and gm.sink.drainer is None  # a mux never drains a sink
        assert creg.run_until(lambda: (tmp_path / "mux").read_bytes() == data, 5)
        assert creg.run_until(lambda: (tmp_path / "a").read_bytes() == data[::-1], 5)
        assert (tmp_path / "b").read_bytes() == data[::-1]
    finally:
        gm.close()
        gh.close()


@pytest.mark.parametrize("kind", DEVICES)
def test_swaps_under_a_printing_thread_are_exact(creg, tmp_path, kind):
    """chardev-change, many times, while a thread prints through the hot path: the files
    in swap order hold exactly what was printed."""
    rounds = 120
    paths = [tmp_path / f"out{i}" for i in range(rounds + 1)]
    chr_ = creg.new("s", f"file,path={paths[0]}")
    g = Guest(kind, chr_)
    stop = threading.Event()
    printed = bytearray()
    line = 0

    def printer() -> None:
        nonlocal line
        while not stop.is_set():
            text = b"line %07d\n" % line
            g.print(text)
            printed.extend(text)
            line += 1

    t = threading.Thread(target=printer)
    t.start()
    try:
        for i in range(1, rounds + 1):
            if i % 10 == 0:
                time.sleep(0.002)
            creg.change("s", {"type": "file", "data": {"out": str(paths[i])}})
    finally:
        stop.set()
        t.join(20)
    try:
        assert creg.find("s").flush()
        data = b"".join(p.read_bytes() for p in paths)
        assert data == bytes(printed)
        assert data.decode().splitlines() == [f"line {n:07d}" for n in range(line)]
        assert sum(1 for p in paths if p.stat().st_size) > 10
    finally:
        g.close()


def test_the_sink_moves_with_a_swap_and_a_veto(creg, tmp_path):
    """OutputSink.write (the one-call form) across a swap and a vetoed swap."""
    from e2kchar import CharBackend, ChardevError

    veto = [False]
    fe = CharBackend(creg.new("s", f"file,path={tmp_path / 'a'}"))
    fe.set_handlers(lambda: 0, lambda d: None, be_change=lambda: -1 if veto[0] else 0)
    assert fe.sink.write(b"one ")
    creg.change("s", {"type": "file", "data": {"out": str(tmp_path / "b")}})
    assert fe.sink.drainer is creg.find("s") and fe.sink.write(b"two ")
    veto[0] = True
    with pytest.raises(ChardevError, match="change failed"):
        creg.change("s", {"type": "file", "data": {"out": str(tmp_path / "c")}})
    assert fe.sink.drainer is creg.find("s")
    assert creg.run_until(lambda: fe.sink.fast, 2) and fe.sink.write(b"three")
    assert creg.find("s").flush()
    assert (tmp_path / "a").read_bytes() == b"one "
    assert (tmp_path / "b").read_bytes() == b"two three"
    assert os.path.getsize(tmp_path / "c") == 0
    fe.deinit()
    assert fe.sink.drainer is None and not fe.sink.fast
