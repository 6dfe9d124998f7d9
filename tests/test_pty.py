"""pty backend: a real pseudo-terminal, OPENED/CLOSED on slave open/close, history."""

from __future__ import annotations

import os
import select
import threading

import serial
import serial.threaded
from nethelpers import attach, fd_count, read_exact

from e2kchar import ChardevRegistry
from e2kchar.chardev.frontend import CharBackend
from e2kchar.chardev.types import ChardevEvent

OPENED, CLOSED = ChardevEvent.OPENED, ChardevEvent.CLOSED


def open_slave(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY)


def test_pty_reports_path_and_tracks_the_slave(reg, recorder, caplog):
    caplog.set_level("INFO", logger="e2kchar.chardev.pty")
    ret = reg.add("p", {"type": "pty", "data": {"history": 0}})  # QEMU's drop behaviour
    path = ret["pty"]
    assert path.startswith("/dev/pts/") and os.path.exists(path)
    assert reg.query()[0]["filename"] == f"pty:{path}"
    assert f"char device redirected to {path} (label p)" in caplog.text
    chr_ = reg.find("p")
    rec = attach(reg, recorder, chr_)
    assert rec.fe.write(b"nobody hears this") == 17  # dropped (QEMU)
    fd = open_slave(path)
    assert reg.run_until(lambda: rec.events == [OPENED])
    assert rec.fe.write_all(b"hello\n") == 6
    assert read_exact(fd, 6) == b"hello\n"  # raw mode: no CR added
    os.write(fd, b"typed\r")
    assert reg.run_until(lambda: bytes(rec.data) == b"typed\r")
    os.close(fd)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])  # we do send CLOSED
    fd = open_slave(path)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED, OPENED])
    r, _, _ = select.select([fd], [], [], 0.1)
    assert not r  # what was written while nobody listened is gone
    os.close(fd)


def test_pty_history_replayed_on_open(reg, recorder):
    chr_ = reg.new("p", "pty,history=8")
    rec = attach(reg, recorder, chr_)
    rec.fe.write_all(b"0123456789")
    rec.fe.write_all(b"ab")
    fd = open_slave(chr_.pty_path)
    assert reg.run_until(lambda: OPENED in rec.events)
    rec.fe.write_all(b"+live")
    assert read_exact(fd, 13) == b"456789ab+live"
    os.close(fd)


def test_pty_input_respects_can_read(reg, recorder):
    chr_ = reg.new("p", "pty")
    rec = attach(reg, recorder, chr_, room=5)
    fd = open_slave(chr_.pty_path)
    assert reg.run_until(lambda: OPENED in rec.events)
    os.write(fd, b"abcdefghijklmnopqrstuvwxyz")
    assert reg.run_until(lambda: len(rec.data) == 5)
    while len(rec.data) < 26:
        rec.give(7)
        assert reg.run_until(lambda: rec.room == 0 or len(rec.data) == 26)
    assert bytes(rec.data) == b"abcdefghijklmnopqrstuvwxyz"
    assert max(rec.reads) <= 7
    os.close(fd)


class Lines(serial.threaded.LineReader):
    TERMINATOR = b"\n"
    received: list[str]
    got: threading.Event

    def handle_line(self, line: str) -> None:
        self.received.append(line)
        if len(self.received) >= 3:
            self.got.set()


def test_pyserial_linereader_reads_our_pty(reg, recorder):
    chr_ = reg.new("p", "pty")
    rec = attach(reg, recorder, chr_)
    port = serial.Serial(chr_.pty_path, 115200, timeout=0.1)
    Lines.received = []
    Lines.got = threading.Event()
    with serial.threaded.ReaderThread(port, Lines) as proto:
        assert reg.run_until(lambda: rec.events == [OPENED])
        rec.fe.write_all(b"boot: line one\nline two\nlogin: ")
        rec.fe.write_all(b"ready\n")
        assert Lines.got.wait(5)
        assert Lines.received == ["boot: line one", "line two", "login: ready"]
        proto.write_line("root")
        assert reg.run_until(lambda: bytes(rec.data) == b"root\n")
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])


def test_hotswap_ringbuf_to_pty_reports_path(reg, recorder):
    reg.new("con", "ringbuf")
    rec = recorder(reg.attach("con"))
    ret = reg.change("con", {"type": "pty", "data": {}})
    assert ret["pty"] == reg.find("con").pty_path
    fd = open_slave(ret["pty"])
    assert reg.run_until(lambda: rec.events[-1:] == [OPENED] and len(rec.events) == 3)
    rec.fe.write_all(b"swapped")
    assert read_exact(fd, 7) == b"swapped"
    os.close(fd)


def test_pty_no_fd_leak():
    before = fd_count()
    reg = ChardevRegistry()
    events = []
    try:
        chr_ = reg.new("p", "pty,history=64")
        fe = CharBackend(chr_)
        fe.set_handlers(lambda: 100, lambda d: None, events.append)
        fd = open_slave(chr_.pty_path)
        assert reg.run_until(lambda: events == [OPENED])
        os.close(fd)
        assert reg.run_until(lambda: events == [OPENED, CLOSED])
    finally:
        reg.close()
    assert events == [OPENED, CLOSED, CLOSED]  # and CLOSED at finalize, as QEMU
    assert fd_count() == before


def test_pty_path_symlink_and_swap_announcement(reg, recorder, caplog, tmp_path):
    """QEMU 9.2+: path=LINK links to the slave (gone with the chardev); every pty, also one
    a chardev-change makes, is announced as QEMU prints it."""
    caplog.set_level("INFO", logger="e2kchar.chardev.pty")
    link = tmp_path / "console"
    chr_ = reg.new("p", f"pty,path={link}")
    assert os.readlink(link) == chr_.pty_path
    assert f"char device redirected to {chr_.pty_path} (label p)" in caplog.text
    import pytest

    from e2kchar import ChardevError
    with pytest.raises(ChardevError, match="Failed to create PTY symlink: File exists"):
        reg.new("q", f"pty,path={link}")
    assert "q" not in reg.labels()
    reg.remove("p")
    assert not os.path.lexists(link)
    reg.new("r", "ringbuf")
    rec = attach(reg, recorder, reg.find("r"))
    caplog.clear()
    ret = reg.change("r", {"type": "pty", "data": {"path": str(link)}})
    assert os.readlink(link) == ret["pty"]
    assert f"char device redirected to {ret['pty']} (label r)" in caplog.text
    rec.fe.deinit()
    reg.close()
    assert not os.path.lexists(link)


def test_pty_opened_slave_gets_output_within_milliseconds(reg, recorder):
    """No 100 ms poll: the open is seen through inotify and history replays at once."""
    import time
    chr_ = reg.new("p", "pty,history=64")
    rec = attach(reg, recorder, chr_)
    rec.fe.write_all(b"x")
    worst = 0.0
    for _ in range(5):
        t0 = time.monotonic()
        fd = open_slave(chr_.pty_path)
        assert read_exact(fd, 1) == b"x"
        worst = max(worst, time.monotonic() - t0)
        os.close(fd)
        assert reg.run_until(lambda: CLOSED in rec.events)
        rec.events.clear()
        rec.fe.write_all(b"x")
    assert worst < 0.05, worst



def test_e2kchar_run_announces_the_pty_on_stderr():
    """As QEMU prints it, without -v: the line scripts and test harnesses look for."""
    import re
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "e2kchar", "run", "-serial", "pty",
                           "--timeout", "1"], capture_output=True, timeout=60)
    assert re.match(rb"char device redirected to /dev/pts/\d+ \(label serial0\)\n",
                    proc.stderr), proc.stderr


def test_pty_history_by_default_and_logfile(reg, recorder, tmp_path):
    log = tmp_path / "p.log"
    chr_ = reg.new("p", f"pty,logfile={log}")
    rec = attach(reg, recorder, chr_)
    rec.fe.write_all(b"before open ")
    fd = open_slave(chr_.pty_path)
    assert reg.run_until(lambda: OPENED in rec.events)
    rec.fe.write_all(b"live")
    assert read_exact(fd, 16) == b"before open live"
    os.close(fd)
    assert log.read_bytes() == b"before open live"
