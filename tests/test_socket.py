"""socket backend: tcp/unix server and client, telnet, websocket, history, hotswap (loopback)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from nethelpers import attach, fd_count

from e2kchar import ChardevRegistry
from e2kchar.chardev.frontend import CharBackend
from e2kchar.chardev.telnet import TN3270_NEGOTIATION, TelnetFilter
from e2kchar.chardev.types import ChardevError, ChardevEvent
from e2kchar.chardev.websocket import accept_key, encode_frame

OPENED, CLOSED, BREAK = ChardevEvent.OPENED, ChardevEvent.CLOSED, ChardevEvent.BREAK


def connect(chr_, timeout: float = 5.0) -> socket.socket:
    port = int(chr_.addr.port)
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_exact(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def server(reg, label="s", extra=""):
    # history=0: these tests pin QEMU's behaviour (the default keeps 64 KiB for late peers)
    if "history=" not in extra:
        extra += ",history=0"
    return reg.new(label, f"socket,host=127.0.0.1,port=0,server=on,wait=off{extra}")


def test_tcp_server_ping_pong_and_filenames(reg, recorder):
    chr_ = server(reg)
    port = int(chr_.addr.port)
    assert port > 0
    assert reg.query()[0]["filename"] == f"disconnected:tcp:127.0.0.1:{port},server"
    assert not chr_.connected
    rec = attach(reg, recorder, chr_)
    assert rec.fe.write(b"dropped") == 7  # nobody connected: QEMU drops, reports success
    cl = connect(chr_)
    assert reg.run_until(lambda: rec.events == [OPENED])
    assert chr_.connected
    lport = cl.getsockname()[1]
    assert reg.query()[0]["filename"] == \
        f"tcp:127.0.0.1:{port},server <-> 127.0.0.1:{lport}"
    assert rec.fe.write_all(b"ping") == 4
    assert recv_exact(cl, 4) == b"ping"
    cl.sendall(b"pong")
    assert reg.run_until(lambda: bytes(rec.data) == b"pong")
    cl.close()
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])
    assert reg.query()[0]["filename"] == f"disconnected:tcp:127.0.0.1:{port},server"


def test_second_client_waits_then_is_served(reg, recorder):
    chr_ = server(reg)
    rec = attach(reg, recorder, chr_)
    first = connect(chr_)
    assert reg.run_until(lambda: chr_.connected)
    second = connect(chr_)  # sits in the backlog while the first is attached
    second.sendall(b"early")
    first.sendall(b"one")
    assert reg.run_until(lambda: bytes(rec.data) == b"one")
    time.sleep(0.05)
    assert bytes(rec.data) == b"one"
    first.close()
    assert reg.run_until(lambda: rec.events.count(OPENED) == 2)
    assert reg.run_until(lambda: bytes(rec.data) == b"oneearly")
    rec.fe.write_all(b"to-two")
    assert recv_exact(second, 6) == b"to-two"
    second.close()
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED, OPENED, CLOSED])


def test_flow_control_respects_can_read(reg, recorder):
    chr_ = server(reg)
    rec = attach(reg, recorder, chr_, room=3)
    cl = connect(chr_)
    payload = bytes(range(200)) * 50
    cl.sendall(payload)
    assert reg.run_until(lambda: len(rec.data) == 3)
    time.sleep(0.05)
    assert len(rec.data) == 3
    while len(rec.data) < len(payload):
        rec.give(997)
        assert reg.run_until(lambda: rec.room == 0 or len(rec.data) == len(payload))
    assert bytes(rec.data) == payload
    assert max(rec.reads) <= 997
    cl.close()


def test_client_ping_pong_and_reconnect_after_server_restart(reg, recorder, caplog):
    caplog.set_level("INFO", logger="e2kchar.chardev.socket")
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    chr_ = reg.new("c", f"socket,host=127.0.0.1,port={port},reconnect-ms=50")
    rec = attach(reg, recorder, chr_)
    conn, _ = lst.accept()
    assert reg.run_until(lambda: OPENED in rec.events)
    # the connect may complete while the handlers are installed: OPENED live plus replay
    assert set(rec.events) == {OPENED}
    rec.events.clear()
    assert reg.query()[0]["filename"].startswith("tcp:127.0.0.1:")
    assert reg.query()[0]["filename"].endswith(f" <-> 127.0.0.1:{port}")
    rec.fe.write_all(b"hello")
    assert recv_exact(conn, 5) == b"hello"
    conn.sendall(b"world")
    assert reg.run_until(lambda: bytes(rec.data) == b"world")
    # the server goes away and comes back on the same port
    conn.close()
    lst.close()
    assert reg.run_until(lambda: rec.events == [CLOSED])
    assert reg.query()[0]["filename"] == f"disconnected:tcp:127.0.0.1:{port}"
    time.sleep(0.2)  # a few failed attempts, reported once
    lst = socket.create_server(("127.0.0.1", port))
    lst.settimeout(5)
    conn, _ = lst.accept()
    assert reg.run_until(lambda: rec.events == [CLOSED, OPENED])
    assert caplog.text.count("Unable to connect character device c: Connection refused") == 1
    rec.fe.write_all(b"again")
    assert recv_exact(conn, 5) == b"again"
    conn.close()
    lst.close()


def test_client_without_reconnect_fails_clearly_and_leaks_nothing():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    before = fd_count()
    with ChardevRegistry() as reg:
        with pytest.raises(ChardevError, match=f"Failed to connect to '127.0.0.1:{port}'.*"
                                               "Connection refused"):
            reg.new("c", f"socket,host=127.0.0.1,port={port}")
        assert reg.labels() == []
    assert fd_count() == before


def test_bad_options_are_clear_errors(reg, tmp_path):
    taken = server(reg, "a")
    with pytest.raises(ChardevError, match="Address already in use"):
        reg.new("b", f"socket,host=127.0.0.1,port={taken.addr.port},server=on,wait=off")
    with pytest.raises(ChardevError, match="too long"):
        reg.new("c", f"socket,path={tmp_path}/{'x' * 120},server=on,wait=off")
    with pytest.raises(ChardevError, match="No such file or directory"):
        reg.new("d", f"socket,path={tmp_path}/missing/dir/sock,server=on,wait=off")
    with pytest.raises(ChardevError, match="incompatible with socket in server listen mode"):
        reg.add("e", {"type": "socket", "data": {
            "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}},
            "reconnect-ms": 100}})
    with pytest.raises(ChardevError, match="Websocket client is not implemented"):
        reg.new("f", "socket,host=127.0.0.1,port=1,websocket=on")
    # getaddrinfo would wrap 70000 to 4464: refuse it rather than serve the wrong port
    for spec in ("socket,host=127.0.0.1,port=70000,server=on,wait=off",
                 "socket,host=127.0.0.1,port=65536", "udp,host=127.0.0.1,port=65536",
                 "udp,host=127.0.0.1,port=9,localport=70000"):
        with pytest.raises(ChardevError, match=r"Port '\d+' out of range"):
            reg.new("g", spec)
    with pytest.raises(ChardevError, match="embedded null byte"):  # never a ValueError
        reg.new("h", "socket,path=/tmp/a\0b,server=on,wait=off")
    assert reg.labels() == ["a"]


def test_qmp_defaults_server_nowait_and_unix(reg, tmp_path, recorder):
    path = str(tmp_path / "qmp.sock")
    assert reg.add("u", {"type": "socket", "data": {
        "addr": {"type": "unix", "data": {"path": path}}}}) == {}
    chr_ = reg.find("u")
    assert chr_.is_listen
    assert reg.query()[0]["filename"] == f"disconnected:unix:{path},server"
    rec = attach(reg, recorder, chr_)
    cl = socket.socket(socket.AF_UNIX)
    cl.connect(path)
    assert reg.run_until(lambda: rec.events == [OPENED])
    assert reg.query()[0]["filename"] == f"unix:{path},server"
    cl.sendall(b"via unix")
    assert reg.run_until(lambda: bytes(rec.data) == b"via unix")
    rec.fe.write_all(b"back")
    assert recv_exact(cl, 4) == b"back"
    cl.close()
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])
    rec.fe.deinit()
    reg.remove("u")
    assert not os.path.exists(path)  # our socket file is cleaned up


def test_unix_client_to_unix_server_and_abstract_names(reg, recorder):
    name = f"e2kchar-test-{os.getpid()}-{time.monotonic_ns()}"
    srv = reg.new("srv", f"socket,path={name},abstract=on,server=on,wait=off")
    assert reg.find("srv").filename == f"disconnected:unix:{name},server,abstract,tight"
    rs = attach(reg, recorder, srv)
    cli = reg.new("cli", f"socket,path={name},abstract=on")
    rc = attach(reg, recorder, cli)
    assert reg.run_until(lambda: rs.events == [OPENED] and rc.events == [OPENED])
    rc.fe.write_all(b"c->s")
    rs.fe.write_all(b"s->c")
    assert reg.run_until(lambda: bytes(rs.data) == b"c->s" and bytes(rc.data) == b"s->c")
    # a plain abstract connect from outside sees the same server
    rc.fe.deinit()
    reg.remove("cli")
    assert reg.run_until(lambda: rs.events == [OPENED, CLOSED])
    out = socket.socket(socket.AF_UNIX)
    out.connect(b"\0" + name.encode())
    assert reg.run_until(lambda: rs.events == [OPENED, CLOSED, OPENED])
    out.close()


def test_wait_on_blocks_until_first_client(tmp_path, caplog):
    path = str(tmp_path / "wait.sock")
    holder = {}

    def client() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                holder["sock"] = s
                return
            except OSError:
                s.close()
                time.sleep(0.01)

    caplog.set_level("INFO", logger="e2kchar.chardev.socket")
    t = threading.Thread(target=client)
    with ChardevRegistry() as reg:
        t.start()
        chr_ = reg.new("w", f"socket,path={path},server=on")  # CLI default: wait=on
        assert chr_.connected
        t.join()
        assert f"QEMU waiting for connection on: disconnected:unix:{path},server" \
            in caplog.text
        holder["sock"].close()


def test_peer_disconnect_mid_write_and_random_input(reg, recorder):
    chr_ = server(reg, extra=",telnet=on")
    rec = attach(reg, recorder, chr_)
    cl = connect(chr_)
    assert reg.run_until(lambda: OPENED in rec.events)
    cl.sendall(os.urandom(65536))
    cl.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cl.close()  # RST: the next send fails hard

    blob = b"x" * (1 << 20)
    done = []

    def guest() -> None:
        for _ in range(20):
            done.append(rec.fe.write_all(blob))

    t = threading.Thread(target=guest)
    t.start()
    t.join(20)
    assert not t.is_alive()
    assert all(n == len(blob) for n in done)
    assert reg.run_until(lambda: CLOSED in rec.events)
    assert not chr_.connected
    # the listener is back: a new client is served
    cl2 = connect(chr_)
    assert reg.run_until(lambda: rec.events.count(OPENED) == 2)
    cl2.close()


def test_backpressure_and_watch(reg):
    chr_ = server(reg)
    fe = CharBackend(chr_)
    fe.set_handlers(lambda: 0, lambda d: None)
    cl = connect(chr_)
    assert reg.run_until(lambda: chr_.connected)
    total = 0
    while True:
        n = fe.write(b"y" * 65536)
        if n <= 0:
            break
        total += n
    assert total > 0
    fired = threading.Event()
    assert fe.add_watch(fired.set) is not None
    time.sleep(0.05)
    assert not fired.is_set()
    got = recv_exact(cl, total)
    assert got == b"y" * total
    assert fired.wait(5)
    cl.close()


# --------------------------------------------------------------------------------------
# telnet


def test_telnet_negotiation_bytes_and_iac_filter(reg, recorder):
    chr_ = server(reg, extra=",telnet=on")
    rec = attach(reg, recorder, chr_)
    port = chr_.addr.port
    assert reg.query()[0]["filename"] == f"disconnected:telnet:127.0.0.1:{port},server"
    cl = connect(chr_)
    assert recv_exact(cl, 12) == bytes.fromhex("fffb01 fffb03 fffb00 fffd00")
    assert reg.run_until(lambda: rec.events == [OPENED])
    assert reg.query()[0]["filename"].startswith(f"telnet:127.0.0.1:{port},server <-> ")
    # client answers, then data with escapes, commands and a break
    cl.sendall(bytes.fromhex("fffd01 fffd03"))  # DO ECHO, DO SGA: dropped
    cl.sendall(b"a" + bytes.fromhex("ffff") + b"b" + bytes.fromhex("fff1") + b"c")
    assert reg.run_until(lambda: bytes(rec.data) == b"a\xffbc")  # NOP does not eat 'c'
    cl.sendall(b"d" + bytes.fromhex("fff3") + b"e")
    assert reg.run_until(lambda: bytes(rec.data) == b"a\xffbcde")
    assert rec.events == [OPENED, BREAK]
    # a command split across two segments
    cl.sendall(b"\xff")
    time.sleep(0.05)
    cl.sendall(b"\xfb\x18f")  # WILL TERMINAL-TYPE
    assert reg.run_until(lambda: bytes(rec.data) == b"a\xffbcdef")
    # subnegotiation is not data
    cl.sendall(bytes.fromhex("fffa18 00 414e5349 fff0") + b"g")
    assert reg.run_until(lambda: bytes(rec.data) == b"a\xffbcdefg")
    # output is not escaped (QEMU)
    rec.fe.write_all(b"\xffout")
    assert recv_exact(cl, 4) == b"\xffout"
    cl.close()


def test_tn3270_negotiation_bytes(reg, recorder):
    chr_ = server(reg, extra=",tn3270=on")
    rec = attach(reg, recorder, chr_)
    # QEMU's filename says "telnet" only for telnet=on
    assert reg.query()[0]["filename"] == f"disconnected:tcp:127.0.0.1:{chr_.addr.port},server"
    cl = connect(chr_)
    assert recv_exact(cl, 21) == TN3270_NEGOTIATION == bytes.fromhex(
        "fffd19 fffb19 fffd00 fffb00 fffd18 fffa1801fff0")
    assert reg.run_until(lambda: rec.events == [OPENED])
    cl.sendall(b"r" + bytes.fromhex("ffef") + b"s" + bytes.fromhex("fff1") + b"t")
    assert reg.run_until(lambda: bytes(rec.data) == b"r\xff\xefst")
    cl.close()


def test_telnet_client_mode_does_not_negotiate(reg, recorder):
    lst = socket.create_server(("127.0.0.1", 0))
    chr_ = reg.new("c", f"socket,host=127.0.0.1,port={lst.getsockname()[1]},telnet=on")
    rec = attach(reg, recorder, chr_)
    conn, _ = lst.accept()
    assert reg.run_until(lambda: chr_.connected)
    assert reg.query()[0]["filename"].startswith("telnet:127.0.0.1:")  # named as QEMU does
    rec.fe.write_all(b"plain")
    assert recv_exact(conn, 5) == b"plain"  # QEMU negotiates only as a server
    conn.sendall(b"\xff\xff")
    assert reg.run_until(lambda: bytes(rec.data) == b"\xff\xff")
    conn.close()
    lst.close()


def _escape(data: bytes) -> bytes:
    return data.replace(b"\xff", b"\xff\xff")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6),
       st.booleans())
def test_telnet_filter_split_anywhere_and_escape_roundtrip(data, cuts, tn3270):
    wire = _escape(data)
    f = TelnetFilter(tn3270)
    out = b""
    pos = 0
    for cut in sorted(set(c for c in cuts if c <= len(wire))) + [len(wire)]:
        for item in f.feed(wire[pos:cut]):
            assert isinstance(item, bytes)
            out += item
        pos = cut
    assert out == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 400))
def test_telnet_filter_random_bytes_same_in_any_split(data, cut):
    whole = TelnetFilter().feed(data)
    f = TelnetFilter()
    parts = f.feed(data[:cut]) + f.feed(data[cut:])

    def norm(items):
        out, buf = [], b""
        for it in items:
            if isinstance(it, bytes):
                buf += it
            else:
                out += [buf, it] if buf else [it]
                buf = b""
        return out + ([buf] if buf else [])

    assert norm(whole) == norm(parts)


# --------------------------------------------------------------------------------------
# websocket


def ws_handshake(cl: socket.socket, protocol: bool = True) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           f"Sec-WebSocket-Key: {key}\r\n"
           + ("Sec-WebSocket-Protocol: binary\r\n" if protocol else "") + "\r\n")
    cl.sendall(req.encode())
    cl.settimeout(5)
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = cl.recv(1)
        assert chunk
        resp += chunk
    text = resp.decode()
    assert text.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {accept_key(key)}\r\n" in text
    assert "Upgrade: websocket\r\n" in text and "Connection: Upgrade\r\n" in text
    assert "Server: QEMU VNC\r\n" in text
    assert ("Sec-WebSocket-Protocol: binary\r\n" in text) == protocol
    return resp


def read_frame(cl: socket.socket) -> tuple[int, bytes]:
    b0, b1 = recv_exact(cl, 2)
    assert not b1 & 0x80  # server frames are not masked
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(cl, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(cl, 8))[0]
    assert b0 & 0x80
    return b0 & 0x0F, recv_exact(cl, n)


def test_websocket_handshake_frames_ping_close(reg, recorder):
    chr_ = server(reg, extra=",websocket=on")
    rec = attach(reg, recorder, chr_)
    cl = connect(chr_)
    time.sleep(0.05)
    assert rec.events == []  # OPENED only after the handshake
    # the RFC 6455 example key gives the RFC's accept value
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    ws_handshake(cl)
    assert reg.run_until(lambda: rec.events == [OPENED])
    rec.fe.write_all(b"guest says hi")
    assert read_frame(cl) == (0x2, b"guest says hi")
    big = os.urandom(70000)
    rec.fe.write_all(big)
    assert read_frame(cl) == (0x2, big)
    mask = os.urandom(4)
    cl.sendall(encode_frame(0x2, b"masked in", mask) + encode_frame(0x1, b"+text", mask))
    assert reg.run_until(lambda: bytes(rec.data) == b"masked in+text")
    cl.sendall(encode_frame(0x9, b"are you there", mask))
    assert read_frame(cl) == (0xA, b"are you there")
    cl.sendall(encode_frame(0x8, struct.pack(">H", 1000), mask))
    op, payload = read_frame(cl)
    assert op == 0x8 and payload == struct.pack(">H", 1000) + b"peer requested close"
    assert recv_exact(cl, 1) == b""
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])
    cl.close()


def test_websocket_rejects_unmasked_frames_and_bad_requests(reg, recorder):
    chr_ = server(reg, extra=",websocket=on")
    rec = attach(reg, recorder, chr_)
    cl = connect(chr_)
    ws_handshake(cl, protocol=False)
    cl.sendall(encode_frame(0x2, b"no mask"))
    op, payload = read_frame(cl)
    assert op == 0x8 and payload[:2] == struct.pack(">H", 1002)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])
    assert bytes(rec.data) == b""
    cl.close()
    cl = connect(chr_)
    cl.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = recv_exact(cl, 4096, timeout=5)
    assert resp.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert rec.events == [OPENED, CLOSED]
    cl.close()


def _client_frame(opcode: int, payload: bytes, fin: bool = True, length: int | None = None) -> bytes:
    """A masked client frame; fin=False for a fragment, length to declare another size."""
    from e2kchar.chardev.websocket import apply_mask

    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


def test_websocket_fragmented_message_and_oversize_frame(reg, recorder):
    chr_ = server(reg, extra=",websocket=on")
    rec = attach(reg, recorder, chr_, room=4)
    cl = connect(chr_)
    ws_handshake(cl)
    assert reg.run_until(lambda: rec.events == [OPENED])
    # a message in three fragments with a ping between them (RFC 6455 allows that)
    cl.sendall(_client_frame(0x2, b"frag", fin=False) + _client_frame(0x0, b"men", fin=False)
               + _client_frame(0x9, b"hi") + _client_frame(0x0, b"ted"))
    assert reg.run_until(lambda: bytes(rec.data) == b"frag")  # can_read still applies
    time.sleep(0.05)
    assert bytes(rec.data) == b"frag"
    rec.give(100)  # (the frames behind the data, the ping too, wait for the frontend)
    assert read_frame(cl) == (0xA, b"hi")
    assert reg.run_until(lambda: bytes(rec.data) == b"fragmented")
    # a frame declaring more than the decoder accepts: close 1009, CLOSED, nothing delivered
    cl.sendall(_client_frame(0x2, b"", length=2 << 20)[:14])
    op, payload = read_frame(cl)
    assert op == 0x8 and payload[:2] == struct.pack(">H", 1009)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])
    assert bytes(rec.data) == b"fragmented"
    cl.close()
    # the listener serves the next client
    cl = connect(chr_)
    ws_handshake(cl)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED, OPENED])
    cl.close()


# --------------------------------------------------------------------------------------
# history, pyserial, hotswap, fds


def test_history_replayed_to_late_client(reg, recorder):
    chr_ = server(reg, extra=",history=16")
    rec = attach(reg, recorder, chr_)
    for i in range(4):
        assert rec.fe.write_all(b"line%d-abcdef\n" % i) == 13
    cl = connect(chr_)
    assert recv_exact(cl, 16) == b"cdef\nline3-abcdef\n"[-16:]
    rec.fe.write_all(b"live")
    assert recv_exact(cl, 4) == b"live"
    cl.close()
    assert reg.run_until(lambda: CLOSED in rec.events)
    rec.fe.write_all(b"while away")
    cl = connect(chr_)
    assert recv_exact(cl, 10) == b"while away"
    cl.close()


def test_no_history_with_history_0(reg, recorder):
    chr_ = server(reg)  # history=0
    rec = attach(reg, recorder, chr_)
    rec.fe.write_all(b"lost")
    cl = connect(chr_)
    assert reg.run_until(lambda: OPENED in rec.events)
    rec.fe.write_all(b"kept")
    assert recv_exact(cl, 4) == b"kept"
    cl.close()


def test_pyserial_socket_url_talks_to_our_server(reg, recorder):
    chr_ = server(reg, extra=",nodelay=on")
    rec = attach(reg, recorder, chr_)
    port = serial.serial_for_url(f"socket://127.0.0.1:{chr_.addr.port}", timeout=5)
    try:
        assert reg.run_until(lambda: rec.events == [OPENED])
        port.write(b"AT\r\n")
        assert reg.run_until(lambda: bytes(rec.data) == b"AT\r\n")
        rec.fe.write_all(b"OK\r\n")
        assert port.read_until(b"\n") == b"OK\r\n"
    finally:
        port.close()
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])


def test_hotswap_ringbuf_to_socket_and_back(reg, recorder):
    reg.new("con", "ringbuf,size=1024")
    rec = recorder(reg.attach("con"))
    rec.fe.write_all(b"boot log\n")
    assert reg.ringbuf_read("con", 100) == "boot log\n"
    reg.change("con", {"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}},
        "server": True, "wait": False}})
    sock_chr = reg.find("con")
    assert rec.fe.chardev is sock_chr and rec.be_change_calls == 1
    assert rec.events == [OPENED, CLOSED]  # the ringbuf was open, the socket is not yet
    cl = connect(sock_chr)
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED, OPENED])
    rec.fe.write_all(b"interactive")
    assert recv_exact(cl, 11) == b"interactive"
    cl.sendall(b"typed")
    assert reg.run_until(lambda: bytes(rec.data) == b"typed")
    reg.change("con", {"type": "ringbuf", "data": {"size": 1024}})
    assert rec.be_change_calls == 2
    assert recv_exact(cl, 1) == b""  # the old socket is gone
    cl.close()
    rec.fe.write_all(b"after\n")
    assert reg.ringbuf_read("con", 100) == "after\n"
    # and the port is free again: a swap back to the same address works
    port = sock_chr.addr.port
    reg.change("con", {"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": port}},
        "server": True, "wait": False}})
    assert reg.find("con").addr.port == port


def test_no_fd_leaks_over_a_registry_lifetime(tmp_path):
    before = fd_count()
    reg = ChardevRegistry()
    try:
        srv = reg.new("srv", "socket,host=127.0.0.1,port=0,server=on,wait=off,telnet=on")
        cli = reg.new("cli", f"socket,host=127.0.0.1,port={srv.addr.port},reconnect-ms=20")
        ws = reg.new("ws", "socket,host=127.0.0.1,port=0,server=on,wait=off,websocket=on")
        reg.new("u", f"socket,path={tmp_path}/s,server=on,wait=off")
        assert reg.run_until(lambda: srv.connected and cli.connected)
        for _ in range(3):
            c = connect(ws)
            c.sendall(b"garbage that is not http\r\n\r\n")
            assert recv_exact(c, 1 << 16).startswith(b"HTTP/1.1 400 Bad Request")
            c.close()
        with pytest.raises(ChardevError):
            reg.new("bad", f"socket,host=127.0.0.1,port={srv.addr.port},server=on,wait=off")
    finally:
        reg.close()
    assert fd_count() == before


# --------------------------------------------------------------------------------------
# addresses: fd=, to=, IPv6, legacy reconnect seconds, wait timeouts


def test_fd_address_listening_and_connected(reg, recorder):
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    srv = reg.new("srv", f"socket,fd={lst.fileno()},server=on,wait=off")
    lst.detach()  # fd=N hands the socket over: the chardev owns (and has closed) N
    assert srv.filename == f"disconnected:fd:{srv.config.addr.str},server"
    rs = attach(reg, recorder, srv)
    cl = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert reg.run_until(lambda: rs.events == [OPENED])
    cl.sendall(b"via fd")
    assert reg.run_until(lambda: bytes(rs.data) == b"via fd")
    cl.close()
    a, b = socket.socketpair()
    cli = reg.new("cli", f"socket,fd={a.fileno()}")
    a.detach()
    rc = attach(reg, recorder, cli)
    assert set(rc.events) == {OPENED}
    rc.fe.write_all(b"pair")
    assert recv_exact(b, 4) == b"pair"
    b.close()
    assert reg.run_until(lambda: rc.events[-1] == CLOSED)
    with pytest.raises(ChardevError, match="has not been found"):
        reg.new("bad", "socket,fd=notanfd,server=on,wait=off")
    with pytest.raises(ChardevError, match="Failed to use socket fd"):
        reg.new("bad", "socket,fd=987654,server=on,wait=off")


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _eof_within(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False


def _remove_and_see_eof(reg, rec, label: str, peer: socket.socket, base: int) -> None:
    """chardev-remove closes the connection: the peer sees EOF and no fd is left."""
    rec.fe.deinit()
    reg.remove(label)
    assert _eof_within(peer)
    peer.close()
    assert fd_count() == base


def test_fd_is_handed_over_and_closed_on_remove(reg, recorder):
    """fd=N hands the socket over as in QEMU: N is closed once the chardev is registered,
    and chardev-remove closes the connection (the peer sees EOF); no fd is left behind."""
    base = fd_count()
    a, b = socket.socketpair()
    num = a.fileno()
    cli = reg.new("cli", f"socket,fd={num}")
    a.detach()
    assert not _fd_is_open(num)  # only the chardev's own descriptor is left
    rec = attach(reg, recorder, cli)
    rec.fe.write_all(b"hi")
    assert recv_exact(b, 2) == b"hi"
    _remove_and_see_eof(reg, rec, "cli", b, base)
    # a listening one: after chardev-remove nobody accepts on the port any more
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    reg.new("srv", f"socket,fd={lst.detach()},server=on,wait=off")
    reg.remove("srv")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert fd_count() == base


def test_fd_stays_the_callers_when_the_open_fails(reg):
    lst = socket.create_server(("127.0.0.1", 0))
    with pytest.raises(ChardevError, match="is a listening socket but server=off"):
        reg.new("x", f"socket,fd={lst.fileno()}")
    assert _fd_is_open(lst.fileno())
    lst.close()


@pytest.mark.parametrize("how", ["veto", "open fails"])
def test_failed_swap_away_from_fd_socket_keeps_the_connection(reg, recorder, how):
    base = fd_count()
    a, b = socket.socketpair()
    reg.new("c", f"socket,fd={a.detach()}")
    rec = attach(reg, recorder, reg.find("c"), be_change=lambda: -1)
    target = {"type": "ringbuf", "data": {}} if how == "veto" else \
        {"type": "file", "data": {"out": "/nonexistent/dir/x"}}
    with pytest.raises(ChardevError):
        reg.change("c", target)
    rec.fe.write_all(b"still")
    assert recv_exact(b, 5) == b"still"
    b.sendall(b"back")
    assert reg.run_until(lambda: bytes(rec.data) == b"back")
    _remove_and_see_eof(reg, rec, "c", b, base)


def test_swap_onto_fd_socket_vetoed_leaves_the_fd_with_the_caller(reg, recorder):
    base = fd_count()
    a, b = socket.socketpair()
    reg.new("c", "ringbuf")
    veto = [True]
    rec = attach(reg, recorder, reg.find("c"),
                 be_change=lambda: -1 if veto else 0)
    with pytest.raises(ChardevError, match="change failed"):
        reg.change("c", {"type": "socket", "data": {"addr": {"type": "fd", "data": {
            "str": str(a.fileno())}}, "server": False}})
    assert _fd_is_open(a.fileno())  # the connection is still the caller's, and works
    a.sendall(b"ok")
    assert recv_exact(b, 2) == b"ok"
    veto.clear()  # now the swap commits: the chardev owns the socket, the caller's N goes
    rec.fe.set_handlers(rec.can_read, rec.read, rec.event, rec.be_change)
    reg.change("c", {"type": "socket", "data": {"addr": {"type": "fd", "data": {
        "str": str(a.fileno())}}, "server": False}})
    assert not _fd_is_open(a.detach())
    rec.fe.write_all(b"swapped")
    assert recv_exact(b, 7) == b"swapped"
    _remove_and_see_eof(reg, rec, "c", b, base)


def test_port_range_and_ipv6_filenames(reg, recorder):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        chr_ = reg.new("r", f"socket,host=127.0.0.1,port={port},to={port + 20},"
                            "server=on,wait=off")
        assert port < int(chr_.addr.port) <= port + 20
    finally:
        taken.close()
    six = reg.new("six", "socket,host=::1,port=0,server=on,wait=off,ipv6=on")
    p6 = six.addr.port
    assert six.filename == f"disconnected:tcp:::1:{p6},server"
    rec = attach(reg, recorder, six)
    cl = socket.create_connection(("::1", int(p6)), timeout=5)
    assert reg.run_until(lambda: rec.events == [OPENED])
    assert six.filename == f"tcp:[::1]:{p6},server <-> [::1]:{cl.getsockname()[1]}"
    cl.close()


def test_legacy_reconnect_seconds_and_wait_timeout(reg, recorder):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    chr_ = reg.new("c", f"tcp:127.0.0.1:{port},reconnect=1")  # no error: it retries
    assert not chr_.connected
    rec = attach(reg, recorder, chr_)
    fe = rec.fe
    with pytest.raises(ChardevError, match="timed out waiting for a connection"):
        fe.wait_connected(0.1)
    lst = socket.create_server(("127.0.0.1", port))
    lst.settimeout(5)
    conn, _ = lst.accept()  # within about one second
    fe.wait_connected(5)
    assert reg.run_until(lambda: rec.events == [OPENED])
    conn.close()
    lst.close()


# --------------------------------------------------------------------------------------
# websocket frame parser


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.integers(1, 64),
       st.binary(min_size=4, max_size=4))
def test_ws_decoder_any_split(payloads, step, mask):
    from e2kchar.chardev.websocket import FrameDecoder

    wire = b"".join(encode_frame(0x2, p, mask) for p in payloads)
    dec = FrameDecoder()
    frames = []
    for i in range(0, len(wire), step):
        frames += dec.feed(wire[i:i + step])
    assert frames == [(0x2, p) for p in payloads]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_ws_decoder_random_bytes_only_raise_protocol_errors(data):
    from e2kchar.chardev.websocket import FrameDecoder, WebSocketError

    try:
        FrameDecoder().feed(data)
    except WebSocketError as exc:
        assert exc.status in (1002, 1009)


def test_bad_fd_and_paths_leak_nothing(tmp_path):
    before = fd_count()
    with ChardevRegistry() as reg, open(tmp_path / "plain", "w") as f:
        with pytest.raises(ChardevError, match="Failed to use socket fd"):
            reg.new("a", f"socket,fd={f.fileno()},server=on,wait=off")  # not a socket
        with pytest.raises(ChardevError, match="too long"):
            reg.new("b", f"socket,path=/{'y' * 200},reconnect-ms=10")
        with pytest.raises(ChardevError, match="No such file or directory"):
            reg.new("c", f"socket,path={tmp_path}/nobody-listens")
        assert reg.labels() == []
    assert fd_count() == before


def test_reconnecting_client_resolves_host_names(reg, recorder):
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(5)
    port = lst.getsockname()[1]
    chr_ = reg.new("c", f"socket,host=localhost,port={port},reconnect-ms=50")
    conn, _ = lst.accept()
    assert reg.run_until(lambda: chr_.connected)
    conn.close()
    lst.close()


def test_half_telnet_command_does_not_leak_into_the_next_connection(reg, recorder):
    chr_ = server(reg, extra=",telnet=on")
    rec = attach(reg, recorder, chr_)
    cl = connect(chr_)
    assert recv_exact(cl, 12)
    cl.sendall(b"q\xff\xfb")  # IAC WILL without its option byte, then gone
    assert reg.run_until(lambda: bytes(rec.data) == b"q")
    cl.close()
    assert reg.run_until(lambda: rec.events == [OPENED, CLOSED])
    cl = connect(chr_)
    assert recv_exact(cl, 12)
    cl.sendall(b"xy")
    assert reg.run_until(lambda: bytes(rec.data) == b"qxy")
    cl.close()


def test_wait_connected_waits_for_a_new_connection_after_a_disconnect(reg, recorder):
    chr_ = server(reg)
    fe = attach(reg, recorder, chr_).fe
    cl = connect(chr_)
    fe.wait_connected(5)
    assert chr_.connected
    cl.close()
    assert reg.run_until(lambda: not chr_.connected)
    with pytest.raises(ChardevError, match="timed out waiting for a connection"):
        fe.wait_connected(0.1)  # the earlier client does not count
    t = threading.Timer(0.05, lambda: holder.append(connect(chr_)))
    holder: list[socket.socket] = []
    t.start()
    fe.wait_connected(5)
    assert chr_.connected
    t.join()
    holder[0].close()


def test_websocket_client_told_when_the_chardev_goes_away(reg, recorder):
    chr_ = server(reg, extra=",websocket=on")
    rec = attach(reg, recorder, chr_)
    cl = connect(chr_)
    ws_handshake(cl)
    assert reg.run_until(lambda: rec.events == [OPENED])
    rec.fe.deinit()
    reg.remove("s")
    op, payload = read_frame(cl)
    assert op == 0x8 and payload[:2] == struct.pack(">H", 1001)
    assert recv_exact(cl, 1) == b""
    cl.close()


def test_history_by_default_and_logfile_without_client(reg, recorder, tmp_path):
    """Nothing lost while nobody listens: a server keeps 64 KiB by default for the next
    client, and its logfile= records everything whether or not a client is attached."""
    log = tmp_path / "s.log"
    chr_ = reg.new("s", f"socket,host=127.0.0.1,port=0,server=on,wait=off,logfile={log}")
    rec = attach(reg, recorder, chr_)
    rec.fe.write_all(b"early ")
    cl = connect(chr_)
    assert reg.run_until(lambda: OPENED in rec.events)
    rec.fe.write_all(b"late")
    assert recv_exact(cl, 10) == b"early late"
    cl.close()
    assert reg.run_until(lambda: CLOSED in rec.events)
    rec.fe.write_all(b" after")
    assert reg.run_until(lambda: log.read_bytes() == b"early late after")
