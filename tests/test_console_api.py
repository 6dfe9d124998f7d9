"""The console test API: waits, prompts, failing strings, input, timestamps, hotswap."""

from __future__ import annotations

import threading

import pytest

from e2kchar import CharBackend
from e2kchar.testing import Console, ConsoleTimeout, FailingStringFound


class EchoDevice:
    """A frontend that answers each input line like a tiny shell."""

    def __init__(self, chardev) -> None:
        self.fe = CharBackend(chardev)
        self.line = bytearray()
        self.fe.set_handlers(lambda: 8, self.read, None, self.be_change)

    def be_change(self) -> int:
        self.fe.set_handlers(lambda: 8, self.read, None, self.be_change)
        return 0

    def read(self, data: bytes) -> None:
        for b in data:
            if b == 0x0D:
                self.fe.write_all(b"\r\nyou said: " + bytes(self.line) + b"\r\n> ")
                self.line.clear()
            else:
                self.line.append(b)


def test_wait_for_line_prompt_and_bytes(reg):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    con = Console(reg, "con", guest_clock=lambda: 42.5)
    dev.fe.write_all(b"boot: ok\r\nversion 1.2.3\r\n> ")
    m = con.wait_for_line(r"version (\d+)\.(\d+)", timeout=2)
    assert m.line == "version 1.2.3" and m.groups == ("1", "2") and m.guest_time == 42.5
    con.wait_for_prompt("> ", timeout=2)
    con.write_line("hello world")
    m = con.wait_for_line("you said", timeout=2)
    assert m.line == "you said: hello world"
    con.wait_for_bytes(b"\r\n> ", timeout=2)
    assert "boot: ok" in con.lines


def test_timeout_reports_the_tail(reg):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    con = Console(reg, "con")
    dev.fe.write_all(b"something else\n")
    with pytest.raises(ConsoleTimeout, match="something else"):
        con.wait_for_line("never", timeout=0.2)


def test_failing_string_aborts_at_once(reg):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    con = Console(reg, "con")
    con.fail_on("panic")
    threading.Timer(0.05, dev.fe.write_all, args=(b"Kernel panic - not syncing\n",)).start()
    with pytest.raises(FailingStringFound, match="Kernel panic"):
        con.wait_for_line("login:", timeout=30)


def test_console_follows_a_hotswap(reg, tmp_path):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    con = Console(reg, "con")
    dev.fe.write_all(b"before\n")
    reg.change("con", {"type": "file", "data": {"out": str(tmp_path / "o")}})
    dev.fe.write_all(b"after\n")
    con.wait_for_line("after", timeout=2)
    assert con.lines == ["before", "after"]
    con.write_line("typed")
    con.wait_for_line("you said: typed", timeout=2)
