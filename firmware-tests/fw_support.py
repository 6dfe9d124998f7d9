"""Helpers for the guest-driver suites: a ringbuf that can also feed input, background runs.

`InputRingbuf` is registered under the name "ringbuf" in a test's own registry, so
`reg.new("con", "ringbuf,size=65536")` captures output as usual and `feed(data)` delivers
input the way a real backend does (only while the frontend's can_read() > 0, resumed on
accept_input), so a device never has to drop host input.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2kchar import ChardevRegistry
from e2kchar.chardev.ringbuf import RingbufChardev

RETRY_S = 0.005
ROOT = Path(__file__).resolve().parent.parent


def load_tool(filename: str) -> Any:
    """tools/ is not a package: import tools/FILENAME by path, once per session."""
    name = "e2kchar_tool_" + Path(filename).stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / filename)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class InputRingbuf(RingbufChardev):
    """A ringbuf whose input side the test drives with feed()."""

    def open(self) -> bool:
        self._pending = bytearray()
        self._retry = None
        return super().open()

    def feed(self, data: bytes) -> None:
        """Queue host input; delivered on the I/O thread as the frontend has room."""
        def add() -> None:
            self._pending += data
            self._pump()

        self.ioloop.call_soon(add)

    def pending(self) -> int:
        return len(self._pending)

    def _on_retry(self) -> None:
        self._retry = None
        self._pump()

    def _pump(self) -> None:
        while self._pending:
            n = self.be_can_write()
            if n <= 0:
                break
            chunk = bytes(self._pending[:n])
            del self._pending[:n]
            self.be_write(chunk)
        if self._pending and self._retry is None:
            # accept_input normally wakes us; the timer only guards against a missed wake-up
            self._retry = self.ioloop.call_later(RETRY_S, self._on_retry)

    def chr_accept_input(self) -> None:
        self._pump()

    def chr_update_read_handler(self) -> None:
        self._pump()

    def chr_close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        super().chr_close()


class GatedRingbuf(InputRingbuf):
    """A ringbuf that refuses all output (BlockingIOError) until open_gate(): a backend that
    cannot take more, to see a guest wait on its device's busy/Tx-empty status."""

    def open(self) -> bool:
        self.gate = threading.Event()
        self.refused = 0
        return super().open()

    def chr_write(self, data: memoryview) -> int:
        if not self.gate.is_set():
            self.refused += 1
            raise BlockingIOError
        return super().chr_write(data)

    def chr_arm_watch(self) -> None:
        if self.gate.is_set():
            self.ioloop.call_soon(self.fire_watches)
        # else open_gate() fires the watches

    def open_gate(self) -> None:
        self.gate.set()
        self.ioloop.call_soon(self.fire_watches)


def use_input_ringbuf(reg: ChardevRegistry) -> None:
    reg.register_backend("ringbuf", InputRingbuf)


def ring_bytes(chr_: Any) -> bytes:
    """Everything a ringbuf captured so far (not consumed)."""
    return chr_.peek()


class BackgroundRun:
    """m.run(timeout) on a thread; .result() joins and returns the RunResult."""

    def __init__(self, m: Any, timeout: float) -> None:
        self._res: Any = None
        self._exc: BaseException | None = None
        self._thread = threading.Thread(target=self._go, args=(m, timeout), daemon=True)
        self._thread.start()

    def _go(self, m: Any, timeout: float) -> None:
        try:
            self._res = m.run(timeout=timeout)
        except BaseException as exc:  # re-raised in the test thread
            self._exc = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 30.0) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("machine run did not end")
        if self._exc is not None:
            raise self._exc
        return self._res


def wait_until(reg: ChardevRegistry, pred: Callable[[], bool], timeout: float = 10.0,
               what: str = "condition") -> None:
    if not reg.run_until(pred, timeout):
        raise AssertionError(f"timed out waiting for {what}")


def poll_until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """pred()'s first true value, polled every 20 ms (for things outside a registry:
    files another process writes, sockets)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def file_backend(path: Path, in_path: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"out": str(path)}
    if in_path is not None:
        data["in"] = str(in_path)
    return {"type": "file", "data": data}


def socket_client_backend(port: int) -> dict[str, Any]:
    return {"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(port)}},
        "server": False}}


class LoopbackPeer:
    """A loopback TCP listener the socket backend connects to (client mode); collects what
    it receives on a thread and can send."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.data = bytearray()
        self.conn: socket.socket | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            self.closed.set()
            return
        self.conn = conn
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                with self._lock:
                    self.data += chunk
        except OSError:
            pass
        self.closed.set()

    def received(self) -> bytes:
        with self._lock:
            return bytes(self.data)

    def send(self, data: bytes) -> None:
        assert self.conn is not None, "no connection yet"
        self.conn.sendall(data)

    def close(self) -> None:
        for s in (self.conn, self.listener):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        self._thread.join(5)


class Console:
    """One guest console on a chosen backend kind; .data() is what the host received."""

    def __init__(self, reg: ChardevRegistry, kind: str, ident: str, tmp_path: Path,
                 in_data: bytes | None = None) -> None:
        self.kind = kind
        self.peer = None
        self.path = None
        if kind == "ringbuf":
            self.chr = reg.new(ident, "ringbuf,size=65536")
        elif kind == "file":
            self.path = tmp_path / f"{ident}.out"
            in_path = None
            if in_data is not None:
                in_path = tmp_path / f"{ident}.in"
                in_path.write_bytes(in_data)
            reg.add(ident, file_backend(self.path, in_path))
            self.chr = reg.find(ident)
        elif kind == "socket":
            self.peer = LoopbackPeer()
            reg.add(ident, socket_client_backend(self.peer.port))
            self.chr = reg.find(ident)
            wait_until(reg, lambda: self.peer.conn is not None, 5, "socket connect")
        else:
            raise ValueError(kind)

    def data(self) -> bytes:
        if self.kind == "ringbuf":
            return self.chr.peek()
        if self.kind == "file":
            self.chr.flush()
            return self.path.read_bytes()
        return self.peer.received()

    def feed(self, data: bytes) -> None:
        if self.kind == "ringbuf":
            self.chr.feed(data)
        elif self.kind == "socket":
            self.peer.send(data)
        else:
            raise ValueError("file input is given at creation")

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()


class ConsoleSet:
    """Factory of Consoles on one registry (installs InputRingbuf); closes them all."""

    def __init__(self, reg: ChardevRegistry, tmp_path: Path) -> None:
        use_input_ringbuf(reg)
        self.reg = reg
        self.tmp_path = tmp_path
        self.made: list[Console] = []

    def __call__(self, kind: str, ident: str, in_data: bytes | None = None) -> Console:
        c = Console(self.reg, kind, ident, self.tmp_path, in_data)
        self.made.append(c)
        return c

    def __enter__(self) -> ConsoleSet:
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self.made:
            c.close()


def wait_output(reg: ChardevRegistry, con: Console, expected: bytes,
                timeout: float = 10.0) -> bytes:
    """Wait until con has at least as many bytes as expected (backends flush on the I/O
    thread), then return what it has."""
    reg.run_until(lambda: len(con.data()) >= len(expected), timeout)
    return con.data()
