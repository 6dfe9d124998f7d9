"""null, file, pipe, stdio, ringbuf/memory, testdev and logfiles with real files and fifos."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from e2kchar import CharBackend, ChardevError, ChardevEvent


def test_file_out_truncates_unless_append(reg, tmp_path):
    out = tmp_path / "out.txt"
    out.write_bytes(b"old content\n")
    fe = CharBackend(reg.new("f", f"file,path={out}"))
    fe.write_all(b"new\n")
    assert out.read_bytes() == b"new\n"
    fe.deinit(delete=True)
    fe = CharBackend(reg.new("g", f"file,path={out},append=on"))
    fe.write_all(b"more\n")
    assert out.read_bytes() == b"new\nmore\n"


@pytest.mark.parametrize("coalesce", [False, True])
def test_writev_goes_out_in_order_and_reaches_the_logfile_and_taps(tmp_path, coalesce):
    from e2kchar import ChardevRegistry

    out, logf = tmp_path / "out", tmp_path / "log"
    with ChardevRegistry(coalesce_output=coalesce) as reg:
        c = reg.new("f", f"file,path={out},logfile={logf}")
        fe = CharBackend(c)
        seen: list[bytes] = []
        c.add_tap(seen.append)
        big = [memoryview(os.urandom(3000)), memoryview(b""), memoryview(os.urandom(5000))]
        small = [memoryview(b"ab"), memoryview(b"cd")]  # under DIRECT_WRITE_MIN: as write()
        assert fe.writev(small) == 4
        assert fe.writev(big) == 8000  # behind the small ones, even when those coalesce
        assert fe.writev([memoryview(b"!")]) == 1 and fe.writev([]) == 0
        assert c.flush()
        want = b"abcd" + b"".join(big) + b"!"
        assert out.read_bytes() == want and logf.read_bytes() == want
        assert b"".join(seen) == want


def test_fd_writev_goes_in_writes_of_64k_until_one_is_short(reg, tmp_path, monkeypatch):
    import fcntl

    base = str(tmp_path / "p")
    os.mkfifo(base + ".in")
    os.mkfifo(base + ".out")
    reader = os.open(base + ".out", os.O_RDONLY | os.O_NONBLOCK)
    try:
        c = reg.new("p", f"pipe,path={base}")
        assert fcntl.fcntl(c.out_fd, fcntl.F_SETPIPE_SZ, 131072) == 131072
        data = os.urandom(200_000)
        bufs = [memoryview(data)[i:i + 20_000] for i in range(0, len(data), 20_000)]
        calls: list[int] = []
        real = os.writev

        def counting(fd, views):
            calls.append(sum(len(v) for v in views))
            return real(fd, views)

        monkeypatch.setattr(os, "writev", counting)
        took = c.chr_writev(bufs)  # 60,000 + 60,000, then the third is short
        assert 120_000 < took <= 131072
        with pytest.raises(BlockingIOError):
            c.chr_writev(bufs[7:])  # full: nothing went, the error is the caller's
        monkeypatch.undo()
        assert calls == [60_000, 60_000, 60_000, 60_000]
        got = b""
        while len(got) < took:
            got += os.read(reader, 65536)
        assert got == data[:took]
    finally:
        os.close(reader)


def test_file_input_then_closed(reg, tmp_path, recorder):
    src = tmp_path / "in.bin"
    payload = os.urandom(10000)
    src.write_bytes(payload)
    reg.add("f", {"type": "file", "data": {"out": str(tmp_path / "o"), "in": str(src)}})
    rec = recorder(CharBackend(reg.find("f")), room=3000)
    assert reg.run_until(lambda: len(rec.data) == 3000, 2)
    time.sleep(0.05)
    assert len(rec.data) == 3000
    rec.give(100000)
    assert reg.run_until(lambda: ChardevEvent.CLOSED in rec.events, 2)
    assert bytes(rec.data) == payload
    # input-path on the command line does the same
    rec2 = recorder(CharBackend(reg.new("g", f"file,path={tmp_path / 'o2'},input-path={src}")))
    assert reg.run_until(lambda: len(rec2.data) == len(payload), 2)


def test_failed_add_truncates_nothing(reg, tmp_path):
    out = tmp_path / "keep.txt"
    out.write_bytes(b"precious")
    log = tmp_path / "log.txt"
    log.write_bytes(b"log precious")
    with pytest.raises(ChardevError, match=r"Could not open '.*missing.*': No such file"):
        reg.add("f", {"type": "file", "data": {"out": str(out), "in": str(tmp_path / "missing"),
                                                "logfile": str(log)}})
    assert out.read_bytes() == b"precious" and log.read_bytes() == b"log precious"
    assert reg.find("f") is None
    # files the failed add created are gone again
    with pytest.raises(ChardevError, match=r"Could not open '.*missing.*': No such file"):
        reg.add("f", {"type": "file", "data": {"out": str(tmp_path / "new-out"),
                                                "in": str(tmp_path / "missing"),
                                                "logfile": str(tmp_path / "new-log")}})
    with pytest.raises(ChardevError, match="size of ringbuf chardev must be power of two"):
        reg.new("f", f"ringbuf,size=3,logfile={tmp_path / 'new-log'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "log.txt"]
    with pytest.raises(ChardevError, match=r"Could not open '/nonexistent/x': No such file"):
        reg.new("f", "file,path=/nonexistent/x")
    with pytest.raises(ChardevError, match=r"Unable to open logfile /nonexistent/l: No such"):
        reg.new("f", "null,logfile=/nonexistent/l")
    # a path the OS cannot take at all is the same kind of error, never a ValueError
    for spec in ("file,path=/tmp/a\0b", "pipe,path=/tmp/a\0b", "null,logfile=/tmp/a\0b"):
        with pytest.raises(ChardevError, match="embedded null byte"):
            reg.new("f", spec)
    assert reg.query() == []


def test_pipe_in_out_pair_and_single_path_fallback(reg, tmp_path, recorder):
    base = tmp_path / "p"
    os.mkfifo(f"{base}.in")
    os.mkfifo(f"{base}.out")
    wr = os.open(f"{base}.in", os.O_RDWR)
    rd = os.open(f"{base}.out", os.O_RDWR)
    try:
        rec = recorder(CharBackend(reg.new("p", f"pipe,path={base}")))
        os.write(wr, b"ping")
        assert reg.run_until(lambda: rec.data == b"ping", 2)
        rec.fe.write_all(b"pong")
        assert os.read(rd, 10) == b"pong"
    finally:
        os.close(wr)
        os.close(rd)
    single = tmp_path / "single"
    os.mkfifo(single)
    rec = recorder(CharBackend(reg.new("q", f"pipe:{single}")))
    rec.fe.write_all(b"loop")  # the same fifo both ways: our own output comes back
    assert reg.run_until(lambda: rec.data == b"loop", 2)
    with pytest.raises(ChardevError, match="Could not open"):
        reg.new("r", f"pipe,path={tmp_path / 'none'}")


def test_ringbuf_overwrites_oldest(reg):
    fe = CharBackend(reg.new("r", "ringbuf,size=8"))
    fe.write_all(b"0123456789AB")
    assert reg.ringbuf_read("r", 100) == "456789AB"
    assert reg.ringbuf_read("r", 100) == ""
    reg.ringbuf_write("r", "xyz")
    reg.ringbuf_write("r", "AAEC/w==", format="base64")
    assert reg.ringbuf_read("r", 2) == "xy"
    assert reg.ringbuf_read("r", 10, format="base64") == "egABAv8="  # z 00 01 02 ff
    fe.write_all(b"a\0b")
    assert reg.ringbuf_read("r", 10) == "a"  # utf8: a NUL ends the C string (as QEMU)


def test_ringbuf_errors(reg):
    for size in (0, 3, 100):
        with pytest.raises(ChardevError, match="size of ringbuf chardev must be power of two"):
            reg.add("r", {"type": "ringbuf", "data": {"size": size}})
    reg.new("m", "memory,size=16")
    reg.new("n", "null")
    with pytest.raises(ChardevError, match="Device 'x' not found"):
        reg.ringbuf_read("x", 1)
    with pytest.raises(ChardevError, match="n is not a ringbuf device"):
        reg.ringbuf_write("n", "a")
    with pytest.raises(ChardevError, match="size must be greater than zero"):
        reg.ringbuf_read("m", 0)
    with pytest.raises(ChardevError, match="Base64 data contains invalid characters"):
        reg.ringbuf_write("m", "!!!", format="base64")
    reg.ringbuf_write("m", "memory works")
    assert reg.ringbuf_read("m", 100) == "memory works"
    assert reg.query()[0] == {"label": "m", "filename": "memory", "frontend-open": False}


def test_testdev_exit_status(reg):
    statuses = []
    reg.on_exit(statuses.append)
    fe = CharBackend(reg.new("t", "testdev"))
    fe.write_all(b"  1")
    fe.write_all(b"2 ")
    assert statuses == []
    fe.write_all(b"q")
    fe.write_all(b"xq")
    assert statuses == [25, 1]


def test_logfile_mirrors_accepted_output(reg, tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"stale")
    fe = CharBackend(reg.new("r", f"ringbuf,size=4,logfile={log}"))
    fe.write_all(b"hello ring\n")
    reg.ringbuf_write("r", "injected")  # not logged, as QEMU
    assert log.read_bytes() == b"hello ring\n"
    fe.deinit(delete=True)
    fe = CharBackend(reg.new("r2", f"null,logfile={log},logappend=on,logtimestamp=on"))
    fe.write_all(b"one\ntw")
    fe.write_all(b"o\nthree")
    lines = log.read_bytes().split(b"\n")
    assert lines[0] == b"hello ring"
    stamp = rb"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "
    assert re.fullmatch(stamp + b"one", lines[1])
    assert re.fullmatch(stamp + b"two", lines[2])
    assert re.fullmatch(stamp + b"three", lines[3])


STDIO_CHILD = textwrap.dedent("""
    import os, sys, termios
    from e2kchar import ChardevRegistry, CharBackend, ChardevError
    before = termios.tcgetattr(0)
    reg = ChardevRegistry()
    chr_ = reg.new("s", "stdio,signal=off")
    try:
        reg.new("t", "stdio")
    except ChardevError as exc:
        print("second:", exc, flush=True)
    raw = termios.tcgetattr(0)
    print("raw", bool(raw[3] & termios.ICANON), bool(raw[3] & termios.ECHO),
          bool(raw[3] & termios.ISIG), flush=True)
    got = []
    fe = CharBackend(chr_)
    fe.set_handlers(lambda: 100, got.append)
    fe.write_all(b"ready\\n")
    reg.run_until(lambda: b"".join(got).endswith(b"!"), 5)
    print("input", b"".join(got), flush=True)
    reg.close()
    print("restored", termios.tcgetattr(0) == before, flush=True)
""")


def test_stdio_raw_mode_and_restore(tmp_path):
    pid, master = pty.fork()
    if pid == 0:  # child: stdin/stdout are the pty slave
        os.execv(sys.executable, [sys.executable, "-c", STDIO_CHILD])
    out = bytearray()
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if b"ready" in out and not sent:
            os.write(master, b"\x03abc!")  # Ctrl-C reaches the guest with signal=off
            sent = True
    os.waitpid(pid, 0)
    os.close(master)
    text = out.decode(errors="replace")
    assert "second: cannot use stdio by multiple character devices" in text
    assert "raw False False False" in text
    assert "input b'\\x03abc!'" in text
    assert "restored True" in text


def test_stdio_without_a_terminal(tmp_path):
    code = ("from e2kchar import ChardevRegistry, CharBackend\n"
            "reg = ChardevRegistry(); fe = CharBackend(reg.new('s', 'stdio'))\n"
            "fe.write_all(b'out ok\\n'); reg.close()\n")
    proc = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == b"out ok\n", proc.stderr


def test_write_from_many_threads_is_serialised(reg, tmp_path):
    out = tmp_path / "o"
    fe = CharBackend(reg.new("f", f"file,path={out}"))

    def writer(tag: bytes) -> None:
        for _ in range(500):
            fe.write_all(tag * 16 + b"\n")

    threads = [threading.Thread(target=writer, args=(bytes([65 + i]),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2000 and all(len(set(line)) == 1 for line in lines)
