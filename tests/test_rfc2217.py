"""rfc2217 chardev: pyserial's own rfc2217:// client against a registry and an NS16550A."""

from __future__ import annotations

import time

import pytest
import serial
from e2kchar.devices import IrqLine, Ns16550a, VirtualClock

from e2kchar import ChardevError, ChardevRegistry
from e2kchar.chardev.spec import parse_spec

RBR, IER, IIR, LCR, MCR, LSR, MSR = range(7)


@pytest.fixture
def reg():
    with ChardevRegistry() as r:
        yield r


def _server(reg, label="ser0", extra=""):
    chr_ = reg.new(label, f"rfc2217,host=127.0.0.1,port=0,wait=off{extra}")
    return chr_, int(chr_.addr.port)


def _client(port):
    return serial.serial_for_url(f"rfc2217://127.0.0.1:{port}", baudrate=9600, timeout=2)


def _uart(chr_):
    uart = Ns16550a(chardev=chr_, irq=IrqLine(), baudbase=115200, clock=VirtualClock())
    return uart


def _guest_put(uart, data):
    for b in data:
        while not uart.read(LSR, 1) & 0x20:
            pass
        uart.write(RBR, 1, b)


def _guest_get(uart, n, timeout=5.0):
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        if uart.read(LSR, 1) & 0x01:
            out.append(uart.read(RBR, 1))
        else:
            time.sleep(0.001)
    return bytes(out)


def _until(pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_options_and_qapi_roundtrip(reg):
    spec = parse_spec("rfc2217,id=r,host=127.0.0.1,port=4000", None)
    assert spec.backend.type == "rfc2217" and spec.backend.wait is True
    spec = parse_spec("rfc2217,id=r,host=127.0.0.1,port=4000,wait=off", None)
    assert spec.backend.wait is False
    with pytest.raises(ChardevError):
        parse_spec("rfc2217,id=r,port=4000", None)
    ret = reg.add("q", {"type": "rfc2217", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}}}})
    assert ret == {}
    assert "rfc2217" in [b["name"] for b in reg.query_backends()]
    assert reg.find("q").filename.startswith("disconnected:rfc2217:127.0.0.1:")


def test_consoles_default_to_nodelay():
    # a keystroke's echo must not wait for the client's delayed ACK (Nagle): nodelay unless
    # the user turns it off
    assert parse_spec("rfc2217,id=r,host=127.0.0.1,port=4000", None).backend.nodelay is True
    assert parse_spec("rfc2217,id=r,host=127.0.0.1,port=4000,nodelay=off",
                      None).backend.nodelay is False
    assert parse_spec("rfc2217,id=r,host=127.0.0.1,port=4000,delay=on",
                      None).backend.nodelay is False


def test_data_both_ways_with_iac(reg):
    chr_, port = _server(reg)
    uart = _uart(chr_)
    uart.write(LCR, 1, 0x03)
    uart.write(MCR, 1, 0x03)
    s = _client(port)
    try:
        payload = bytes(range(256)) * 4
        _guest_put(uart, payload)
        got = s.read(len(payload))
        assert got == payload
        s.write(b"hi\xff\x00there")
        assert _guest_get(uart, 9) == b"hi\xff\x00there"
    finally:
        s.close()
        uart.close()


def test_null_modem_lines(reg):
    chr_, port = _server(reg)
    uart = _uart(chr_)
    uart.write(LCR, 1, 0x03)
    uart.write(MCR, 1, 0x00)
    s = _client(port)
    try:
        # pyserial raises DTR and RTS on open: the guest sees DSR, DCD and CTS
        assert _until(lambda: uart.read(MSR, 1) & 0xB0 == 0xB0)
        s.dtr = False
        assert _until(lambda: uart.read(MSR, 1) & 0xB0 == 0x10)  # CTS only
        s.rts = False
        assert _until(lambda: uart.read(MSR, 1) & 0xB0 == 0)
        s.dtr = True
        assert _until(lambda: uart.read(MSR, 1) & 0xB0 == 0xA0)  # DSR + DCD
        # the guest's DTR/RTS reach the client as DSR+CD / CTS (NOTIFY-MODEMSTATE)
        assert not s.dsr and not s.cd and not s.cts
        uart.write(MCR, 1, 0x01)  # DTR
        assert _until(lambda: s.dsr and s.cd and not s.cts)
        uart.write(MCR, 1, 0x03)  # DTR + RTS
        assert _until(lambda: s.dsr and s.cd and s.cts)
        uart.write(MCR, 1, 0x02)  # RTS
        assert _until(lambda: not s.dsr and not s.cd and s.cts)
    finally:
        s.close()
        uart.close()


def test_break_and_line_settings(reg):
    chr_, port = _server(reg)
    uart = _uart(chr_)
    uart.write(LCR, 1, 0x03)
    uart.write(2, 1, 0x07)  # FIFO on: the break keeps its place in the stream
    s = _client(port)
    try:
        # every setting is acknowledged (pyserial raises when it is not)
        s.baudrate = 57600
        s.bytesize = serial.SEVENBITS
        s.parity = serial.PARITY_EVEN
        s.stopbits = serial.STOPBITS_TWO
        s.baudrate = 115200
        s.write(b"ab")
        s.send_break(0.05)
        s.write(b"c")
        got = _guest_get(uart, 2)
        assert got == b"ab"
        assert _until(lambda: uart.read(LSR, 1) & 0x11 == 0x11)  # break + data ready
        assert uart.read(RBR, 1) == 0
        assert _guest_get(uart, 1) == b"c"
    finally:
        s.close()
        uart.close()


def test_history_and_reconnect(reg):
    chr_, port = _server(reg, extra=",history=4096")
    uart = _uart(chr_)
    uart.write(LCR, 1, 0x03)
    _guest_put(uart, b"before\xffany client\n")
    s = _client(port)
    try:
        assert s.read(18) == b"before\xffany client\n"
    finally:
        s.close()
    assert _until(lambda: not chr_.connected)
    _guest_put(uart, b"between\n")
    s = _client(port)
    try:
        assert s.read(8) == b"between\n"
        s.write(b"x")
        assert _guest_get(uart, 1) == b"x"
    finally:
        s.close()
        uart.close()


@pytest.mark.parametrize("sent", [b"x\xff\xff\xffyz", b"\xff" * 9 + b"yz", b"ab\xffc\xff\xff"])
def test_history_is_trimmed_in_guest_bytes_never_inside_an_iac_pair(reg, sent):
    """history=5 keeps the newest 5 bytes the guest sent: trimming happens before the telnet
    escaping, so the replay never starts with half an IAC IAC pair (which the client would
    take for a command and lose a byte)."""
    chr_, port = _server(reg, extra=",history=5")
    uart = _uart(chr_)
    uart.write(LCR, 1, 0x03)
    _guest_put(uart, sent)
    assert _until(lambda: uart.read(LSR, 1) & 0x40)  # all of it left the UART
    s = _client(port)
    try:
        assert s.read(5) == sent[-5:]
        s.timeout = 0.2
        assert s.read(10) == b""
    finally:
        s.close()
        uart.close()


def test_hotswap_socket_to_rfc2217_and_back(reg):
    chr_ = reg.new("ser0", "ringbuf,size=4096")
    uart = _uart(chr_)
    uart.write(LCR, 1, 0x03)
    ret = reg.change("ser0", {"type": "rfc2217", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}},
        "history": 4096}})
    assert ret == {}
    new = reg.find("ser0")
    port = int(new.addr.port)
    _guest_put(uart, b"swapped\n")
    s = _client(port)
    try:
        assert s.read(8) == b"swapped\n"
        s.write(b"in")
        assert _guest_get(uart, 2) == b"in"
    finally:
        s.close()
    reg.change("ser0", {"type": "ringbuf", "data": {}})
    _guest_put(uart, b"back")
    assert reg.ringbuf_read("ser0", 10) == "back"
    uart.close()


def test_e2kchar_run_console_over_rfc2217():
    """The bundled demo ROM's console on an rfc2217 server (wait=on: the guest starts once
    the client has opened the port), driven with pyserial's rfc2217:// client."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2kchar", "run", "--timeout", "30",
         "-chardev", f"rfc2217,id=con,host=127.0.0.1,port={port}", "-serial", "chardev:con"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        s = None
        deadline = time.monotonic() + 20
        while s is None:
            try:
                s = serial.serial_for_url(f"rfc2217://127.0.0.1:{port}", timeout=5)
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s.timeout = 10
        assert b"e2k> " in s.read_until(b"e2k> ")
        s.write(b"echo over rfc2217\r")
        assert b"over rfc2217" in s.read_until(b"e2k> ").replace(b"\r", b"")
        s.write(b"exit 5\r")
        assert proc.wait(10) == 5
        s.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
