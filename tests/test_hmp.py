"""Human monitor: `(qemu) ` on a pipe-backed (and ringbuf-backed) mux, line editing, commands."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_qmp import FakeVm, Frontend, Raw

from e2kchar import CharBackend, ChardevEvent, ChardevRegistry
from e2kchar.monitor import HumanMonitor, Monitor, QmpServer
from e2kchar.monitor.hmp import escape_ringbuf, tokenize


@pytest.fixture
def tmpdir_short():
    d = tempfile.mkdtemp(prefix="hmpt")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


class PipeTerm:
    """The host end of a `pipe` chardev: write PATH.in, read PATH.out."""

    def __init__(self, reg: ChardevRegistry, base: Path) -> None:
        self.reg = reg
        os.mkfifo(f"{base}.in")
        os.mkfifo(f"{base}.out")
        self.base = base
        self.out = b""
        self._r = -1
        self._w = -1

    def open(self) -> None:
        self._r = os.open(f"{self.base}.out", os.O_RDONLY | os.O_NONBLOCK)
        self._w = os.open(f"{self.base}.in", os.O_WRONLY | os.O_NONBLOCK)

    def type(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        os.write(self._w, data)

    def pump(self) -> bytes:
        while True:
            try:
                chunk = os.read(self._r, 65536)
            except BlockingIOError:
                return self.out
            if not chunk:
                return self.out
            self.out += chunk

    def wait_for(self, text: bytes | str, count: int = 1, timeout: float = 10) -> bytes:
        if isinstance(text, str):
            text = text.encode()
        deadline = time.monotonic() + timeout
        while self.pump().count(text) < count:
            assert time.monotonic() < deadline, f"no {text!r} in {self.out!r}"
            time.sleep(0.005)
        return self.out

    def take(self) -> bytes:
        out, self.out = self.out, b""
        return out

    def close(self) -> None:
        for fd in (self._r, self._w):
            if fd >= 0:
                os.close(fd)


@pytest.fixture
def term(reg, tmpdir_short):
    t = PipeTerm(reg, tmpdir_short / "con")
    yield t
    t.close()


def start(reg: ChardevRegistry, term: PipeTerm, vm: Any = None,
          monitor: Monitor | None = None) -> HumanMonitor:
    reg.new("mon", f"pipe,path={term.base},mux=on")
    term.open()
    hmp = HumanMonitor(reg, vm, "mon", monitor=monitor)
    term.wait_for("(qemu) ")
    return hmp


def command(term: PipeTerm, line: str) -> str:
    """Type a line, wait for the next prompt, return what was printed in between."""
    term.take()
    term.type(line + "\r")
    out = term.wait_for(b"\r\n(qemu) ")
    text = out.decode()
    assert text.startswith(line + "\r\n"), text  # the echo, then CRLF
    return text[len(line) + 2:-len("(qemu) ")]


def test_banner_prompt_and_info_chardev(reg, term):
    reg.new("rb", "ringbuf,size=64")
    hmp = start(reg, term)
    first = term.take()
    assert first.startswith(b"QEMU 10.1.0 monitor - type 'help' for more information\r\n")
    assert first.endswith(b"(qemu) ")
    out = command(term, "info chardev")
    lines = out.split("\r\n")
    assert "rb: filename=ringbuf" in lines
    assert "mon: filename=mux" in lines or any(x.startswith("mon: filename=") for x in lines)
    assert any(x.startswith("mon-base: filename=pipe") for x in lines)
    assert "\n" not in out.replace("\r\n", "")
    hmp.close()


def test_help_lists_commands(reg, term):
    hmp = start(reg, term)
    out = command(term, "help")
    for name in ("chardev-add", "chardev-change", "chardev-remove", "info", "stop",
                 "cont", "system_reset", "quit", "help"):
        assert any(line.split(" ")[0].split("|")[0] == name for line in out.split("\r\n")), name
    assert command(term, "help chardev-change") == "chardev-change id args -- change chardev\r\n"
    assert "info status" in command(term, "info")
    hmp.close()


def test_line_editing(reg, term):
    hmp = start(reg, term)
    term.take()
    # backspace (BS and DEL) erases, with "\b \b" echoed
    term.type("info chardevXX\x08\x7f\r")
    out = term.wait_for(b"\r\n(qemu) ").decode()
    assert "\b \b\b \b" in out and "mon-base: filename=" in out
    # LF alone, CRLF counted once, two lines typed ahead in one write, arrow keys ignored
    term.take()
    term.type("bogus1\r\n\x1b[Abogus2\n")
    out = term.wait_for(b"(qemu) ", 2).decode()
    assert "unknown command: 'bogus1'\r\n" in out and "unknown command: 'bogus2'\r\n" in out
    assert out.count("(qemu) ") == 2  # no empty command from the LF of CRLF
    # empty line: just a new prompt
    term.take()
    term.type("\r")
    assert term.wait_for(b"(qemu) ") == b"\r\n(qemu) "
    hmp.close()


def test_bad_arguments(reg, term):
    hmp = start(reg, term)
    assert command(term, "chardev-remove") == \
        "Parameter 'id' is missing\r\nTry \"help chardev-remove\" for more information\r\n"
    assert command(term, "chardev-remove a b") == \
        "chardev-remove: extraneous characters at the end of line\r\n"
    assert command(term, 'chardev-remove "unterminated') == "unterminated string\r\n"
    assert command(term, "chardev-remove nope") == "Error: Chardev 'nope' not found\r\n"
    assert command(term, "ringbuf_read mon-base x") == \
        "Invalid parameter type for 'size', expected: integer\r\n"
    assert command(term, "info nothing") == "unknown command: 'info nothing'\r\n"
    hmp.close()


def test_chardev_change_add_remove(reg, term, tmpdir_short):
    hmp = start(reg, term)
    fe = Frontend(reg.new("con", "ringbuf,size=256"))
    log_path = tmpdir_short / "out.log"
    assert command(term, f"chardev-change con file,path={log_path}") == ""
    assert fe.changes == 1
    fe.fe.write_all(b"to the file\n")
    assert log_path.read_bytes() == b"to the file\n"
    assert command(term, "chardev-change con ringbuf,id=x") == \
        "Error: Unexpected 'id' parameter\r\n"
    assert command(term, "chardev-change con ringbuf,bogus=1") == \
        "Invalid parameter 'bogus'\r\nError: Parsing chardev args failed\r\n"
    assert command(term, "chardev-change nope null") == \
        "Error: Chardev 'nope' does not exist\r\n"
    assert command(term, "chardev-change con nonesuch") == \
        "Error: 'nonesuch' is not a valid char driver name\r\n"
    assert command(term, "chardev-change con file") == \
        "Error: chardev: file: no filename given\r\n"
    assert reg.find("con").filename.startswith("file")  # failures left it alone
    assert command(term, "chardev-change con ringbuf,size=64") == ""
    fe.fe.write_all(b"ring")
    assert reg.ringbuf_read("con", 10) == "ring"
    # add and remove
    assert command(term, "chardev-add ringbuf,id=extra,size=128") == ""
    assert "extra: filename=ringbuf" in command(term, "info chardev")
    assert command(term, "chardev-add ringbuf,id=extra") == \
        "Error: Duplicate ID 'extra' for chardev\r\n"
    assert command(term, "chardev-add ringbuf") == "Error: chardev: no id specified\r\n"
    assert command(term, "chardev-add ringbuf,id=z,bogus") == \
        "Invalid parameter 'bogus'\r\nError: Parsing chardev args failed\r\n"
    assert command(term, "ringbuf_write extra \"a\\\\b\\r\"") == ""
    assert command(term, "ringbuf_read extra 10") == "a\\\\b\\u000D\r\n"
    assert command(term, "chardev-remove extra") == ""
    assert reg.find("extra") is None
    assert command(term, "chardev-remove con") == "Error: Chardev 'con' is busy\r\n"
    assert command(term, "chardev-send-break con") == ""
    assert reg.run_until(lambda: ChardevEvent.BREAK in fe.events, 5)
    hmp.close()


def test_machine_commands_share_events_with_qmp(reg, term, tmpdir_short):
    vm = FakeVm()
    srv = QmpServer(reg, vm)
    srv.listen(f"unix:{tmpdir_short}/q.sock,server=on,wait=off")
    client = Raw(srv.address)
    client.negotiate()
    hmp = start(reg, term, vm, monitor=srv.monitor)
    assert command(term, "info status") == "VM status: running\r\n"
    assert command(term, "stop") == ""
    assert client.recv()["event"] == "STOP"
    assert command(term, "info status") == "VM status: paused\r\n"
    assert command(term, "c") == ""
    assert client.recv()["event"] == "RESUME"
    assert command(term, "system_reset") == ""
    assert client.recv()["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
    vm.state = "shutdown"
    assert command(term, "info status") == "VM status: paused (shutdown)\r\n"
    assert command(term, "cont") == "Error: Resetting the Virtual Machine is required\r\n"
    term.take()
    term.type("quit\r")
    assert vm.quit_called.wait(5)
    ev = client.recv()
    assert ev["event"] == "SHUTDOWN" and ev["data"]["reason"] == "host-qmp-quit"
    assert vm.calls == ["stop", "cont", "system_reset", "quit"]
    client.close()
    hmp.close()
    srv.close()


def test_mux_focus_switch_between_device_and_monitor(reg, term):
    hmp = start(reg, term)
    got: list[bytes] = []
    dev = CharBackend(reg.find("mon"))
    dev.set_handlers(lambda: 64, got.append)  # the serial device takes focus
    assert reg.run_until(lambda: reg.find("mon").focused() is dev, 5)
    term.take()
    term.type("info chardev\r")
    assert reg.run_until(lambda: b"".join(got) == b"info chardev\r", 5)
    assert b"filename" not in term.pump()  # the monitor did not see it
    term.type("\x01c")  # Ctrl-A c: focus to the monitor, which shows its prompt
    term.wait_for(b"(qemu) ")
    out = command(term, "info chardev")
    assert "mon-base: filename=pipe" in out
    dev.write_all(b"guest output\r\n")
    term.wait_for(b"guest output")
    dev.deinit()
    hmp.close()


def test_output_backpressure_is_flushed_later(reg, term):
    hmp = start(reg, term)
    term.take()
    n = 120  # ~100 KiB of help text: more than a pipe holds
    term.type("help\r" * n)
    deadline = time.monotonic() + 20
    while term.pump().count(b"(qemu) ") < n:
        assert time.monotonic() < deadline, term.out[-200:]
        time.sleep(0.01)
    assert term.out.count(b"chardev-change id args -- change chardev\r\n") == n
    hmp.close()


def test_hmp_on_ringbuf_mux_and_detach(reg):
    reg.new("rmon", "ringbuf,size=4096,mux=on")
    hmp = HumanMonitor(reg, None, "rmon")
    assert reg.run_until(lambda: reg.find("rmon-base").peek().endswith(b"(qemu) "), 5)
    assert reg.find("rmon").frontend_open()
    hmp.close()
    assert not reg.find("rmon").frontends()
    # the slot is free again: a second monitor can attach
    again = HumanMonitor(reg, None, reg.find("rmon"), banner=False)
    assert reg.run_until(lambda: reg.find("rmon-base").peek().count(b"(qemu) ") == 2, 5)
    again.close()


def test_human_monitor_command_over_qmp(reg):
    reg.new("rb", "ringbuf,size=64")
    mon = Monitor(reg, FakeVm())
    try:
        out = mon.execute_sync("human-monitor-command", {"command-line": "info chardev"})
        assert out == "rb: filename=ringbuf\r\n"
        assert mon.execute_sync("human-monitor-command", {"command-line": "stop"}) == ""
        assert mon.execute_sync("query-status", {}) == {"running": False, "status": "paused"}
    finally:
        mon.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
                max_size=5))
def test_tokenize_quoted_roundtrip(words):
    def quote(w: str) -> str:
        return '"' + w.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
            .replace("\r", "\\r") + '"'
    assert tokenize(" ".join(quote(w) for w in words)) == words


@given(st.text(max_size=50))
def test_escape_ringbuf_is_printable(text):
    out = escape_ringbuf(text)
    assert all(c in "\n\t" or (0x20 <= ord(c) != 0x7F) for c in out)


def test_hostile_bytes_do_not_break_the_monitor(reg, term):
    hmp = start(reg, term)
    term.take()
    term.type(bytes(b for b in range(256) if b not in (0x01, 0x0A, 0x0D)) + b"\r")
    term.wait_for(b"(qemu) ")
    term.type("x" * 10000 + "\r")  # longer than the line buffer: truncated, still answered
    term.wait_for(b"(qemu) ", 2)
    assert command(term, "info status") == "Error: No machine is attached to this monitor\r\n"
    hmp.close()


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_command_line_gets_text_back(line):
    with ChardevRegistry() as registry:
        registry.new("rb", "ringbuf,size=64")
        mon = Monitor(registry, FakeVm())
        try:
            out = mon.execute_sync("human-monitor-command", {"command-line": line})
            assert isinstance(out, str)
            assert "\n" not in out.replace("\r\n", "")
        finally:
            mon.close()


def test_a_server_socket_monitor_starts_each_client_afresh(reg):
    """A monitor on a listening socket (default history): a client that sends a command
    and hangs up at once leaves nothing behind; the next client is greeted afresh (the
    banner and one prompt, as qemu-system-riscv64 7.2 greets every client of a socket
    monitor), not with the last session's echo, reply and prompt (history replays guest
    output, not a monitor's conversation)."""
    import socket

    chr_ = reg.new("m", "socket,host=127.0.0.1,port=0,server=on,wait=off")
    hmp = HumanMonitor(reg, None, "m")
    port = int(chr_.addr.port)

    def session(send: bytes = b"", settle: float = 0.5) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(settle)
            got = b""
            while not got.endswith(b"(qemu) "):
                got += s.recv(4096)
            if send:
                s.sendall(send)
                return got
            try:
                while chunk := s.recv(4096):
                    got += chunk
            except TimeoutError:
                pass
            return got

    try:
        first = session()
        assert first.endswith(b"monitor - type 'help' for more information\r\n(qemu) ")
        assert first.startswith(b"QEMU ") and first.count(b"(qemu) ") == 1
        assert reg.run_until(lambda: not chr_.connected)
        for _ in range(3):
            session(b"info version\r")  # and hang up before the reply
            assert reg.run_until(lambda: not chr_.connected)
            time.sleep(0.2)  # the reply has been produced by now
            assert session() == first
            assert reg.run_until(lambda: not chr_.connected)
    finally:
        hmp.close()

