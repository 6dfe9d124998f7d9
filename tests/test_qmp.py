"""QMP server: driven by the real qemu.qmp clients, qmp-shell, and raw sockets for bad input."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qemu.qmp import ExecuteError, QMPClient
from qemu.qmp.legacy import QEMUMonitorProtocol

from e2kchar import CharBackend, ChardevEvent
from e2kchar.monitor import JsonStreamSplitter, QmpError, QmpServer
from e2kchar.monitor.qmp import MessageTooLarge

REQUIRED = {"qmp_capabilities", "query-version", "query-commands", "query-status", "stop",
            "cont", "quit", "system_reset", "chardev-add", "chardev-change", "chardev-remove",
            "chardev-send-break", "query-chardev", "query-chardev-backends", "ringbuf-write",
            "ringbuf-read"}


class FakeVm:
    """A VmControl that records calls; stop() can be held open with `gate`."""

    def __init__(self) -> None:
        self.state = "running"
        self.calls: list[str] = []
        self.gate: threading.Event | None = None
        self.stop_entered = threading.Event()
        self.quit_called = threading.Event()

    def status(self) -> str:
        return self.state

    def stop(self) -> None:
        self.stop_entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.calls.append("stop")
        self.state = "paused"

    def cont(self) -> None:
        self.calls.append("cont")
        self.state = "running"

    def system_reset(self) -> None:
        self.calls.append("system_reset")

    def quit(self) -> None:
        self.calls.append("quit")
        self.state = "shutdown"
        self.quit_called.set()


class Frontend:
    """A device-like frontend that supports hotswap (re-registers in be_change)."""

    def __init__(self, chr_: Any) -> None:
        self.fe = CharBackend(chr_)
        self.events: list[ChardevEvent] = []
        self.veto = False
        self.changes = 0
        self.install()

    def install(self) -> None:
        self.fe.set_handlers(lambda: 0, lambda data: None, self.events.append, self.be_change)

    def be_change(self) -> int:
        if self.veto:
            return -1
        self.changes += 1
        self.install()
        return 0


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="qmpt")  # short: unix socket paths are limited to 107 bytes
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def vm():
    return FakeVm()


@pytest.fixture
def server(reg, vm, sockdir):
    srv = QmpServer(reg, vm)
    srv.listen(f"unix:{sockdir}/qmp.sock,server=on,wait=off")
    yield srv
    srv.close()


class Raw:
    """A bare socket client: exact bytes in, exact lines out."""

    def __init__(self, address: Any) -> None:
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.f = self.sock.makefile("rb")

    def line(self) -> bytes:
        line = self.f.readline()
        assert line.endswith(b"\r\n"), line
        return line

    def recv(self) -> dict[str, Any]:
        return json.loads(self.line())

    def send(self, data: bytes | dict[str, Any]) -> None:
        if isinstance(data, dict):
            data = json.dumps(data).encode()
        self.sock.sendall(data)

    def cmd(self, name: str, args: dict[str, Any] | None = None, **extra: Any) -> dict:
        msg: dict[str, Any] = {"execute": name, **extra}
        if args is not None:
            msg["arguments"] = args
        self.send(msg)
        while True:
            reply = self.recv()
            if "event" not in reply:
                return reply

    def negotiate(self) -> dict[str, Any]:
        greeting = self.recv()
        assert self.cmd("qmp_capabilities") == {"return": {}}
        return greeting

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# ---------------------------------------------------------------------------------------
# greeting, negotiation, framing


def test_greeting_negotiation_and_framing(server):
    c = Raw(server.address)
    raw = c.line()
    greeting = json.loads(raw)
    assert set(greeting) == {"QMP"}
    assert greeting["QMP"]["capabilities"] == []  # no "oob"
    assert set(greeting["QMP"]["version"]["qemu"]) == {"major", "minor", "micro"}
    # before negotiation every other command is CommandNotFound, id echoed
    reply = c.cmd("query-chardev", id="x1")
    assert reply["error"]["class"] == "CommandNotFound"
    assert reply["id"] == "x1"
    assert c.cmd("qmp_capabilities", {}, id=7) == {"return": {}, "id": 7}
    again = c.cmd("qmp_capabilities")
    assert again["error"] == {"class": "CommandNotFound", "desc":
                              "Capabilities negotiation is already complete, command ignored"}
    # two requests in one write, no separator at all, answered in order
    c.send(b'{"execute":"query-version","id":1}{"execute":"query-chardev","id":2}')
    r1, r2 = c.recv(), c.recv()
    assert (r1["id"], r2["id"]) == (1, 2)
    assert r1["return"]["qemu"] == greeting["QMP"]["version"]["qemu"]
    # non-ASCII goes out escaped; single-quoted strings are accepted as QEMU does
    c.send("{'execute': 'query-version', 'id': 'h\u00e9'}".encode())
    line = c.line()
    assert line.isascii() and b"\\u00e9" in line
    c.close()


def test_oob_capability_refused(server):
    c = Raw(server.address)
    c.recv()
    reply = c.cmd("qmp_capabilities", {"enable": ["oob"]})
    assert reply["error"]["desc"] == "Capability 'oob' not available"
    reply = c.cmd("qmp_capabilities", {"enable": ["bogus"]})
    assert reply["error"]["class"] == "GenericError"
    assert c.cmd("qmp_capabilities", {"enable": []}) == {"return": {}}
    c.close()


def test_unix_socket_is_private_and_removed(reg, sockdir):
    path = sockdir / "priv.sock"
    path.write_text("not a socket")
    srv = QmpServer(reg)
    with pytest.raises(Exception, match="Failed to bind"):
        srv.listen(f"unix:{path},server=on,wait=off")
    path.unlink()
    srv.listen(f"unix:{path},server=on,wait=off")
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert [p for p in os.listdir(sockdir)] == ["priv.sock"]  # no temp residue
    srv.close()
    assert not path.exists()


def test_unix_socket_file_replaced_meanwhile_is_not_removed(reg, sockdir):
    path = sockdir / "swapped.sock"
    srv = QmpServer(reg)
    srv.listen(f"unix:{path},server=on,wait=off")
    path.unlink()
    path.write_text("someone else's file")  # put there after we bound the socket
    srv.close()
    assert path.read_text() == "someone else's file"


def test_tcp_defaults_to_loopback(reg):
    srv = QmpServer(reg)
    host, port = srv.listen("tcp::0,server=on,wait=off")
    assert host == "127.0.0.1" and port > 0
    q = QEMUMonitorProtocol((host, port))
    q.connect()
    assert q.cmd("query-version")["qemu"]["major"] >= 0
    q.close()
    srv.close()


# ---------------------------------------------------------------------------------------
# the real clients


def test_qmpclient_queries(server, reg):
    reg.new("rb", "ringbuf,size=1024")

    async def go() -> None:
        qmp = QMPClient("test")
        await qmp.connect(server.address)
        names = {c["name"] for c in await qmp.execute("query-commands")}
        assert REQUIRED <= names
        extras = names - REQUIRED - {"human-monitor-command"}
        assert extras and all(n.startswith(("x-", "__e2kchar-")) for n in extras)
        chardevs = await qmp.execute("query-chardev")
        assert {"label": "rb", "filename": "ringbuf", "frontend-open": False} in chardevs
        backends = {b["name"] for b in await qmp.execute("query-chardev-backends")}
        assert {"null", "file", "ringbuf", "mux"} <= backends
        assert await qmp.execute("query-status") == {"running": True, "status": "running"}
        await qmp.disconnect()

    run(go())


def test_chardev_add_change_remove_under_frontend(server, reg, tmp_path):
    log_path = tmp_path / "out.log"

    async def go() -> None:
        qmp = QMPClient("test")
        await qmp.connect(server.address)
        assert await qmp.execute("chardev-add", {
            "id": "con", "backend": {"type": "ringbuf", "data": {"size": 256}}}) == {}
        fe = Frontend(reg.find("con"))
        await asyncio.to_thread(fe.fe.write_all, b"into the ring\n")
        assert await qmp.execute("ringbuf-read", {"device": "con", "size": 100}) == \
            "into the ring\n"
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("chardev-remove", {"id": "con"})
        assert str(err.value) == "Chardev 'con' is busy"
        # ringbuf -> file under the frontend
        ret = await qmp.execute("chardev-change", {
            "id": "con", "backend": {"type": "file", "data": {"out": str(log_path)}}})
        assert ret == {} and fe.changes == 1
        assert fe.fe.chardev is reg.find("con")
        await asyncio.to_thread(fe.fe.write_all, b"into the file\n")
        assert log_path.read_bytes() == b"into the file\n"
        info = {c["label"]: c for c in await qmp.execute("query-chardev")}
        assert info["con"]["filename"].startswith("file")
        # a veto rolls back: the file keeps working
        fe.veto = True
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("chardev-change", {"id": "con",
                                                 "backend": {"type": "ringbuf"}})
        assert str(err.value) == "Chardev 'con' change failed"
        await asyncio.to_thread(fe.fe.write_all, b"still the file\n")
        assert log_path.read_bytes() == b"into the file\nstill the file\n"
        # and back to a ringbuf
        fe.veto = False
        await qmp.execute("chardev-change", {"id": "con", "backend": {"type": "ringbuf"}})
        await asyncio.to_thread(fe.fe.write_all, b"ring again")
        assert await qmp.execute("ringbuf-read", {"device": "con", "size": 64}) == "ring again"
        await asyncio.to_thread(fe.fe.deinit)
        assert await qmp.execute("chardev-remove", {"id": "con"}) == {}
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("chardev-remove", {"id": "con"})
        assert str(err.value) == "Chardev 'con' not found"
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("chardev-change", {"id": "con", "backend": {"type": "null"}})
        assert str(err.value) == "Chardev 'con' does not exist"
        await qmp.disconnect()

    run(go())


def test_chardev_add_errors(server, reg):
    async def go() -> None:
        qmp = QMPClient("test")
        await qmp.connect(server.address)
        await qmp.execute("chardev-add", {"id": "a", "backend": {"type": "null"}})
        cases = [
            ({"id": "a", "backend": {"type": "null"}},
             "Failed to add chardev 'a': attempt to add duplicate property 'a' to object "
             "(type 'container')"),
            ({"id": "b", "backend": {"type": "nonesuch"}},
             "Failed to add chardev 'b': 'nonesuch' is not a valid char driver name"),
            ({"id": "b", "backend": {"type": "file", "data": {}}},
             "Parameter 'backend.data.out' is missing"),
            ({"id": "b", "backend": {"type": "ringbuf", "data": {"size": 100}}},
             "Failed to add chardev 'b': size of ringbuf chardev must be power of two"),
            ({"id": "b"}, "Parameter 'backend' is missing"),
            ({"id": "b", "backend": "null"},
             "Invalid parameter type for 'backend', expected: object"),
        ]
        for args, desc in cases:
            with pytest.raises(ExecuteError) as err:
                await qmp.execute("chardev-add", args)
            assert (err.value.error_class, str(err.value)) == ("GenericError", desc), args
        assert reg.find("b") is None  # nothing half-created
        await qmp.disconnect()

    run(go())


def test_ringbuf_read_write_formats(server, reg):
    reg.new("rb", "ringbuf,size=64")
    reg.new("nul", "null")
    q = QEMUMonitorProtocol(server.address)
    q.connect()
    q.cmd("ringbuf-write", device="rb", data="caf\u00e9 \u2603")
    assert q.cmd("ringbuf-read", device="rb", size=100) == "caf\u00e9 \u2603"
    q.cmd("ringbuf-write", device="rb", data="AAEC/w==", format="base64")
    assert q.cmd("ringbuf-read", device="rb", size=100, format="base64") == "AAEC/w=="
    errors = [
        ({"device": "rb", "data": "!!", "format": "base64"},
         "ringbuf-write", "Base64 data contains invalid characters"),
        ({"device": "nope", "data": "x"}, "ringbuf-write", "Device 'nope' not found"),
        ({"device": "nul", "data": "x"}, "ringbuf-write", "nul is not a ringbuf device"),
        ({"device": "rb", "size": 0}, "ringbuf-read", "size must be greater than zero"),
        ({"device": "rb", "size": "4"}, "ringbuf-read",
         "Invalid parameter type for 'size', expected: integer"),
        ({"device": "rb", "size": 4, "format": "hex"}, "ringbuf-read",
         "Parameter 'format' does not accept value 'hex'"),
    ]
    for args, name, desc in errors:
        reply = q.cmd_obj({"execute": name, "arguments": args})
        assert reply["error"] == {"class": "GenericError", "desc": desc}, args
    q.close()


def test_send_break_reaches_frontend(server, reg):
    fe = Frontend(reg.new("ser", "null"))
    q = QEMUMonitorProtocol(server.address)
    q.connect()
    assert q.cmd("chardev-send-break", id="ser") == {}
    assert reg.run_until(lambda: ChardevEvent.BREAK in fe.events, 5)
    assert q.cmd_obj({"execute": "chardev-send-break", "arguments": {"id": "zz"}})[
        "error"]["desc"] == "Chardev 'zz' not found"
    q.close()


def test_error_classes_and_texts(server):
    c = Raw(server.address)
    c.negotiate()
    cases = [
        ({"execute": "foo"}, "CommandNotFound", "The command foo has not been found"),
        ({"execute": "chardev-remove", "arguments": {}}, "GenericError",
         "Parameter 'id' is missing"),
        ({"execute": "chardev-remove", "arguments": {"id": 1}}, "GenericError",
         "Invalid parameter type for 'id', expected: string"),
        ({"execute": "chardev-remove", "arguments": {"id": "x", "foo": 1}}, "GenericError",
         "Parameter 'foo' is unexpected"),
        ({"execute": "query-chardev", "arguments": {"foo": 1}}, "GenericError",
         "Parameter 'foo' is unexpected"),
        ({"execute": "query-chardev", "arguments": []}, "GenericError",
         "QMP input member 'arguments' must be an object"),
        ({"execute": 5}, "GenericError", "QMP input member 'execute' must be a string"),
        ({"arguments": {}}, "GenericError", "QMP input lacks member 'execute'"),
        ({"execute": "query-chardev", "bogus": 1}, "GenericError",
         "QMP input member 'bogus' is unexpected"),
        ({"exec-oob": "query-chardev"}, "GenericError",
         "The command query-chardev does not support OOB"),
    ]
    for i, (msg, cls, desc) in enumerate(cases):
        c.send({**msg, "id": i})
        reply = c.recv()
        assert reply == {"error": {"class": cls, "desc": desc}, "id": i}, msg
    c.send(b"[1, 2]")
    assert c.recv()["error"]["desc"] == "QMP input must be a JSON object"
    c.close()


# ---------------------------------------------------------------------------------------
# hostile and broken clients


def test_garbage_then_recovery(server):
    c = Raw(server.address)
    c.negotiate()
    other = Raw(server.address)
    other.negotiate()
    c.send(b'{"execute": }')
    err = c.recv()["error"]
    assert err["class"] == "GenericError" and err["desc"].startswith("JSON parse error, ")
    c.send(b"}")
    assert c.recv()["error"]["desc"].startswith("JSON parse error, ")
    # the spec's resync trick: 0xFF discards a half-sent message
    c.send(b'{"execute": "query-chardev", "id": "lost"\xff')
    assert c.recv()["error"]["desc"].startswith("JSON parse error, ")
    c.send(b'{"execute": "query-version", "id": "dup", "id": 2}')
    assert "duplicate key" in c.recv()["error"]["desc"]
    c.send(b'{"execute": "query-version", "arguments": {"x": NaN}}')
    assert c.recv()["error"]["desc"].startswith("JSON parse error, ")
    c.send(b'{"execute": "query-chardev", "id": "\xc3\x28"}')
    assert c.recv()["error"]["desc"].startswith("JSON parse error, ")
    assert "return" in c.cmd("query-chardev", id="ok")
    assert "return" in other.cmd("query-version")
    c.close()
    other.close()


def test_oversized_message_drops_only_that_client(server):
    good = Raw(server.address)
    good.negotiate()
    bad = Raw(server.address)
    bad.negotiate()
    chunk = b'{"execute": "ringbuf-write", "arguments": {"device": "x", "data": "'
    try:
        bad.send(chunk + b"a" * (1 << 20) + b'"}}')
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = bad.recv()
    assert reply["error"]["class"] == "GenericError" and "limit" in reply["error"]["desc"]
    assert bad.f.readline() == b""  # closed
    bad.close()
    deep = Raw(server.address)
    deep.negotiate()
    deep.send(b"[" * 5000)
    assert "limit" in deep.recv()["error"]["desc"]
    assert deep.f.readline() == b""
    deep.close()
    assert "return" in good.cmd("query-chardev")
    good.close()


def test_client_that_never_reads_is_dropped(reg, sockdir):
    srv = QmpServer(reg, max_output=32 * 1024)
    srv.listen(f"unix:{sockdir}/q.sock,server=on,wait=off")
    lazy = Raw(srv.address)
    lazy.negotiate()
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    good = Raw(srv.address)
    good.negotiate()
    seen: list[str] = []

    def drain() -> None:  # the well-behaved client reads everything
        try:
            while line := good.f.readline():
                seen.append(json.loads(line).get("event", "reply"))
        except (OSError, ValueError):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert reg.run_until(lambda: srv.clients == 2, 5)
    payload = {"blob": "x" * 1000}
    deadline = time.monotonic() + 20
    while srv.clients == 2 and time.monotonic() < deadline:
        for _ in range(50):
            srv.emit_event("TEST_FLOOD", payload)
        time.sleep(0.005)
    assert srv.clients == 1, "the non-reading client was not dropped"
    srv.emit_event("AFTER", {"n": 1})
    assert reg.run_until(lambda: "AFTER" in seen, 10)
    good.send({"execute": "query-version"})
    assert reg.run_until(lambda: seen[-1] == "reply", 10)
    good.sock.shutdown(socket.SHUT_RDWR)
    reader.join(5)
    good.close()
    lazy.close()
    srv.close()


def test_disconnect_mid_command_does_not_hurt(server, vm):
    vm.gate = threading.Event()
    c = Raw(server.address)
    c.negotiate()
    c.send({"execute": "stop", "id": 1})
    assert vm.stop_entered.wait(5)
    c.close()  # gone while the machine is pausing
    vm.gate.set()
    q = QEMUMonitorProtocol(server.address)
    q.connect()
    assert q.cmd("query-status") == {"running": False, "status": "paused"}
    assert vm.calls == ["stop"]
    assert q.cmd("cont") == {}
    assert vm.calls == ["stop", "cont"]
    q.close()


def test_close_lets_a_running_command_answer(server, vm):
    """The machine ends while a command runs (a guest that exits right after `cont` resumed
    it): the server's close waits for that command's reply, then hangs up."""
    vm.gate = threading.Event()
    c = Raw(server.address)
    c.negotiate()
    c.send({"execute": "stop", "id": 1})
    assert vm.stop_entered.wait(5)
    closing = threading.Thread(target=server.close)
    closing.start()
    deadline = time.monotonic() + 10
    while os.path.exists(server.address):  # the close has begun: no new clients
        assert time.monotonic() < deadline
        time.sleep(0.01)
    vm.gate.set()
    assert c.recv()["event"] == "STOP"
    assert c.recv() == {"return": {}, "id": 1}
    assert c.f.readline() == b""  # then the server hangs up
    closing.join(10)
    assert not closing.is_alive()
    c.close()


def test_several_clients_at_once(server, reg):
    reg.new("rb", "ringbuf,size=65536")

    async def client(n: int) -> list[str]:
        qmp = QMPClient(f"c{n}")
        await qmp.connect(server.address)
        got = []
        for i in range(20):
            await qmp.execute("ringbuf-write", {"device": "rb", "data": f"<{n}:{i}>"})
            got.append((await qmp.execute("query-version"))["package"])
        await qmp.disconnect()
        return got

    async def go() -> None:
        results = await asyncio.gather(*(client(n) for n in range(5)))
        assert all(len(r) == 20 for r in results)

    run(go())
    data = reg.ringbuf_read("rb", 65536)
    for n in range(5):
        for i in range(20):
            assert f"<{n}:{i}>" in data


# ---------------------------------------------------------------------------------------
# events


def test_events_with_timestamps(server, vm):
    async def go() -> None:
        qmp = QMPClient("ev")
        watcher = QMPClient("watch")
        await qmp.connect(server.address)
        await watcher.connect(server.address)
        # a client that has not negotiated gets no events
        silent = Raw(server.address)
        silent.recv()
        with qmp.listener() as listener, watcher.listener() as wl:
            assert await qmp.execute("stop") == {}
            assert await qmp.execute("stop") == {}  # already paused: no second STOP
            assert await qmp.execute("cont") == {}
            assert await qmp.execute("system_reset") == {}
            await asyncio.to_thread(server.emit_event, "GUEST_THING", {"k": 1})
            assert await qmp.execute("quit") == {}
            events = []
            while len(events) < 5:
                events.append(await asyncio.wait_for(listener.get(), 5))
            seen = [await asyncio.wait_for(wl.get(), 5) for _ in range(5)]
        names = [e["event"] for e in events]
        assert names == ["STOP", "RESUME", "RESET", "GUEST_THING", "SHUTDOWN"]
        assert [e["event"] for e in seen] == names
        now = time.time()
        for ev in events:
            ts = ev["timestamp"]
            assert abs(ts["seconds"] + ts["microseconds"] / 1e6 - now) < 60
            assert 0 <= ts["microseconds"] < 1_000_000
        assert "data" not in events[0] and "data" not in events[1]
        assert events[2]["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
        assert events[4]["data"] == {"guest": False, "reason": "host-qmp-quit"}
        assert await asyncio.to_thread(vm.quit_called.wait, 5)
        assert vm.calls == ["stop", "cont", "system_reset", "quit"]
        silent.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            silent.f.readline()
        silent.close()
        await watcher.disconnect()
        await qmp.disconnect()

    run(go())


def test_cont_after_shutdown_needs_reset(server, vm):
    vm.state = "shutdown"
    q = QEMUMonitorProtocol(server.address)
    q.connect()
    reply = q.cmd_obj({"execute": "cont"})
    assert reply["error"]["desc"] == "Resetting the Virtual Machine is required"
    assert vm.calls == []
    q.close()


def test_no_machine_attached(reg, sockdir):
    srv = QmpServer(reg)
    srv.listen(f"unix:{sockdir}/q.sock,server=on,wait=off")
    q = QEMUMonitorProtocol(srv.address)
    q.connect()
    assert q.cmd_obj({"execute": "stop"})["error"]["desc"] == \
        "No machine is attached to this monitor"
    assert isinstance(q.cmd("query-chardev"), list)
    q.close()
    srv.close()


def test_reverse_mode_connects_out(reg, sockdir):
    path = str(sockdir / "rev.sock")

    async def go() -> None:
        qmp = QMPClient("rev")
        await qmp.start_server(path)
        srv = QmpServer(reg)
        connect = asyncio.create_task(asyncio.to_thread(
            srv.listen, f"unix:{path},server=off"))
        await qmp.accept()
        await connect
        assert (await qmp.execute("query-version"))["qemu"]
        await qmp.disconnect()
        await asyncio.to_thread(srv.close)

    run(go())


# ---------------------------------------------------------------------------------------
# qmp-shell as a subprocess


def _qmp_shell(args: list[str], stdin: str, home: Path) -> str:
    shell = shutil.which("qmp-shell") or str(Path(sys.executable).parent / "qmp-shell")
    proc = subprocess.run([shell, *args], input=stdin, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_qmp_shell(server, reg, tmp_path):
    reg.new("rb", "ringbuf,size=256")
    out = _qmp_shell([server.address], "query-chardev\n"
                     "ringbuf-write device=rb data=hello\n"
                     "ringbuf-read device=rb size=10\n"
                     "chardev-remove id=nope\n"
                     "query-status\n", tmp_path)
    assert "Connected to QEMU 10.1.0" in out
    replies = [json.loads(line[line.index("{"):]) for line in out.splitlines() if "{" in line]
    assert replies[0]["return"] == [{"label": "rb", "filename": "ringbuf",
                                     "frontend-open": False}]
    assert replies[1] == {"return": {}}
    assert replies[2] == {"return": "hello"}
    assert replies[3]["error"] == {"class": "GenericError", "desc": "Chardev 'nope' not found"}
    assert replies[4]["return"] == {"running": True, "status": "running"}


def test_qmp_shell_hmp_mode(server, reg, tmp_path):
    reg.new("rb", "ringbuf,size=256")
    out = _qmp_shell(["-H", server.address], "info chardev\nstop\ninfo status\nbogus\n",
                     tmp_path)
    assert "rb: filename=ringbuf" in out
    assert "VM status: paused" in out
    assert "unknown command: 'bogus'" in out


# ---------------------------------------------------------------------------------------
# the framing parser


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 62), 1 << 62) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), _json, max_size=4), min_size=1,
                max_size=5),
       st.lists(st.integers(1, 50), min_size=1, max_size=20), st.booleans())
def test_splitter_reassembles_any_chunking(objs, cuts, ascii_only):
    stream = b"".join(json.dumps(o, ensure_ascii=ascii_only).encode() for o in objs)
    sp = JsonStreamSplitter()
    out: list[Any] = []
    pos = 0
    for cut in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        out += sp.feed(stream[pos:pos + cut])
        pos += cut
        if pos >= len(stream):
            break
    out += sp.feed(stream[pos:])
    assert [json.loads(x) for x in out] == objs


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_splitter_survives_any_bytes(data):
    sp = JsonStreamSplitter(max_size=1000, max_depth=16)
    try:
        items = sp.feed(data)
    except MessageTooLarge:
        return
    for item in items:
        assert isinstance(item, bytes | QmpError)
    assert sp.pending <= 1000 + len(data)


def test_client_limit_and_half_sent_message(reg, sockdir):
    srv = QmpServer(reg, max_clients=2)
    srv.listen(f"unix:{sockdir}/q.sock,server=on,wait=off")
    a, b = Raw(srv.address), Raw(srv.address)
    a.recv()
    b.recv()
    c = Raw(srv.address)
    assert c.f.readline() == b""  # refused: closed without a greeting
    c.close()
    b.send(b'{"execute": "qmp_capa')  # and gone half-way through a message
    b.close()
    assert reg.run_until(lambda: srv.clients == 1, 5)
    d = Raw(srv.address)
    d.negotiate()
    assert "return" in d.cmd("query-chardev")
    a.close()
    d.close()
    srv.close()


def test_ringbuf_peek_extension_keeps_the_data(server, reg):
    reg.new("rb", "ringbuf,size=64")
    q = QEMUMonitorProtocol(server.address)
    q.connect()
    q.cmd("ringbuf-write", device="rb", data="boot log")
    assert q.cmd("__e2kchar-ringbuf-peek", device="rb") == "boot log"
    assert q.cmd("__e2kchar-ringbuf-peek", device="rb", size=4, format="base64") == "Ym9vdA=="
    assert q.cmd("ringbuf-read", device="rb", size=64) == "boot log"  # still all there
    assert q.cmd_obj({"execute": "__e2kchar-ringbuf-peek", "arguments": {"device": "x"}})[
        "error"]["desc"] == "Device 'x' not found"
    q.close()


def test_wait_on_blocks_until_a_client_connects(reg, sockdir):
    srv = QmpServer(reg)
    path = f"{sockdir}/w.sock"
    done = threading.Event()

    def listen() -> None:
        srv.listen(f"unix:{path},server=on", timeout=10)  # CLI default: wait=on
        done.set()

    t = threading.Thread(target=listen)
    t.start()
    deadline = time.monotonic() + 5
    while not os.path.exists(path):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert not done.is_set()
    c = Raw(path)
    assert done.wait(5)
    t.join()
    c.negotiate()
    c.close()
    srv.close()


def test_quit_may_close_the_server_from_the_machine(reg, sockdir):
    holder: dict[str, QmpServer] = {}

    class ClosingVm(FakeVm):
        def quit(self) -> None:
            super().quit()
            holder["srv"].close()  # what a CLI's quit handler does

    vm = ClosingVm()
    srv = holder["srv"] = QmpServer(reg, vm)
    srv.listen(f"unix:{sockdir}/q.sock,server=on,wait=off")
    c = Raw(srv.address)
    c.negotiate()
    assert c.cmd("quit") == {"return": {}}
    rest = []
    while line := c.f.readline():
        rest.append(json.loads(line))
    assert [m["event"] for m in rest] == ["SHUTDOWN"]
    assert vm.quit_called.is_set() and not os.path.exists(f"{sockdir}/q.sock")
    c.close()


def test_throttled_events_keep_the_newest_per_key(reg):
    """VSERPORT_CHANGE is rate-limited per port id as in QEMU: the first event goes out at
    once; within the window only the newest is kept and sent when the window ends."""
    from e2kchar.monitor.commands import Monitor

    mon = Monitor(reg)
    mon.THROTTLE_S = 0.2
    got: list[tuple[str, dict, float]] = []
    mon.add_listener(lambda msg: got.append((msg["event"], msg["data"], time.monotonic())))
    try:
        t0 = time.monotonic()
        for n in range(5):  # a guest flapping port a
            mon.emit_throttled("VSERPORT_CHANGE", "a", {"id": "a", "open": n % 2 == 0})
        mon.emit_throttled("VSERPORT_CHANGE", "b", {"id": "b", "open": True})  # own window
        assert [g[1] for g in got] == [{"id": "a", "open": True}, {"id": "b", "open": True}]
        assert reg.run_until(lambda: len(got) == 3, 5)
        assert got[2][1] == {"id": "a", "open": True}  # the newest of the four held back
        assert got[2][2] - t0 >= 0.15
        time.sleep(0.3)
        assert len(got) == 3  # nothing more was pending
        mon.emit_throttled("VSERPORT_CHANGE", "a", {"id": "a", "open": False})
        assert got[-1][1] == {"id": "a", "open": False}  # a quiet window: sent at once
    finally:
        mon.close()
