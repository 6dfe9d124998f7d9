"""Hostile peers, file systems and guests (issue 15): real FIFOs, /dev/full, real signals."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
from e2kchar.devices import IrqLine, Ns16550a, VirtualClock

from e2kchar import CharBackend, ChardevError, ChardevRegistry

THR, LSR = 0, 5
PINGS = 20000


def _polled_bytes(uart: Ns16550a, n: int) -> None:
    for i in range(n):
        while not uart.read(LSR, 1) & 0x20:
            pass
        uart.write(THR, 1, 0x41 + i % 26)


@pytest.mark.parametrize("coalesce", [False, True])
def test_enospc_output_reported_once_and_never_raises(caplog, coalesce):
    """F1: file out=/dev/full (ENOSPC): the guest's writes never raise, the error is logged
    once, the dropped bytes are counted, and closing at exit works."""
    caplog.set_level(logging.WARNING)
    reg = ChardevRegistry(coalesce_output=coalesce)
    try:
        chr_ = reg.new("s", "file,path=/dev/full,append=on")
        uart = Ns16550a(chardev=chr_, irq=IrqLine(), clock=VirtualClock())
        deadline = time.monotonic() + 1.0
        sent = 0
        while time.monotonic() < deadline:
            _polled_bytes(uart, 500)
            sent += 500
        reg.run_until(lambda: chr_.flush(0), 1)
        assert chr_.output_error is not None and "No space" in chr_.output_error
        assert chr_.dropped_bytes == (sent if coalesce else 0)
    finally:
        reg.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 2, [r.getMessage() for r in warnings][:5]
    assert not [r for r in caplog.records if r.exc_info]


def test_epipe_write_all_reports_error_not_exception(caplog):
    """F1: EPIPE on a pipe whose reader is gone, through CharBackend.write_all."""
    caplog.set_level(logging.WARNING)
    r, w = os.pipe()
    os.close(r)
    with ChardevRegistry() as reg:
        reg.add("p", {"type": "file", "data": {"out": f"/proc/self/fd/{w}"}})
        fe = CharBackend(reg.find("p"))
        for _ in range(2000):
            fe.write(b"x" * 100)
        assert fe.write_all(b"y" * 100) in (100, -32)
        assert reg.run_until(lambda: reg.find("p").output_error is not None, 1)
    os.close(w)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 2
    assert not [r for r in caplog.records if r.exc_info]


def _within(seconds: float, fn):
    """Run fn on a thread; fail (instead of hanging the suite) if it takes longer."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for more than {seconds} s"
    return box[0]


def test_fifo_without_peer_never_blocks_open(tmp_path):
    """F2: file out=/in=/logfile= on a FIFO nobody has open returns at once: a clear error
    for output (no reader), input that starts when a writer comes."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with ChardevRegistry() as reg:
        err = _within(2, lambda: reg.add("o", {"type": "file", "data": {"out": fifo}}))
        assert isinstance(err, ChardevError) and "no reader" in str(err)
        err = _within(2, lambda: reg.add("l", {"type": "null", "data": {"logfile": fifo}}))
        assert isinstance(err, ChardevError) and "no reader" in str(err)
        _within(2, lambda: reg.add("i", {"type": "file", "data": {"out": str(tmp_path / "o"),
                                                                  "in": fifo}}))
        got = bytearray()
        fe = CharBackend(reg.find("i"))
        fe.set_handlers(can_read=lambda: 4096, read=got.extend)
        # the loop still serves others meanwhile
        assert _within(2, lambda: reg.add("n", {"type": "null", "data": {}})) is not None
        wfd = _within(2, lambda: os.open(fifo, os.O_WRONLY))
        os.write(wfd, b"hello")
        assert reg.run_until(lambda: bytes(got) == b"hello", 2)
        os.close(wfd)


def test_logfile_reader_that_stops_reading_never_blocks_the_writer(caplog, tmp_path):
    """F3: a logfile FIFO whose reader never reads: output goes on (the writer never blocks),
    the log keeps a bounded backlog, the rest is counted as dropped and logged once."""
    caplog.set_level(logging.WARNING)
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with ChardevRegistry() as reg:
            reg.add("n", {"type": "null", "data": {"logfile": fifo}})
            chr_ = reg.find("n")
            fe = CharBackend(chr_)

            def flood() -> None:
                for _ in range(1000):
                    assert fe.write_all(b"x" * 1000) == 1000

            _within(5, flood)
            log = chr_.logfile
            assert log is not None and 0 < len(log.pending) <= log.BACKLOG
            assert log.dropped >= 1000 * 1000 - 65536 - log.BACKLOG
            got = b""
            while chunk := _nonblocking_read(rfd):
                got += chunk
            fe.write_all(b"y" * 10)  # the reader caught up: the backlog goes out first
            for _ in range(3):
                while chunk := _nonblocking_read(rfd):
                    got += chunk
                fe.write_all(b"\n")  # each write also retries what waits
            assert b"x" * 1000 in got and b"y" * 10 + b"\n" in got
    finally:
        os.close(rfd)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 3, warnings


def _nonblocking_read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_clear_errors_instead_of_tracebacks():
    """L3: -m infk / 1e400k, a lone surrogate for ringbuf-write, a non-ASCII websocket key."""
    from e2kchar.cli import CliError, parse_size

    for text in ("infk", "1e400k", "-infM", "nank"):
        with pytest.raises(CliError, match="invalid RAM size"):
            parse_size(text)
    with ChardevRegistry() as reg:
        reg.new("rb", "ringbuf,size=64")
        with pytest.raises(ChardevError, match="not a valid UTF-8 string"):
            reg.ringbuf_write("rb", "a\ud800b")
        chr_ = reg.new("w", "socket,host=127.0.0.1,port=0,server=on,wait=off,websocket=on")
        for path, key in (("/", "\u043a\u043b\u044e\u0447"), ("/\u00e9", "dGhlIHNhbXBsZSBub25jZQ==")):
            cl = socket.create_connection(("127.0.0.1", int(chr_.addr.port)), timeout=5)
            cl.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                       f"Sec-WebSocket-Key: {key}\r\n\r\n".encode())
            resp = b""
            while chunk := cl.recv(4096):
                resp += chunk
            cl.close()
            assert resp.startswith(b"HTTP/1.1 400 Bad Request\r\n"), resp


def test_websocket_ping_flood_from_a_client_that_never_reads_is_bounded():
    """F6: 20,000 pings of 125 bytes (2.5 MB of pongs owed) from a client that never reads:
    the backlog stays bounded."""
    import base64
    import struct

    from e2kchar.chardev.websocket import encode_frame

    with ChardevRegistry() as reg:
        chr_ = reg.new("w", "socket,host=127.0.0.1,port=0,server=on,wait=off,websocket=on")
        fe = CharBackend(chr_)  # a frontend, so that the server reads the pings at all
        fe.set_handlers(can_read=lambda: 4096, read=lambda data: None)
        cl = socket.socket()
        cl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        cl.connect(("127.0.0.1", int(chr_.addr.port)))
        key = base64.b64encode(os.urandom(16)).decode()
        cl.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
        assert reg.run_until(lambda: chr_.connected, 5)
        ping = encode_frame(0x9, b"p" * 125, struct.pack(">I", 0x12345678))
        cl.settimeout(5)
        sent = 0
        for _ in range(PINGS):
            cl.sendall(ping)  # the server keeps reading: only its pongs back up
            sent += 1
        time.sleep(0.3)
        backlog = chr_.output_backlog
        cl.close()
    assert sent > 5000
    assert backlog <= chr_.WS_PONG_BACKLOG + 200, backlog


def test_hostile_virtqueue_notify_is_bounded():
    """F5: the same head posted 128 times, each chain one descriptor over all of guest RAM
    (8 MiB here, 1 GiB in all): one QUEUE_NOTIFY returns quickly; the rest goes on from
    the I/O loop, which stays responsive, and every chain completes."""
    import struct
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from test_virtio_console import Rig
    from virtio_guest import RAM_BASE, RAM_SIZE

    with ChardevRegistry() as reg:
        rig = Rig(reg, ports=[("c0", "null", None, True)])
        rig.handshake([0])
        q = rig.g.queues[1]
        head = q.add(outs=[b"x"], publish=False)
        q.write_desc(q.desc, head, RAM_BASE, RAM_SIZE, 0, 0)  # the chain covers all of RAM
        posts = min(128, q.num)
        for _ in range(posts - 1):  # (add() posted it once)
            q.publish(head)
        t0 = time.monotonic()
        q.kick()
        took = time.monotonic() - t0
        assert took < 0.5, took
        t0 = time.monotonic()
        assert reg.add("n", {"type": "null", "data": {}}) is not None  # the loop answers
        assert time.monotonic() - t0 < 1
        rig.wait(lambda: q.used_idx() == posts, 60)
        assert rig.con.port(0).stats["budget_yields"] > 0
        assert struct.unpack("<H", rig.mem.read(q.used + 2, 2))[0] == posts


#: for the subprocess scripts below: take every free fd but ``free`` (returned, to close)
_FILL_FDS = """
import os


def fill_fds(free=0):
    fds = []
    try:
        while True:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for _ in range(free):
        os.close(fds.pop())
    return fds
"""

_OUT_OF_FDS = _FILL_FDS + """
import logging, os, sys, time
from e2kchar import ChardevRegistry
from e2kchar.monitor.commands import Monitor
from e2kchar.monitor.qmp import QmpServer
logging.basicConfig(format="%(levelname)s %(message)s")
qmp, sock = sys.argv[1], sys.argv[2]
with ChardevRegistry() as reg:
    server = QmpServer(reg, monitor=Monitor(reg))
    server.listen(f"unix:{qmp},server=on,wait=off")
    reg.new("s", f"socket,path={sock},server=on,wait=off")
    fds = fill_fds()
    print("ready", flush=True)
    sys.stdin.readline()
    for fd in fds:
        os.close(fd)
    server.close()
"""


def test_out_of_fds_accepts_log_a_few_lines_not_thousands(tmp_path):
    """L1: both kinds of listener (QMP on asyncio, a socket chardev) while the process is
    out of fds, with clients connecting for 3 s: a handful of log lines, not thousands."""
    import subprocess
    import sys

    qmp, sock = str(tmp_path / "q.sock"), str(tmp_path / "s.sock")
    proc = subprocess.Popen([sys.executable, "-c", _OUT_OF_FDS, qmp, sock],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        clients = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for path in (qmp, sock):
                c = socket.socket(socket.AF_UNIX)
                c.setblocking(False)
                try:
                    c.connect(path)
                except OSError:
                    pass
                clients.append(c)
            time.sleep(0.01)
            if len(clients) > 150:
                for c in clients[:100]:
                    c.close()
                del clients[:100]
        for c in clients:
            c.close()
        _, err = proc.communicate(b"\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode(errors="replace").splitlines()
    assert len([ln for ln in lines if ln.startswith(("ERROR", "WARNING"))]) <= 6, lines[:40]
    assert len(lines) < 120, lines[:40]


def _ws_client_that_pings_and_never_reads(path: str) -> socket.socket:
    import base64

    cl = socket.socket(socket.AF_UNIX)
    cl.connect(path)
    key = base64.b64encode(os.urandom(16)).decode()
    cl.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    return cl


def _pong_warnings(caplog, label: str) -> int:
    return sum(1 for r in caplog.records
               if "pongs skipped" in r.getMessage() and r.getMessage().startswith(label))


def _flood_until_pong_warning(reg, caplog, label: str, tmp_path) -> int:
    """Ping a never-reading client's chardev until it says it skips pongs."""
    import struct

    from e2kchar.chardev.websocket import encode_frame

    path = str(tmp_path / f"{label}.sock")
    chr_ = reg.new(label, f"socket,path={path},server=on,wait=off,websocket=on")
    fe = CharBackend(chr_)
    fe.set_handlers(can_read=lambda: 4096, read=lambda data: None)
    cl = _ws_client_that_pings_and_never_reads(path)
    assert reg.run_until(lambda: chr_.connected, 5)
    ping = encode_frame(0x9, b"p" * 125, struct.pack(">I", 0x12345678))
    cl.settimeout(5)
    before = _pong_warnings(caplog, label)
    deadline = time.monotonic() + 10
    while _pong_warnings(caplog, label) == before and time.monotonic() < deadline:
        cl.sendall(ping * 500)
    for _ in range(20):  # on past the bound: it holds
        cl.sendall(ping * 500)
    time.sleep(0.1)
    assert chr_.output_backlog <= chr_.WS_PONG_BACKLOG + 200, chr_.output_backlog
    cl.close()
    chr_id = id(chr_)
    fe.deinit()
    reg.remove(label)
    return chr_id


def test_rate_limit_budget_belongs_to_a_cause_not_to_a_reused_object_id(caplog, tmp_path):
    """L1 follow-up: log_limited keyed on id(), and ids of dead chardevs are reused, so a new
    chardev could be silenced by an old one's budget. A new chardev (another id, or the same
    id re-added after chardev-remove) logs its first failure at once."""
    import gc

    caplog.set_level(logging.WARNING, logger="e2kchar")
    with ChardevRegistry() as reg:
        first = _flood_until_pong_warning(reg, caplog, "w1", tmp_path)
        assert _pong_warnings(caplog, "w1") == 1
        gc.collect()  # the old chardev's id is free for the next object of its size
        second = _flood_until_pong_warning(reg, caplog, "w2", tmp_path)
        assert _pong_warnings(caplog, "w2") == 1, (first == second)
        _flood_until_pong_warning(reg, caplog, "w1", tmp_path)  # the same id again, after remove
        assert _pong_warnings(caplog, "w1") == 2


def test_failed_mux_open_logs_no_clean_up_traceback(caplog):
    """L2: a mux whose base is missing or busy failed with its error and then logged an
    AttributeError traceback from its clean-up ("cleanup after failed open")."""
    caplog.set_level(logging.DEBUG, logger="e2kchar")
    with ChardevRegistry() as reg:
        with pytest.raises(ChardevError, match="mux: base chardev nope not found"):
            reg.add("m", {"type": "mux", "data": {"chardev": "nope"}})
        with pytest.raises(ChardevError, match="mux: base chardev nope not found"):
            reg.new("m", "mux,chardev=nope")
        reg.new("b", "ringbuf")
        reg.attach("b")
        with pytest.raises(ChardevError, match="Device 'b' is in use"):
            reg.new("m", "mux,chardev=b")
        assert reg.find("m") is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        caplog.text


_STDIO_OUT_OF_FDS = _FILL_FDS + """
import logging, os, sys
logging.basicConfig(format="%(levelname)s %(message)s")
from e2kchar import ChardevRegistry
with ChardevRegistry() as reg:
    reg.new("warm", "stdio")  # (lazy imports done while fds are there)
    reg.remove("warm")
    for free in (0, 1, 2):
        for spec in ("stdio", "stdio,mux=on"):
            fds = fill_fds(free)
            try:
                reg.new("s", spec)
                result = "opened"
            except Exception as exc:
                result = f"{type(exc).__name__}: {exc}"
            for label in ("s", "s-base"):
                if reg.find(label) is not None:
                    reg.remove(label)
            for fd in fds:
                os.close(fd)
            print(free, spec, result, len(os.listdir("/proc/self/fd")), flush=True)
    reg.new("again", "stdio")  # the stdio claim was given back every time
    print("claim released", flush=True)
"""


@pytest.mark.parametrize("stdin", ["pipe", "devnull", "closed"])
def test_stdio_open_out_of_fds_fails_cleanly(stdin):
    """L2: stdio (plain and mux=on) opened with 0, 1 and 2 free fds and stdin a pipe,
    /dev/null or closed: a ChardevError or a working chardev, never a traceback, no fd
    left behind, and the stdio claim released."""
    import subprocess
    import sys

    kw = {"stdin": subprocess.PIPE if stdin == "pipe" else subprocess.DEVNULL}
    if stdin == "closed":
        kw = {"stdin": None, "pass_fds": (), "preexec_fn": lambda: os.close(0)}
    proc = subprocess.run([sys.executable, "-c", _STDIO_OUT_OF_FDS], capture_output=True,
                          timeout=60, **kw)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err
    lines = out.splitlines()
    assert lines[-1] == "claim released", out
    results = [ln.split(" ", 2)[2].rsplit(" ", 1) for ln in lines[:-1]]
    assert len(results) == 6, out
    assert len({fds for _, fds in results}) == 1, out  # the same fds open after each
    for result, _ in results:
        assert result == "opened" or result.startswith("ChardevError: "), out
    assert any(r.startswith("ChardevError: ") for r, _ in results), out


_BAD_SPECS = ["file,path=/nonexistent/x", "pipe,path=/nonexistent/x",
              "socket,path=/nonexistent/d/s,server=on,wait=off", "socket,path=/nonexistent/d/s",
              "socket,host=127.0.0.1,port=99999", "serial,path=/nonexistent/tty",
              "pty,path=/nonexistent/d/link", "udp,host=127.0.0.1,port=99999",
              "file,path=/", "socket,fd=987654", "socket,fd=0,server=on", "ringbuf,size=3",
              "stdio", "null,logfile=/nonexistent/l", "rfc2217,host=127.0.0.1,port=99999"]


@pytest.mark.parametrize("mux", ["", ",mux=on"])
def test_every_failed_open_is_one_clear_error_and_no_traceback(caplog, mux):
    """L2 sweep: a bad path, port, fd or size for each backend, alone and under a mux (and
    stdio already taken): each is a ChardevError, and the clean-up logs nothing."""
    caplog.set_level(logging.DEBUG, logger="e2kchar")
    with ChardevRegistry() as reg:
        reg.new("taken", "stdio")
        for i, spec in enumerate(_BAD_SPECS):
            with pytest.raises(ChardevError):
                reg.new(f"c{i}", spec + mux)
            assert reg.find(f"c{i}") is None and reg.find(f"c{i}-base") is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        caplog.text


def test_no_rate_limit_cause_is_keyed_by_an_object_id():
    """ratelog's rule: a cause names what failed, never id() (ids of dead objects are
    reused). Every log_limited call in the package is checked."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    calls = 0
    for path in [*root.joinpath("e2kchar").rglob("*.py"), *root.joinpath("devices").rglob("*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "log_limited":
                calls += 1
                cause = node.args[2] if len(node.args) > 2 else None
                assert cause is not None, f"{path}:{node.lineno}"
                ids = [n for n in ast.walk(cause) if isinstance(n, ast.Call)
                       and getattr(n.func, "id", None) == "id"]
                assert not ids, f"{path}:{node.lineno}: a cause keyed by id()"
    assert calls >= 6
