"""The frontend API (CharBackend) through real fifos, files and ringbufs."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
from recording import drain

from e2kchar import CharBackend, ChardevError, ChardevEvent, ChardevIoctl, SerialParams, Tiocm
from e2kchar.chardev.ringbuf import RingbufChardev


def test_opened_replayed_on_set_handlers(reg, recorder):
    rec = recorder(CharBackend(reg.new("r", "ringbuf")))
    assert reg.run_until(lambda: rec.events == [ChardevEvent.OPENED], 2)
    null = recorder(CharBackend(reg.new("n", "null")))
    time.sleep(0.05)
    assert null.events == []  # null never reports OPENED (as QEMU)


def test_in_use_and_deinit(reg):
    chr_ = reg.new("r", "ringbuf")
    fe = CharBackend(chr_)
    with pytest.raises(ChardevError, match="Device 'r' is in use"):
        CharBackend(chr_)
    assert reg.query()[0]["frontend-open"] is False
    fe.set_handlers(lambda: 1, lambda d: None)
    assert reg.run_until(lambda: reg.query()[0]["frontend-open"], 2)
    fe.deinit()
    assert fe.chardev is None and reg.find("r") is chr_
    fe2 = CharBackend(chr_)  # free again
    fe2.deinit(delete=True)
    assert reg.find("r") is None


def test_flow_control_stops_and_resumes(reg, fifos, recorder):
    base, wr, _rd = fifos
    rec = recorder(CharBackend(reg.new("p", f"pipe,path={base}")), room=10)
    os.write(wr, bytes(range(100)))
    assert reg.run_until(lambda: len(rec.data) == 10, 2)
    time.sleep(0.1)  # a frontend that stops reading receives nothing more
    assert len(rec.data) == 10
    rec.give(25)
    assert reg.run_until(lambda: len(rec.data) == 35, 2)
    time.sleep(0.05)
    assert len(rec.data) == 35
    rec.give(1000)
    assert reg.run_until(lambda: len(rec.data) == 100, 2)
    assert bytes(rec.data) == bytes(range(100))


def test_reads_are_at_most_4096(reg, fifos, recorder):
    base, wr, _rd = fifos
    rec = recorder(CharBackend(reg.new("p", f"pipe,path={base}")))
    payload = os.urandom(20000)
    threading.Thread(target=os.write, args=(wr, payload)).start()
    assert reg.run_until(lambda: len(rec.data) == len(payload), 5)
    assert bytes(rec.data) == payload and max(rec.reads) <= 4096


def test_write_is_one_attempt_write_all_waits(reg, fifos):
    base, _wr, rd = fifos
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    big = os.urandom(1 << 20)
    n = fe.write(big)
    assert 0 < n < len(big)  # one attempt: what fitted
    sent = n
    while True:  # more single attempts until the fifo and the output buffer are full
        res = fe.write(big[sent:sent + 4096])
        if res <= 0:
            break
        sent += res
        assert sent < len(big)
    assert res == -errno.EAGAIN
    got = bytearray(drain(rd))
    done = []
    t = threading.Thread(target=lambda: done.append(fe.write_all(big[sent:])))
    t.start()
    deadline = time.monotonic() + 10
    while (t.is_alive() or len(got) < len(big)) and time.monotonic() < deadline:
        got += drain(rd)
        time.sleep(0.001)
    t.join()
    assert done == [len(big) - sent] and bytes(got) == big


def test_watch_fires_when_writable_again(reg, fifos):
    base, _wr, rd = fifos
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    while fe.write(b"\0" * 65536) > 0:
        pass
    time.sleep(0.05)
    while fe.write(b"\0" * 65536) > 0:  # the output buffer is full too
        pass
    fired = threading.Event()
    cancelled = threading.Event()
    watch = fe.add_watch(fired.set)
    assert watch is not None
    fe.add_watch(cancelled.set).cancel()
    time.sleep(0.05)
    assert not fired.is_set()
    drain(rd)
    assert fired.wait(2)
    time.sleep(0.05)
    assert not cancelled.is_set()
    # an always-writable backend fires at once
    fe2 = CharBackend(reg.new("r", "ringbuf"))
    f2 = threading.Event()
    fe2.add_watch(f2.set)
    assert f2.wait(2)


class IoctlRing(RingbufChardev):
    """A ringbuf that records ioctls, as a host serial port would act on them."""

    def open(self) -> bool:
        self.ioctls = []
        self.tiocm = int(Tiocm.CTS | Tiocm.DSR)
        return super().open()

    def chr_ioctl(self, cmd, arg):
        self.ioctls.append((cmd, arg))
        if cmd == ChardevIoctl.GET_TIOCM:
            return self.tiocm
        if cmd == ChardevIoctl.SET_TIOCM:
            self.tiocm = arg
        return 0


def test_ioctls(reg):
    fe = CharBackend(reg.new("r", "ringbuf"))
    assert fe.ioctl(ChardevIoctl.SET_PARAMS, SerialParams(9600, "E", 7, 2)) == -errno.ENOTSUP
    reg.register_backend("ringbuf", IoctlRing)
    fe2 = CharBackend(reg.new("s", "ringbuf"))
    params = SerialParams(speed=9600, parity="E", data_bits=7, stop_bits=2)
    assert fe2.ioctl(ChardevIoctl.SET_PARAMS, params) == 0
    assert fe2.ioctl(ChardevIoctl.SET_BREAK, True) == 0
    assert fe2.ioctl(ChardevIoctl.SET_TIOCM, int(Tiocm.DTR | Tiocm.RTS)) == 0
    assert fe2.ioctl(ChardevIoctl.GET_TIOCM) == int(Tiocm.DTR | Tiocm.RTS)
    assert fe2.chardev.ioctls[0] == (ChardevIoctl.SET_PARAMS, params)
    with pytest.raises(ChardevError):
        SerialParams(parity="X")
    assert CharBackend().ioctl(ChardevIoctl.GET_TIOCM) == -errno.ENOTSUP


def test_set_open_and_set_echo_do_not_fail(reg):
    fe = CharBackend(reg.new("r", "ringbuf"))
    fe.set_open(True)
    assert fe.fe_open
    fe.set_echo(True)
    fe.set_open(False)
    assert not fe.fe_open


def test_unattached_frontend_is_harmless():
    fe = CharBackend()
    assert fe.write(b"x") == 0 and fe.write_all(b"x") == 0
    assert fe.add_watch(lambda: None) is None
    fe.set_handlers(lambda: 1, lambda d: None)
    fe.accept_input()
    fe.deinit()


def test_coalesced_output_is_exact_and_keeps_back_pressure(tmp_path, fifos):
    from e2kchar import ChardevRegistry

    with ChardevRegistry(coalesce_output=True) as creg:
        out = tmp_path / "o"
        fe = CharBackend(creg.new("f", f"file,path={out},logfile={tmp_path / 'log'}"))
        payload = os.urandom(200000)
        for i in range(len(payload)):
            assert fe.write(payload[i:i + 1]) == 1
        assert fe.chardev.flush()
        assert out.read_bytes() == payload == (tmp_path / "log").read_bytes()
        fe.write_all(b"sync")  # write_all returns once the bytes are in the file
        assert out.read_bytes().endswith(b"sync")
        base, _wr, rd = fifos
        pfe = CharBackend(creg.new("p", f"pipe,path={base}"))
        sent = 0
        while (res := pfe.write(b"y" * 4096)) > 0:
            sent += res
        assert res == -errno.EAGAIN and sent < 1 << 20
        fired = threading.Event()
        pfe.add_watch(fired.set)
        got = bytearray()
        deadline = time.monotonic() + 5
        while len(got) < sent and time.monotonic() < deadline:
            got += drain(rd)
        assert bytes(got) == b"y" * sent
        assert fired.wait(2)
