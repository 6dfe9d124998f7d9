"""chardev-change: QEMU's algorithm, the veto rollback, and exactly-once delivery."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest

from e2kchar import CharBackend, ChardevError, ChardevEvent


def ringbuf(size=4096):
    return {"type": "ringbuf", "data": {"size": size}}


def file_(path, **kw):
    return {"type": "file", "data": {"out": str(path), **kw}}


def test_change_errors(reg):
    with pytest.raises(ChardevError, match="Chardev 'x' does not exist"):
        reg.change("x", ringbuf())
    fe = CharBackend(reg.new("r", "ringbuf"))
    fe.set_handlers(lambda: 0, lambda d: None)  # no be_change handler
    with pytest.raises(ChardevError, match="Chardev user does not support chardev hotswap"):
        reg.change("r", ringbuf())
    fe.set_handlers(lambda: 0, lambda d: None, be_change=lambda: 0)
    with pytest.raises(ChardevError, match="'nope' is not a valid char driver name"):
        reg.change("r", {"type": "nope"})
    with pytest.raises(ChardevError, match="size of ringbuf chardev must be power of two"):
        reg.change("r", ringbuf(3))
    assert reg.find("r").be is fe  # untouched


def test_successful_change_keeps_handlers_and_replays_opened(reg, tmp_path, recorder):
    rec = recorder(CharBackend(reg.new("r", "ringbuf")))
    assert reg.run_until(lambda: rec.events == [ChardevEvent.OPENED], 2)
    rec.fe.write_all(b"before ")
    old = reg.find("r")
    assert reg.change("r", file_(tmp_path / "o")) == {}
    assert rec.be_change_calls == 1 and rec.fe.chardev is reg.find("r") is not old
    assert old.closed
    rec.fe.write_all(b"after")
    assert (tmp_path / "o").read_bytes() == b"after"
    assert reg.run_until(lambda: rec.events.count(ChardevEvent.OPENED) == 2, 2)
    assert reg.query() == [{"label": "r", "filename": "file", "frontend-open": True}]


def test_closed_sent_when_new_backend_is_not_open(reg, recorder):
    rec = recorder(CharBackend(reg.new("r", "ringbuf")))
    reg.run_until(lambda: rec.events, 2)
    reg.change("r", {"type": "null"})
    assert rec.events == [ChardevEvent.OPENED, ChardevEvent.CLOSED]


def test_veto_rolls_back_and_data_keeps_flowing(reg, tmp_path, recorder):
    rec = recorder(CharBackend(reg.new("r", "ringbuf")), be_change=lambda: -1)
    reg.run_until(lambda: rec.events, 2)
    old = reg.find("r")
    with pytest.raises(ChardevError, match="Chardev 'r' change failed"):
        reg.change("r", {"type": "null"})
    # CLOSED was sent (null is not open) and OPENED re-sent on rollback
    assert rec.events == [ChardevEvent.OPENED, ChardevEvent.CLOSED, ChardevEvent.OPENED]
    assert reg.find("r") is old and rec.fe.chardev is old and not old.closed
    rec.fe.write_all(b"still here")
    assert reg.ringbuf_read("r", 100) == "still here"
    assert not (tmp_path / "o").exists()
    with pytest.raises(ChardevError, match="change failed"):
        reg.change("r", file_(tmp_path / "o"))
    rec.fe.write_all(b"!")
    assert reg.ringbuf_read("r", 100) == "!"


def test_be_change_exception_is_a_veto(reg):
    fe = CharBackend(reg.new("r", "ringbuf"))

    def broken() -> int:
        raise RuntimeError("device bug")

    fe.set_handlers(lambda: 0, lambda d: None, be_change=broken)
    with pytest.raises(ChardevError, match="change failed"):
        reg.change("r", ringbuf())
    assert fe.chardev is reg.find("r")


def test_easy_case_keeps_old_until_new_opens(reg, tmp_path):
    reg.new("r", "ringbuf")
    reg.ringbuf_write("r", "kept")
    with pytest.raises(ChardevError, match="Could not open"):
        reg.change("r", file_("/nonexistent/dir/x"))
    assert reg.ringbuf_read("r", 100) == "kept"  # QEMU would have destroyed it
    assert reg.change("r", file_(tmp_path / "o")) == {}
    assert reg.query()[0]["filename"] == "file"


def test_logfile_survives_a_swap(reg, tmp_path, recorder):
    log = tmp_path / "boot.log"
    rec = recorder(CharBackend(reg.new("r", f"ringbuf,logfile={log}")))
    rec.fe.write_all(b"first\n")
    reg.change("r", {"type": "null", "data": {"logfile": str(log)}})
    rec.fe.write_all(b"second\n")
    assert log.read_bytes() == b"first\nsecond\n"  # never truncated by the swap


@pytest.mark.parametrize("coalesce", [False, True])
def test_file_to_file_under_a_writer_thread_is_exactly_once(reg, tmp_path, coalesce):
    rounds = 20
    reg.coalesce_output = coalesce
    fe = CharBackend(reg.new("s", f"file,path={tmp_path / 'out0'}"))
    fe.set_handlers(lambda: 0, lambda d: None, be_change=lambda: 0)
    stop = threading.Event()
    written = []
    errors = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            line = f"line {n:07d}\n".encode()
            if coalesce:  # byte by byte, as a polled UART transmits
                for i in range(len(line)):
                    while (res := fe.write(line[i:i + 1])) != 1:
                        if res != 0 and res != -errno.EAGAIN:
                            errors.append(res)
            else:
                res = fe.write_all(line)
                if res != len(line):  # a short write_all would hide lost bytes
                    errors.append(res)
                    return
            written.append(n)
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for i in range(1, rounds + 1):
            reg.run_until(lambda: False, 0.01)
            reg.change("s", file_(tmp_path / f"out{i}"))
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert fe.chardev.flush()
    data = b"".join((tmp_path / f"out{i}").read_bytes() for i in range(rounds + 1))
    lines = data.decode().splitlines()
    assert lines == [f"line {n:07d}" for n in range(len(written))]
    assert sum(1 for i in range(rounds + 1) if (tmp_path / f"out{i}").stat().st_size) > 5


def test_swapped_backend_delivers_input(reg, tmp_path, recorder):
    rec = recorder(CharBackend(reg.new("r", "ringbuf")))
    base = tmp_path / "p"
    os.mkfifo(f"{base}.in")
    os.mkfifo(f"{base}.out")
    wr = os.open(f"{base}.in", os.O_RDWR)
    try:
        reg.change("r", {"type": "pipe", "data": {"device": str(base)}})
        os.write(wr, b"typed after the swap")
        assert reg.run_until(lambda: rec.data == b"typed after the swap", 2)
    finally:
        os.close(wr)


def _free_port_server() -> tuple[int, dict]:
    """A free loopback port and the QAPI data of a nowait server on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return port, {"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(port)}},
                  "server": True, "wait": False}


def test_unattached_swap_to_a_server_on_the_same_port(reg):
    """QEMU (and Incus users) hit "address already in use" here: the old server must let
    go of the port before the new one binds, and come back if the new one cannot open."""
    port, server = _free_port_server()
    reg.add("con", {"type": "socket", "data": server})
    assert reg.change("con", {"type": "socket", "data": {**server, "telnet": True}}) == {}
    assert reg.query()[0]["filename"] == f"disconnected:telnet:127.0.0.1:{port},server"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(12) == bytes.fromhex("fffb01fffb03fffb00fffd00")  # the new one serves
    # a new config that cannot open (a bad logfile): the old server is back on its port
    with pytest.raises(ChardevError, match="Unable to open logfile"):
        reg.change("con", {"type": "socket", "data": {**server, "logfile": "/nonexistent/l"}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(12) == bytes.fromhex("fffb01fffb03fffb00fffd00")


def test_unattached_failed_swap_keeps_the_live_server_and_its_client(reg):
    """The server is not closed and re-opened from its config on a failed swap to its own
    port: it stays the same chardev, its connected client keeps the line (no EOF), and a
    new client is served once that one leaves."""
    port, server = _free_port_server()
    reg.add("con", {"type": "socket", "data": {**server, "telnet": True}})
    old = reg.find("con")
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert client.recv(12) == bytes.fromhex("fffb01fffb03fffb00fffd00")
    assert reg.run_until(lambda: old.connected, 5)
    with pytest.raises(ChardevError, match="Unable to open logfile"):
        reg.change("con", {"type": "socket", "data": {**server, "logfile": "/nonexistent/l"}})
    assert reg.find("con") is old and old.connected
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)  # no EOF: the connection is alive
    client.close()
    assert reg.run_until(lambda: not old.connected, 5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(12) == bytes.fromhex("fffb01fffb03fffb00fffd00")  # listening again


def test_attached_swap_to_a_server_on_the_same_port(reg, recorder):
    """With a frontend attached too: the old server lets go of its port for the new one and
    takes it back when the new one cannot open or the frontend vetoes."""
    port, server = _free_port_server()
    reg.add("con", {"type": "socket", "data": server})
    veto = []

    def be_change() -> int:
        if veto:
            return -1
        rec.fe.set_handlers(rec.can_read, rec.read, rec.event, rec.be_change)
        return 0

    rec = recorder(CharBackend(reg.find("con")), be_change=be_change)
    assert reg.change("con", {"type": "socket", "data": {**server, "telnet": True}}) == {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(12) == bytes.fromhex("fffb01fffb03fffb00fffd00")  # the new one serves
        assert reg.run_until(lambda: ChardevEvent.OPENED in rec.events, 2)
    with pytest.raises(ChardevError, match="Unable to open logfile"):
        reg.change("con", {"type": "socket", "data": {**server, "logfile": "/nonexistent/l"}})
    veto.append(True)
    with pytest.raises(ChardevError, match="Chardev 'con' change failed"):
        reg.change("con", {"type": "socket", "data": server})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(12) == bytes.fromhex("fffb01fffb03fffb00fffd00")  # still the telnet one
        c.sendall(b"x")
        assert reg.run_until(lambda: rec.data == b"x", 2)


@pytest.mark.parametrize("coalesce", [False, True])
@pytest.mark.parametrize("to", ["file", "ringbuf", "veto"])
def test_output_a_stalled_backend_holds_moves_on_with_the_swap(reg, tmp_path, coalesce, to):
    """Output the old backend accepted (coalescing) but could not deliver goes out first on
    the new one, or back to the old one when the frontend vetoes; nothing is lost."""
    reg.coalesce_output = coalesce
    base = tmp_path / "p"
    os.mkfifo(f"{base}.in")
    os.mkfifo(f"{base}.out")
    keep_in = os.open(f"{base}.in", os.O_RDWR)
    reader = os.open(f"{base}.out", os.O_RDONLY | os.O_NONBLOCK)
    pipe_size = 65536
    veto = to == "veto"
    fe = CharBackend(reg.new("s", f"pipe,path={base}"))
    fe.set_handlers(lambda: 0, lambda d: None, be_change=lambda: -1 if veto else 0)
    data = bytes(i % 251 for i in range(3 * pipe_size))
    sent = 0
    # a polled UART's way: one byte per attempt, until the stalled pipe refuses
    while sent < len(data) and fe.write(data[sent:sent + 1]) == 1:
        sent += 1
    assert pipe_size <= sent < len(data)  # the pipe (and maybe the coalescing buffer) filled
    target = file_(tmp_path / "new") if to == "file" else ringbuf(1 << 18)
    try:
        if veto:
            with pytest.raises(ChardevError, match="change failed"):
                reg.change("s", target)
        else:
            reg.change("s", target)
        rest = data[sent:]
        result: list[int] = []
        writer = threading.Thread(target=lambda: result.append(fe.write_all(rest)))
        writer.start()  # after a veto it waits for the stalled pipe, which we now drain
        got_old = bytearray()

        def drained() -> bool:
            try:
                while chunk := os.read(reader, 65536):
                    got_old.extend(chunk)
            except BlockingIOError:
                pass
            return not veto or len(got_old) == len(data)

        assert reg.run_until(drained, 5)
        writer.join(5)
        assert result == [len(rest)]
        if veto:
            assert bytes(got_old) == data
        else:
            assert fe.chardev.flush()
            new = (tmp_path / "new").read_bytes() if to == "file" else \
                reg.ringbuf_read("s", 1 << 18, format="base64")
            if to == "ringbuf":
                import base64
                new = base64.b64decode(new)
            assert bytes(got_old) + new == data
    finally:
        os.close(reader)
        os.close(keep_in)
