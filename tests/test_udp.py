"""udp backend: one datagram per write, input within can_read, never OPENED (loopback)."""

from __future__ import annotations

import socket

import pytest
from nethelpers import attach, fd_count

from e2kchar import ChardevRegistry
from e2kchar.chardev.frontend import CharBackend
from e2kchar.chardev.types import ChardevError, ChardevEvent


@pytest.fixture
def peer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def test_udp_round_trip_one_datagram_per_write(reg, recorder, peer):
    port = peer.getsockname()[1]
    chr_ = reg.new("u", f"udp:127.0.0.1:{port}@127.0.0.1:0")
    rec = attach(reg, recorder, chr_)
    assert rec.fe.write(b"first") == 5
    assert rec.fe.write(b"second one") == 10
    d1, addr = peer.recvfrom(100)
    d2, _ = peer.recvfrom(100)
    assert (d1, d2) == (b"first", b"second one")
    assert addr == chr_.local_address
    peer.sendto(b"reply", addr)
    assert reg.run_until(lambda: bytes(rec.data) == b"reply")
    # the socket is connected: datagrams from anyone else are not input
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.sendto(b"stranger", addr)
    peer.sendto(b"!", addr)
    assert reg.run_until(lambda: bytes(rec.data) == b"reply!")
    other.close()
    # QEMU: udp never reports OPENED
    assert rec.events == []
    assert not chr_.be_open
    assert reg.query() == [{"label": "u", "filename": "udp", "frontend-open": True}]


def test_udp_input_respects_can_read(reg, recorder, peer):
    port = peer.getsockname()[1]
    reg.add("u", {"type": "udp", "data": {
        "remote": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(port)}},
        "local": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}}}})
    chr_ = reg.find("u")
    rec = attach(reg, recorder, chr_, room=3)
    peer.sendto(b"0123456789", chr_.local_address)
    peer.sendto(b"abc", chr_.local_address)
    assert reg.run_until(lambda: bytes(rec.data) == b"012")
    while len(rec.data) < 13:
        rec.give(4)
        assert reg.run_until(lambda: rec.room == 0 or len(rec.data) == 13)
    assert bytes(rec.data) == b"0123456789abc"
    assert max(rec.reads) <= 4


def test_udp_peer_absent_and_errors(reg, recorder):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there: ICMP port unreachable comes back
    chr_ = reg.new("u", f"udp:127.0.0.1:{port}")
    rec = attach(reg, recorder, chr_)
    for _ in range(5):
        assert rec.fe.write_all(b"into the void") == 13
    with pytest.raises(ChardevError, match="Failed to bind socket"):
        reg.new("v", f"udp:127.0.0.1:{port}@127.0.0.1:{chr_.local_address[1]}")
    with pytest.raises(ChardevError, match="address resolution failed"):
        reg.new("w", "udp:no.such.host.invalid:9")
    with pytest.raises(ChardevError, match="remote port not specified"):
        reg.new("x", "udp,host=127.0.0.1")
    assert reg.labels() == ["u"]


def test_udp_closed_on_finalize_and_no_fd_leak(peer):
    before = fd_count()
    reg = ChardevRegistry()
    events = []
    try:
        chr_ = reg.new("u", f"udp:127.0.0.1:{peer.getsockname()[1]}")
        fe = CharBackend(chr_)
        fe.set_handlers(lambda: 100, lambda d: None, events.append)
        fe.write_all(b"x")
        assert peer.recv(10) == b"x"
    finally:
        reg.close()
    assert events == [ChardevEvent.CLOSED]
    assert fd_count() == before
