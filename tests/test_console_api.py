"""The console test API: waits, prompts, failing strings, input, timestamps, hotswap."""

from __future__ import annotations

import re
import threading

import pytest

from e2kchar import CharBackend, ChardevError
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


def test_failing_string_aborts_a_bytes_wait(reg):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    con = Console(reg, "con")
    con.fail_on("Oops")
    threading.Timer(0.05, dev.fe.write_all, args=(b"Oops: 0000 [#1]\nmore\n",)).start()
    with pytest.raises(FailingStringFound, match="Oops: 0000"):
        con.wait_for_bytes(b"\x1b[never", timeout=30)
    # a failing line that comes only after the awaited bytes does not spoil that wait
    dev.fe.write_all(b"ready\nOops again\n")
    assert con.wait_for_bytes(b"ready\n", timeout=2).line == "ready\n"
    with pytest.raises(FailingStringFound, match="Oops again"):
        con.wait_for_line("never", timeout=2)
    with pytest.raises(ValueError):
        con.wait_for_bytes(b"", timeout=1)


def test_waits_share_one_position(reg):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    con = Console(reg, "con")
    dev.fe.write_all(b"alpha 1\nbeta\nalpha 2\n> ")
    con.wait_for_bytes(b"beta", timeout=2)
    # the line holding the bytes is still open to a line wait; the ones before are used up
    assert con.wait_for_line("alpha|beta", timeout=2).line == "beta"
    assert con.wait_for_line("alpha", timeout=2).line == "alpha 2"
    with pytest.raises(ConsoleTimeout):
        con.wait_for_bytes(b"alpha", timeout=0.1)
    con.wait_for_prompt("> ", timeout=2)
    with pytest.raises(ConsoleTimeout):
        con.wait_for_bytes(b"> ", timeout=0.1)  # the prompt was consumed too


def test_results_carry_arrival_times(reg):
    dev = EchoDevice(reg.new("con", "ringbuf"))
    clock = [10.0]
    con = Console(reg, "con", guest_clock=lambda: clock[0])
    dev.fe.write_all(b"first\nlogin: ")
    clock[0] = 20.0  # the output above arrived at guest time 10
    line = con.wait_for_line("first", timeout=2)
    prompt = con.wait_for_prompt("login: ", timeout=2)
    assert line.guest_time == 10.0 and prompt.guest_time == 10.0
    assert prompt.line == "login: " and abs(prompt.host_time - line.host_time) < 5


def test_timeouts_count_guest_time(reg):
    """A guest clock that stands still (a paused or slow guest) does not time a wait out;
    one that runs ahead of the host does."""
    dev = EchoDevice(reg.new("con", "ringbuf"))
    clock = [0.0]
    con = Console(reg, "con", guest_clock=lambda: clock[0])
    threading.Timer(0.5, dev.fe.write_all, args=(b"late but in guest time\n",)).start()
    # 0.5 s of host time pass, but no guest time: the 0.2 s wait still succeeds
    assert con.wait_for_line("late", timeout=0.2).line == "late but in guest time"

    def run_fast() -> None:
        clock[0] += 100.0  # the guest races ahead: 100 guest seconds in no host time

    threading.Timer(0.05, run_fast).start()
    with pytest.raises(ConsoleTimeout, match="timed out after 60"):
        con.wait_for_line("never", timeout=60)  # ends as soon as the guest clock passes 60 s


def test_capture_tags_lines_and_follows_a_hotswap(reg, tmp_path):
    from e2kchar.capture import Capture

    a = EchoDevice(reg.new("a", "ringbuf"))
    b = EchoDevice(reg.new("b", "null"))
    path = tmp_path / "cap.log"
    path.write_bytes(b"kept from an earlier run\n")
    cap = Capture(reg, str(path), timestamps=True, guest_clock=lambda: 1.5)
    cap.add("a")
    cap.add("b", tag="virtcon0")
    a.fe.write_all(b"one ")  # a partial line waits for its end ...
    b.fe.write_all(b"from b\r\n")
    reg.change("a", {"type": "file", "data": {"out": str(tmp_path / "a.out")}})
    a.fe.write_all(b"two\nthree")  # ... across a swap; "three" is flushed by close()
    cap.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "kept from an earlier run"  # appended, never truncated
    body = [re.sub(r"^\[(\S+) \d\d:\d\d:\d\d\.\d{3} \+1\.500000\] ", r"[\1] ", ln)
            for ln in lines[1:]]
    assert body == ["[virtcon0] from b", "[a] one two", "[a] three"], lines
    with Capture(reg, str(path)) as other, pytest.raises(ChardevError, match="'nope' not found"):
        other.add("nope")


def test_capture_closed_at_once_keeps_the_fast_path_bytes(tmp_path):
    """The UART's hot path leaves bytes in its sink for the chardev's flusher; a capture
    closed right after the guest's last write (the CLI closes it when the run ends) must
    still hold them."""
    from e2kchar.devices import Ns16550a

    from e2kchar import ChardevRegistry
    from e2kchar.capture import Capture

    for i in range(20):
        with ChardevRegistry(coalesce_output=True) as creg:
            path = tmp_path / f"cap{i}.log"
            cap = Capture(creg, str(path))
            cap.add(creg.new("con", f"file,path={tmp_path / 'out'}").label)
            uart = Ns16550a(creg.find("con"))
            lines = [f"line {n} of run {i}".encode() for n in range(50)]
            for line in lines:
                for b in line + b"\n":
                    uart.write(0, 1, b)   # THR, as the guest's putc
            cap.close()
            uart.close()
            assert path.read_bytes().splitlines() == [b"[con] " + ln for ln in lines]

