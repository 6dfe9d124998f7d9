"""`e2kchar run` as users run it: a subprocess with QEMU-style options, driven through stdin,
files and the real qemu.qmp client (hotswap under load, ringbufs, errors)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qemu.qmp import ExecuteError, QMPClient, Runstate

E2KCHAR = [sys.executable, "-m", "e2kchar", "run"]


def run_cli(*args: str, input: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*E2KCHAR, *args], input=input, capture_output=True, timeout=timeout)


def test_bundled_firmware_boots_on_stdio():
    proc = run_cli("--timeout", "30", input=b"echo hello\rinfo\rexit 3\r")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 3, (out, proc.stderr)
    assert "E2K boot ROM (e2kchar demo)" in out
    assert "\nhello" in out.replace("\r", "")
    assert "interrupts:" in out


def test_timeout_exits_124(build_driver):
    elf = build_driver("hotswap_stream")
    proc = run_cli(str(elf), "-serial", "null", "--timeout", "0.5")
    assert proc.returncode == 124
    assert b"timed out after 0.5 s" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["-device", "nosuch,chardev=x"], "unknown device 'nosuch'"),
    (["-device", "am85c30,foo=bar"], "Invalid parameter 'foo'"),
    (["-device", "virtserialport,chardev=serial0"], "virtserialport needs name=NAME"),
    (["-device", "loader,file=/etc/hostname"], "loader needs file=FILE,addr=ADDR"),
    (["-device", "loader,file=/etc/hostname,addr=zz"], "bad address 'zz'"),
    (["-serial", "bogus:thing"], "'bogus:thing' is not a valid char driver"),
    (["-serial", "null"] * 4, "too many -serial options"),
    (["-serial", "chardev:nope"], "chardev 'nope' not found"),
    (["-chardev", "ringbuf,id=r,size=3"], "size of ringbuf chardev must be power of two"),
    (["-chardev", "ringbuf"], "no id specified"),
    (["-chardev", "ringbuf,id=a", "-chardev", "ringbuf,id=a"], "Duplicate ID 'a'"),
    (["-device", "virtconsole,chardev=missing"], "chardev 'missing' not found"),
    (["/nonexistent.elf"], "cannot read '/nonexistent.elf': no such file"),
    (["/"], "cannot read '/': not a regular file"),
    (["-kernel", "/nonexistent.bin"], "cannot read '/nonexistent.bin'"),
    (["-initrd", "/nonexistent.cpio"], "cannot read '/nonexistent.cpio'"),
    (["-bios", "/etc/hostname", "/etc/hostname"], "either FIRMWARE or -bios"),
    (["-m", "lots"], "invalid RAM size 'lots'"),
    (["-m", "0"], "RAM size 0"),
    (["-append", "x" * 300], "at most 255 fit"),
    (["--timeout", "soon"], "invalid number of seconds 'soon'"),
    (["--timeout", "-1"], "'-1' is not a number of seconds"),
    (["--timeout", "nan"], "'nan' is not a number of seconds"),
    (["--timeout", "inf"], "'inf' is not a number of seconds"),
    (["-serial"], "argument -serial: expected one argument"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["-qmp", "tcp:127.0.0.1:1,server=off"], "-qmp"),
    (["-qmp", "tcp:127.0.0.1:99999,server=on,wait=off"], "Port '99999' out of range"),
    (["-qmp", "stdio"], "QMP needs a unix: or tcp: socket address"),
    (["-qmp", "unix:/nonexistent/q.sock,server=on,wait=off"], "Failed to bind socket"),
    (["-mon", "chardev=nope"], "-mon: chardev 'nope' not found"),
    (["-mon", "chardev=serial0,mode=control"], "only mode=readline"),
    (["--capture", "/nonexistent/cap.log"], "Could not open '/nonexistent/cap.log'"),
    (["-S", "-serial", "null"], "-S needs a monitor"),
    (["-chardev", "ringbuf,id=r", "-serial", "chardev:r", "-serial", "chardev:r"],
     "chardev 'r' is in use by 2 frontends"),
    (["-chardev", "ringbuf,id=r", "-serial", "chardev:r", "-mon", "chardev=r"],
     "chardev 'r' is in use by 2 frontends"),
    (["-chardev", "ringbuf,id=r,mux=on", *["-serial", "chardev:r"] * 3,
      *["-mon", "chardev=r"] * 2], "chardev 'r' is in use by 5 frontends"),
])
def test_bad_options_are_clear_errors(args, message):
    # the timeout comes first: an option under test may swallow what follows it
    proc = run_cli("--timeout", "5", *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert message in err, err
    assert "Traceback" not in err, err
    assert err.rstrip().count("\n") <= 6, err  # a message (and usage), not a dump


def test_help_explains_by_example():
    for argv in (["run", "--help"], ["run", "-h"]):
        proc = subprocess.run([sys.executable, "-m", "e2kchar", *argv], capture_output=True,
                              timeout=60)
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr
        assert "Examples:" in out
        for example in ("e2kchar run fw.elf -serial file:", "-qmp unix:",
                        "--capture boot.log", "mon:stdio", "exit status",
                        "-chardev rfc2217,id=con,host=127.0.0.1,port=7000",
                        "-chardev pty,id=p,path=/tmp/e2k-tty",
                        "-chardev hub,id=h,chardevs.0=p,chardevs.1=f",
                        "-serial /dev/ttyUSB0", "logtimestamp=on \\\n"):
            assert example in out, example
    proc = subprocess.run([sys.executable, "-m", "e2kchar", "bogus"], capture_output=True,
                          timeout=60)
    assert proc.returncode == 2 and b"unknown command 'bogus'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "e2kchar"], capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"e2kchar run --help" in proc.stdout


def test_capture_and_logtimestamp(tmp_path):
    cap = tmp_path / "capture.log"
    log = tmp_path / "serial.log"
    proc = run_cli("-chardev", f"pipe,id=con,path={tmp_path / 'p'}", "-serial", "null",
                   "-serial", "null", "--timeout", "10", input=b"")
    assert proc.returncode != 0  # the pipe does not exist: a clear error, nothing runs
    os.mkfifo(tmp_path / "in")
    # channel A: a file with a timestamped logfile; input typed through a fifo
    writer = os.open(tmp_path / "in", os.O_RDWR)
    try:
        os.write(writer, b"exit 5\r")
        proc = run_cli("-chardev",
                       f"file,id=con,path={tmp_path / 'out'},input-path={tmp_path / 'in'},"
                       f"logfile={log},logtimestamp=on",
                       "-serial", "chardev:con", "--capture", str(cap), "--timeout", "20")
    finally:
        os.close(writer)
    assert proc.returncode == 5, proc.stderr
    lines = log.read_text().splitlines()
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \+\d+\.\d{6}\] "
                        r"E2K boot ROM \(e2kchar demo\)", lines[0]), lines[0]
    captured = cap.read_text().splitlines()
    assert captured[0] == "[con] E2K boot ROM (e2kchar demo)"
    assert "[con] halting, exit code 5" in captured


def _reap(proc: subprocess.Popen) -> None:
    """Kill a run a failed test left behind (a run that ended keeps its status)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def _qmp(sock: Path, proc: subprocess.Popen) -> QMPClient:
    client = QMPClient("test")
    deadline = time.monotonic() + 20
    while True:
        try:
            await client.connect(str(sock))
            return client
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _disconnect_after_shutdown(qmp: QMPClient) -> None:
    """Disconnect once the client has seen SHUTDOWN: the server hangs up then, as QEMU does.

    qemu.qmp's reader task may see that hangup before disconnect() is called; disconnect()
    then re-raises its EOFError. That EOF is the expected end of the session (QEMU's own
    harness, python/qemu/machine, ignores EOFError once 'quit' was issued), so only it is
    tolerated, and only here; any other failure still propagates.
    """
    with contextlib.suppress(EOFError):
        await qmp.disconnect()


async def _quit(qmp: QMPClient) -> None:
    """`quit` as QEMU answers it: the reply, a SHUTDOWN event (host-qmp-quit), then the
    server hangs up; the client checks the first two and disconnects."""
    with qmp.listener(("SHUTDOWN",)) as listener:
        assert await qmp.execute("quit") == {}
        event = await asyncio.wait_for(listener.get(), 30)
    assert event["data"] == {"guest": False, "reason": "host-qmp-quit"}, event
    await _disconnect_after_shutdown(qmp)


def _lines_ok(data: bytes) -> int:
    """The stream driver's output is 'line NNNNNN\\n' counting up from 0: check, return n."""
    lines = data.decode().split("\n")
    tail = lines.pop()  # the guest was stopped mid-line: a prefix of the next line
    for i, line in enumerate(lines):
        assert line == f"line {i % 1000000:06d}", f"line {i}: {line!r}"
    assert f"line {len(lines) % 1000000:06d}".startswith(tail), tail
    return len(lines)


def test_qmp_hotswap_under_load_is_exactly_once(build_driver, tmp_path):
    """file -> file -> file -> ringbuf -> (stop, read the ring, swap, cont) -> file -> file,
    all through QMP while the guest prints as fast as it can."""
    elf = build_driver("hotswap_stream")
    sock = tmp_path / "qmp.sock"
    parts = [tmp_path / f"part{i}" for i in range(6)]
    proc = subprocess.Popen([*E2KCHAR, str(elf), "-serial", f"file:{parts[0]}",
                             "-qmp", f"unix:{sock},server=on,wait=off", "--timeout", "60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def file_(i: int) -> dict:
        return {"type": "file", "data": {"out": str(parts[i])}}

    async def scenario() -> bytes:
        qmp = await _qmp(sock, proc)
        try:
            chardevs = await qmp.execute("query-chardev")
            assert {"label": "serial0", "filename": "file", "frontend-open": True} in chardevs
            with pytest.raises(ExecuteError) as err:
                await qmp.execute("chardev-change", {"id": "nope", "backend": {"type": "null"}})
            assert err.value.error_class == "GenericError"
            assert "Chardev 'nope' does not exist" in str(err.value)
            for i in (1, 2):
                await asyncio.sleep(0.1)
                assert await qmp.execute("chardev-change",
                                         {"id": "serial0", "backend": file_(i)}) == {}
            await asyncio.sleep(0.1)
            await qmp.execute("chardev-change", {"id": "serial0", "backend": {
                "type": "ringbuf", "data": {"size": 1 << 22}}})
            await asyncio.sleep(0.1)
            await qmp.execute("stop")
            assert (await qmp.execute("query-status"))["status"] == "paused"
            ring = await qmp.execute("ringbuf-read", {"device": "serial0", "size": 1 << 22})
            await qmp.execute("chardev-change", {"id": "serial0", "backend": file_(4)})
            await qmp.execute("cont")
            await asyncio.sleep(0.1)
            await qmp.execute("chardev-change", {"id": "serial0", "backend": file_(5)})
            await asyncio.sleep(0.1)
            await qmp.execute("stop")
            await _quit(qmp)
        finally:
            if qmp.runstate != Runstate.IDLE:  # a failure above left it connected
                await qmp.disconnect()
        return ring.encode()

    try:
        ring = asyncio.run(scenario())
        proc.wait(30)
    finally:
        _reap(proc)
    assert proc.returncode == 0, proc.stderr.read()
    pieces = [parts[0].read_bytes(), parts[1].read_bytes(), parts[2].read_bytes(), ring,
              parts[4].read_bytes(), parts[5].read_bytes()]
    assert all(pieces), [len(p) for p in pieces]
    total = _lines_ok(b"".join(pieces))
    assert total > 100


class _Raw:
    """A bare QMP socket client for the misbehaving ones."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rb")

    def recv(self) -> dict:
        return json.loads(self.f.readline())

    def negotiate(self) -> None:
        assert "QMP" in self.recv()
        self.sock.sendall(b'{"execute": "qmp_capabilities"}')
        assert self.recv() == {"return": {}}

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def _start_stream(elf: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*E2KCHAR, str(elf), *args, "--timeout", "90"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, (what, proc.stderr.read())
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_misbehaving_qmp_clients_leave_guest_and_others_alone(build_driver, tmp_path):
    """While the guest prints at full speed: a client that never reads its replies, one that
    sends garbage, one that sends an oversized message, one that vanishes mid-message and one
    that never negotiates. The guest keeps printing (exactly once, in order), a qemu.qmp
    client on the same socket and a watcher on a second -qmp socket carry on."""
    elf = build_driver("hotswap_stream")
    sock, sock2 = tmp_path / "q1.sock", tmp_path / "q2.sock"
    parts = [tmp_path / "part0", tmp_path / "part1"]
    proc = _start_stream(elf, "-serial", f"file:{parts[0]}",
                         "-qmp", f"unix:{sock},server=on,wait=off",
                         "-qmp", f"unix:{sock2},server=on,wait=off")
    try:
        _wait_for(lambda: sock2.exists() and parts[0].exists() and parts[0].stat().st_size,
                  proc, "the guest prints")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600

        async def scenario() -> list[dict]:
            good = await _qmp(sock, proc)
            watcher = await _qmp(sock2, proc)
            events: list[dict] = []

            async def watch() -> None:
                async for ev in watcher.events:
                    events.append(ev)
                    if ev["event"] == "SHUTDOWN":
                        break

            watching = asyncio.create_task(watch())
            silent = _Raw(sock)  # connects, never negotiates, never reads
            lazy = _Raw(sock)
            lazy.negotiate()
            lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

            def flood() -> bool:
                try:
                    for _ in range(400):  # each request's reply is ~800 bytes
                        lazy.sock.sendall(b'{"execute": "query-commands"}' * 100)
                except OSError:
                    return True  # dropped by the server
                return False

            dropped = await asyncio.to_thread(flood)
            garbage = _Raw(sock)
            garbage.negotiate()
            garbage.sock.sendall(b'{"execute": \xff}}] \x00{"execute": "query-status", "id": 7}')
            replies = [garbage.recv()]
            while "id" not in replies[-1]:
                replies.append(garbage.recv())
            assert len(replies) > 3 and all(r["error"]["desc"].startswith("JSON parse error")
                                            for r in replies[:-1]), replies
            assert replies[-1] == {"return": {"running": True, "status": "running"}, "id": 7}
            big = _Raw(sock)
            big.negotiate()
            try:
                big.sock.sendall(b'{"execute": "ringbuf-write", "arguments": {"data": "'
                                 + b"x" * (2 << 20) + b'"}}')
            except OSError:
                pass
            assert "exceeds the limit" in big.recv()["error"]["desc"]
            gone = _Raw(sock)
            gone.negotiate()
            gone.sock.sendall(b'{"execute": "chardev-add", "arguments": {"id": "rb", '
                              b'"backend": {"type": "ringbuf", "data": {}}}}'
                              b'{"execute": "query-chard')
            gone.close()  # gone mid-message, without reading the reply
            size = parts[0].stat().st_size
            # the good client: commands work, the guest still runs and prints
            assert (await good.execute("query-status"))["status"] == "running"
            await asyncio.sleep(0.3)
            assert parts[0].stat().st_size > size, "the guest stopped printing"
            labels = {c["label"] for c in await good.execute("query-chardev")}
            assert labels == {"serial0", "rb"}
            with pytest.raises(ExecuteError) as err:
                await good.execute("chardev-add", {"id": "x", "backend": {"type": "null"},
                                                   "extra": 1})
            assert err.value.error_class == "GenericError"
            assert "Parameter 'extra' is unexpected" in str(err.value)
            assert await good.execute("chardev-change", {"id": "serial0", "backend": {
                "type": "file", "data": {"out": str(parts[1])}}}) == {}
            await good.execute("stop")
            await good.execute("cont")
            await asyncio.sleep(0.3)
            await good.execute("stop")
            await asyncio.sleep(0.1)
            for client in (silent, lazy, garbage, big):
                client.close()
            await _quit(good)
            await asyncio.wait_for(watching, 10)
            await _disconnect_after_shutdown(watcher)
            assert dropped, "the client that never reads was not dropped"
            return events

        events = asyncio.run(scenario())
        proc.wait(30)
    finally:
        _reap(proc)
    assert proc.returncode == 0, proc.stderr.read()
    # the other -qmp socket saw the events of the first one's commands, with timestamps
    names = [ev["event"] for ev in events]
    assert names == ["STOP", "RESUME", "STOP", "SHUTDOWN"], names
    for ev in events:
        ts = ev["timestamp"]
        assert ts["seconds"] > 1_600_000_000 and 0 <= ts["microseconds"] < 1_000_000
    assert events[-1]["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert _lines_ok(parts[0].read_bytes() + parts[1].read_bytes()) > 100


def test_hmp_hotswap_under_load_is_exactly_once(build_driver, tmp_path):
    """The human monitor on a socket chardev swaps the console twice while the guest prints;
    `quit` ends the run."""
    elf = build_driver("hotswap_stream")
    mon = tmp_path / "mon.sock"
    parts = [tmp_path / f"part{i}" for i in range(3)]
    proc = _start_stream(elf, "-serial", f"file:{parts[0]}",
                         "-chardev", f"socket,id=hmp,path={mon},server=on,wait=off",
                         "-mon", "chardev=hmp")
    try:
        _wait_for(lambda: mon.exists(), proc, "the monitor socket")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(str(mon))
        seen = bytearray()

        def until(text: bytes) -> bytes:
            while text not in seen:
                data = s.recv(4096)
                assert data, bytes(seen)
                seen.extend(data)
            out = bytes(seen[:seen.index(text) + len(text)])
            del seen[:len(out)]
            return out

        until(b"(qemu) ")
        for i in (1, 2):
            time.sleep(0.2)
            s.sendall(f"chardev-change serial0 file,path={parts[i]}\r".encode())
            reply = until(b"(qemu) ")
            assert b"Error" not in reply, reply
        s.sendall(b"info chardev\r")
        assert b"serial0: filename=file" in until(b"(qemu) ")
        time.sleep(0.2)
        s.sendall(b"chardev-change nope null\r")
        assert b"Error: Chardev 'nope' does not exist" in until(b"(qemu) ")
        s.sendall(b"stop\r")
        until(b"(qemu) ")
        s.sendall(b"quit\r")
        proc.wait(30)
        s.close()
    finally:
        _reap(proc)
    assert proc.returncode == 0, proc.stderr.read()
    pieces = [p.read_bytes() for p in parts]
    assert all(pieces), [len(p) for p in pieces]
    assert _lines_ok(b"".join(pieces)) > 100


def test_guest_exit_and_reset_are_qmp_events(build_driver, tmp_path):
    """With -S the guest waits for `cont`; the QMP client then sees the guest's own resets
    and its shutdown as events (as QEMU reports them)."""

    async def watch(sock: Path, proc: subprocess.Popen, until: str, count: int,
                    quit_after: bool) -> list[dict]:
        qmp = await _qmp(sock, proc)
        events: list[dict] = []
        try:
            assert await qmp.execute("query-status") == {"running": False,
                                                         "status": "prelaunch"}
            await qmp.execute("cont")
            async with asyncio.timeout(30):
                async for ev in qmp.events:
                    events.append(ev)
                    if sum(e["event"] == until for e in events) >= count:
                        break
            if quit_after:
                await _quit(qmp)
            else:  # the guest's SHUTDOWN was the last event: the server hangs up now
                await _disconnect_after_shutdown(qmp)
        finally:
            if qmp.runstate != Runstate.IDLE:  # a failure above left it connected
                await qmp.disconnect()
        return events

    for name, defines, until, count in (("machine_reset", None, "RESET", 3),
                                        ("hotswap_stream", {"STREAM_LINES": 50}, "SHUTDOWN", 1)):
        elf = build_driver(name, defines=defines)
        sock = tmp_path / f"{name}.sock"
        proc = subprocess.Popen([*E2KCHAR, str(elf), "-serial", "null", "-serial", "null",
                                 "-serial", "null", "-qmp", f"unix:{sock},server=on,wait=off",
                                 "-S", "--timeout", "60"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            events = asyncio.run(watch(sock, proc, until, count, until == "RESET"))
            proc.wait(30)
        finally:
            _reap(proc)
        assert proc.returncode == 0, proc.stderr.read()
        got = [(e["event"], e.get("data")) for e in events]
        assert got[0] == ("RESUME", None), got
        if until == "RESET":
            assert got[1:] == [("RESET", {"guest": True, "reason": "guest-reset"})] * count, got
        else:
            assert got[1:] == [("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})], got


def test_a_line_typed_at_once_reaches_the_guest_through_the_mux():
    """A pasted line on the default mon:stdio: more than the Am85C30's 3-byte FIFO waits in
    the mux until the guest reads (it once stalled there for good, with Ctrl-A x unread)."""
    proc = subprocess.Popen([*E2KCHAR, "--timeout", "30"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = bytearray()
    try:
        os.set_blocking(proc.stdout.fileno(), False)

        def until(text: bytes, timeout: float = 10) -> bool:
            deadline = time.monotonic() + timeout
            while text not in out and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError, TypeError):
                    out.extend(os.read(proc.stdout.fileno(), 4096))
                time.sleep(0.01)
            return text in out

        assert until(b"e2k> ")
        time.sleep(0.3)  # the guest waits for input now
        proc.stdin.write(b"echo 0123456789abcdefghij\r")
        proc.stdin.flush()
        assert until(b"\n0123456789abcdefghij", 5), bytes(out)
        proc.stdin.write(b"exit 4\r")
        proc.stdin.flush()
        assert proc.wait(10) == 4
    finally:
        _reap(proc)


def test_guest_opening_virtio_ports_is_a_qmp_event(build_driver, tmp_path):
    """-device virtconsole/virtserialport with id=: the guest's PORT_OPEN reaches QMP as
    VSERPORT_CHANGE {id, open}, as in QEMU (ports without an id send nothing)."""
    elf = build_driver("virtio_console", defines={"MULTIPORT": 1, "EXPECT_PORTS": 3})
    sock = tmp_path / "qmp.sock"

    async def watch(proc: subprocess.Popen) -> list[dict]:
        qmp = await _qmp(sock, proc)
        events: list[dict] = []
        try:
            await qmp.execute("cont")
            async with asyncio.timeout(30):
                async for ev in qmp.events:
                    events.append(ev)
                    if ev["event"] == "SHUTDOWN":
                        break
            await _disconnect_after_shutdown(qmp)
        finally:
            if qmp.runstate != Runstate.IDLE:
                await qmp.disconnect()
        return events

    proc = subprocess.Popen(
        [*E2KCHAR, str(elf), "-serial", "null", "-serial", "null", "-serial", "null",
         "-chardev", "ringbuf,id=c0", "-device", "virtconsole,chardev=c0,id=vc0",
         "-chardev", "ringbuf,id=p1", "-device", "virtserialport,chardev=p1,name=org.e2k.test,id=vp1",
         "-chardev", "ringbuf,id=p2", "-device", "virtserialport,chardev=p2,name=anon",
         "-qmp", f"unix:{sock},server=on,wait=off", "-S", "--timeout", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        events = asyncio.run(watch(proc))
        proc.wait(30)
    finally:
        _reap(proc)
    assert proc.returncode == 0, proc.stderr.read()
    changes = sorted((e["data"]["id"], e["data"]["open"]) for e in events
                     if e["event"] == "VSERPORT_CHANGE")
    assert changes == [("vc0", True), ("vp1", True)], events
    assert all(set(e["timestamp"]) == {"seconds", "microseconds"} for e in events)
