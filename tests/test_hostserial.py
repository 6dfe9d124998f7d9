"""serial/tty backend via pyserial: a pty slave as a real tty, loop://, spy://, socket://."""

from __future__ import annotations

import errno
import logging
import os
import termios
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nethelpers import attach, fd_count, read_exact

from e2kchar import ChardevRegistry
from e2kchar.chardev.serial import STANDARD_RATES, qemu_speed
from e2kchar.chardev.types import ChardevError, ChardevEvent, ChardevIoctl, SerialParams, Tiocm

OPENED, CLOSED = ChardevEvent.OPENED, ChardevEvent.CLOSED


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, slave, path
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_qemu_speed_rule_examples():
    assert qemu_speed(115200) == 115200
    assert qemu_speed(9600) == 9600
    assert qemu_speed(10000) == 9600  # 9090 -> the next standard rate up
    assert qemu_speed(10600) == 19200  # 9636 > 9600
    assert qemu_speed(1) == 50
    assert qemu_speed(4_400_000) == 4_000_000
    assert qemu_speed(5_000_000) == 115200  # beyond every rate: B115200


@given(st.integers(1, 10_000_000))
def test_qemu_speed_rule_property(speed):
    rate = qemu_speed(speed)
    assert rate in STANDARD_RATES
    target = speed * 10 // 11
    if target > STANDARD_RATES[-1]:
        assert rate == 115200
    else:
        assert rate >= target
        assert all(r < target for r in STANDARD_RATES if r < rate)


def test_tty_data_params_break_and_modem_lines(reg, recorder, pty_pair):
    master, slave, path = pty_pair
    chr_ = reg.new("t", f"tty,path={path}")  # the alias
    assert reg.query()[0]["filename"] == "serial"
    rec = attach(reg, recorder, chr_)
    assert rec.events == [] or rec.events == [OPENED]
    assert reg.run_until(lambda: rec.events == [OPENED])  # open at creation (replayed)
    os.write(master, b"from the line")
    assert reg.run_until(lambda: bytes(rec.data) == b"from the line")
    rec.fe.write_all(b"to the line\n")
    assert read_exact(master, 12) == b"to the line\n"  # raw: no CRLF mapping
    # line parameters reach the tty's termios (a Linux pty refuses parity and CS7, so
    # that part is reported as -EINVAL while speed and stop bits still apply)
    ret = rec.fe.ioctl(ChardevIoctl.SET_PARAMS,
                       SerialParams(speed=10000, parity="E", data_bits=7, stop_bits=2))
    assert ret in (0, -errno.EINVAL)
    attrs = termios.tcgetattr(slave)
    assert attrs[4] == attrs[5] == termios.B9600
    assert attrs[2] & termios.CSTOPB
    assert rec.fe.ioctl(ChardevIoctl.SET_PARAMS, SerialParams(speed=2_000_000)) == 0
    attrs = termios.tcgetattr(slave)
    assert attrs[4] == termios.B2000000 and not attrs[2] & termios.CSTOPB
    # a pty takes a break but has no modem lines: a clean "unsupported", no exception
    assert rec.fe.ioctl(ChardevIoctl.SET_BREAK, True) == 0
    assert rec.fe.ioctl(ChardevIoctl.SET_BREAK, False) == 0
    assert rec.fe.ioctl(ChardevIoctl.GET_TIOCM) == -errno.ENOTSUP
    assert rec.fe.ioctl(ChardevIoctl.SET_TIOCM, int(Tiocm.DTR)) == -errno.ENOTSUP
    # the far end hangs up: CLOSED
    os.close(master)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])


def test_legacy_dev_path_is_a_serial_chardev(reg, recorder, pty_pair):
    master, _slave, path = pty_pair
    chr_ = reg.new("serial0", path)
    rec = attach(reg, recorder, chr_, room=4)
    os.write(master, b"0123456789")
    assert reg.run_until(lambda: len(rec.data) == 4)
    rec.give(100)
    assert reg.run_until(lambda: bytes(rec.data) == b"0123456789")
    assert max(rec.reads) <= 100


def test_loop_url_modem_lines_and_flow_control(reg, recorder):
    chr_ = reg.new("t", "serial,path=loop://")
    rec = attach(reg, recorder, chr_, room=2)
    rec.fe.write_all(b"abcdefgh")
    assert reg.run_until(lambda: len(rec.data) == 2)
    while len(rec.data) < 8:
        rec.give(3)
        assert reg.run_until(lambda: rec.room == 0 or len(rec.data) == 8)
    assert bytes(rec.data) == b"abcdefgh"
    assert max(rec.reads) <= 3
    # loop:// wires RTS->CTS and DTR->DSR
    assert rec.fe.ioctl(ChardevIoctl.SET_TIOCM, int(Tiocm.RTS)) == 0
    bits = rec.fe.ioctl(ChardevIoctl.GET_TIOCM)
    assert bits & Tiocm.RTS and bits & Tiocm.CTS
    assert not bits & (Tiocm.DTR | Tiocm.DSR)
    assert rec.fe.ioctl(ChardevIoctl.SET_TIOCM, int(Tiocm.DTR)) == 0
    bits = rec.fe.ioctl(ChardevIoctl.GET_TIOCM)
    assert bits & Tiocm.DTR and bits & Tiocm.DSR
    assert not bits & (Tiocm.RTS | Tiocm.CTS)
    assert rec.fe.ioctl(ChardevIoctl.SET_PARAMS, SerialParams(
        speed=57600, parity="O", data_bits=5, stop_bits=2)) == 0
    port = chr_.port
    assert (port.baudrate, port.parity, port.bytesize, port.stopbits) == (57600, "O", 5, 2)


def test_spy_url_sees_break_on_a_tty(reg, recorder, tmp_path, pty_pair):
    master, _slave, path = pty_pair
    log = tmp_path / "spy.txt"
    chr_ = reg.new("t", f"serial,path=spy://{path}?file={log}")
    rec = attach(reg, recorder, chr_)
    assert rec.fe.ioctl(ChardevIoctl.SET_BREAK, True) == 0
    assert rec.fe.ioctl(ChardevIoctl.SET_BREAK, False) == 0
    rec.fe.write_all(b"spied")
    assert read_exact(master, 5) == b"spied"
    os.write(master, b"back")
    assert reg.run_until(lambda: bytes(rec.data) == b"back")
    reg.close()
    text = log.read_text()
    assert "BRK" in text and "active" in text and "inactive" in text
    assert "TX   0000  73 70 69 65 64" in text  # hexdump of "spied"
    assert "RX " in text


def test_socket_url_to_our_own_tcp_server(reg, recorder):
    srv = reg.new("srv", "socket,host=127.0.0.1,port=0,server=on,wait=off")
    rs = attach(reg, recorder, srv)
    cli = reg.new("cli", f"serial,path=socket://127.0.0.1:{srv.addr.port}")
    rc = attach(reg, recorder, cli)
    assert reg.run_until(lambda: rs.events == [OPENED])
    rc.fe.write_all(b"uart->net")
    rs.fe.write_all(b"net->uart")
    assert reg.run_until(lambda: bytes(rs.data) == b"uart->net" and bytes(rc.data) == b"net->uart")
    # the server side drops the client: the pyserial reader ends, the frontend sees CLOSED
    rs.fe.disconnect()
    assert reg.run_until(lambda: CLOSED in rc.events)


def test_open_failures_are_clear_and_leak_nothing(tmp_path):
    before = fd_count()
    threads = threading.active_count()
    with ChardevRegistry() as reg:
        with pytest.raises(ChardevError, match=r"Could not open '/dev/e2k-no-such-tty': "
                                               "No such file or directory"):
            reg.new("a", "serial,path=/dev/e2k-no-such-tty")
        with pytest.raises(ChardevError, match=r"Could not open 'nosuch://x'"):
            reg.new("b", "serial,path=nosuch://x")
        with pytest.raises(ChardevError, match=r"Could not open 'socket://127.0.0.1:1'"):
            reg.new("c", "serial,path=socket://127.0.0.1:1")
        # pyserial raises a KeyError for an unknown logging level: still a ChardevError
        with pytest.raises(ChardevError, match=r"Could not open 'loop://\?logging=nope'"):
            reg.new("c", "serial,path=loop://?logging=nope")
        assert reg.labels() == []
        reg.new("d", "serial,path=loop://")  # a reader thread, stopped at close
        master, slave = os.openpty()
        reg.new("e", os.ttyname(slave))
        os.close(slave)
    os.close(master)
    assert fd_count() == before
    assert threading.active_count() == threads


def test_a_non_tty_path_is_taken_as_qemu_takes_it(tmp_path, caplog, recorder):
    """QEMU's test-char opens serial (and its alias tty) on /dev/null: the open succeeds,
    line settings and breaks are acknowledged without being applied (logged once), there
    are no modem lines, and the bytes still move through the fd."""
    before = fd_count()
    caplog.set_level(logging.INFO, logger="e2kchar.chardev.serial")
    out = tmp_path / "not-a-tty"
    out.write_bytes(b"")
    with ChardevRegistry() as reg:
        for label, spec in (("s", "serial,path=/dev/null"), ("t", "tty,path=/dev/null"),
                            ("l", "/dev/null"), ("f", f"serial,path={out}")):
            chr_ = reg.new(label, spec)
            assert chr_.filename == "serial"
        assert {c["label"]: c["filename"] for c in reg.query()} == dict.fromkeys("stlf", "serial")
        rec = attach(reg, recorder, reg.find("f"))
        for _ in range(3):
            assert rec.fe.ioctl(ChardevIoctl.SET_PARAMS, SerialParams(speed=9600,
                                                                      parity="E")) == 0
        assert rec.fe.ioctl(ChardevIoctl.SET_BREAK, True) == 0
        assert rec.fe.ioctl(ChardevIoctl.GET_TIOCM) == -errno.ENOTSUP
        assert rec.fe.ioctl(ChardevIoctl.SET_TIOCM, int(Tiocm.DTR)) == -errno.ENOTSUP
        rec.fe.write_all(b"through the fd")
        assert reg.run_until(lambda: out.read_bytes() == b"through the fd")
        null = attach(reg, recorder, reg.find("s"))
        null.fe.write_all(b"gone")
        assert reg.run_until(lambda: null.events == [OPENED, CLOSED])  # /dev/null reads EOF
    notes = [r.getMessage() for r in caplog.records if "is not a terminal" in r.getMessage()]
    assert len(notes) == 4, notes  # once per chardev, however often the guest sets the line
    assert notes[0] == ("s: /dev/null is not a terminal: line settings and breaks are not "
                        "applied, and it has no modem lines")
    assert fd_count() == before
