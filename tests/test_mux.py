"""mux: focus, escape commands, per-frontend buffering, broadcast and hotswap of the base."""

from __future__ import annotations

import os
import re

import pytest

from e2kchar import CharBackend, ChardevError, ChardevEvent
from e2kchar.chardev.mux import help_text


@pytest.fixture
def muxed(reg, tmp_path):
    """A mux over a pipe: (mux chardev, fd to type into, fd that reads the output)."""
    base = tmp_path / "p"
    os.mkfifo(f"{base}.in")
    os.mkfifo(f"{base}.out")
    wr = os.open(f"{base}.in", os.O_RDWR)
    rd = os.open(f"{base}.out", os.O_RDWR | os.O_NONBLOCK)
    mux = reg.new("m", f"pipe,path={base},mux=on")
    yield mux, wr, rd
    os.close(wr)
    os.close(rd)


def read_out(reg, rd, until: bytes, timeout=2.0) -> bytes:
    got = bytearray()

    def check() -> bool:
        try:
            got.extend(os.read(rd, 65536))
        except BlockingIOError:
            pass
        return until in got

    assert reg.run_until(check, timeout), bytes(got)
    return bytes(got)


def test_mux_on_creates_base_and_mux(reg, muxed):
    assert [c["label"] for c in reg.query()] == ["m-base", "m"]
    with pytest.raises(ChardevError, match="Chardev 'm-base' is busy"):
        reg.remove("m-base")
    with pytest.raises(ChardevError, match="mux: base chardev nope not found"):
        reg.add("x", {"type": "mux", "data": {"chardev": "nope"}})
    reg.new("b", "null")
    CharBackend(reg.find("b"))
    with pytest.raises(ChardevError, match="Device 'b' is in use"):
        reg.add("x", {"type": "mux", "data": {"chardev": "b"}})


def test_focus_and_switching(reg, muxed, recorder):
    mux, wr, rd = muxed
    a = recorder(CharBackend(mux))
    b = recorder(CharBackend(mux))  # registering handlers takes the focus
    assert reg.run_until(lambda: ChardevEvent.MUX_IN in b.events, 2)
    assert ChardevEvent.MUX_OUT in a.events
    os.write(wr, b"to b")
    assert reg.run_until(lambda: b.data == b"to b", 2)
    os.write(wr, b"\x01c" + b"to a")
    assert reg.run_until(lambda: a.data == b"to a", 2)
    assert b.events[-1] == ChardevEvent.MUX_OUT and a.events[-1] == ChardevEvent.MUX_IN
    os.write(wr, b"\x01c\x01\x01!")  # back to b; a doubled escape sends one Ctrl-A
    assert reg.run_until(lambda: b.data == b"to b\x01!", 2)
    # output from every frontend reaches the base regardless of focus
    a.fe.write_all(b"from a ")
    b.fe.write_all(b"from b")
    assert read_out(reg, rd, b"from b") == b"from a from b"


def test_help_break_exit_and_unknown(reg, muxed, recorder):
    mux, wr, rd = muxed
    rec = recorder(CharBackend(mux))
    exits = []
    reg.on_exit(exits.append)
    os.write(wr, b"\x01h")
    assert read_out(reg, rd, b"sends C-a\n\r") == help_text(1)
    assert help_text(1).startswith(b"\n\rC-a h    print this help\n\r")
    os.write(wr, b"\x01b\x01z\x01s")
    assert reg.run_until(lambda: ChardevEvent.BREAK in rec.events, 2)
    os.write(wr, b"\x01x")
    assert read_out(reg, rd, b"Terminated") == b"QEMU: Terminated\n\r"
    assert reg.run_until(lambda: exits == [0], 2)
    assert rec.data == b""  # commands and unknown escapes are never data


def test_timestamps_toggle(reg, muxed, recorder):
    mux, wr, rd = muxed
    rec = recorder(CharBackend(mux))
    os.write(wr, b"\x01t")
    reg.run_until(lambda: mux.timestamps, 2)
    rec.fe.write_all(b"first\nsecond\nthird")
    out = read_out(reg, rd, b"third")
    assert re.fullmatch(rb"first\n\[00:00:\d\d\.\d{3}\] second\n\[00:00:\d\d\.\d{3}\] third", out)
    # QEMU counts from the first stamp after the toggle, not from the toggle itself
    assert out.startswith(b"first\n[00:00:00.000] second\n")
    os.write(wr, b"\x01t")
    reg.run_until(lambda: not mux.timestamps, 2)
    rec.fe.write_all(b"\nplain\n")
    assert read_out(reg, rd, b"plain\n") == b"\nplain\n"


def test_per_frontend_buffer_and_accept_input(reg, muxed, recorder):
    mux, wr, rd = muxed
    rec = recorder(CharBackend(mux), room=0)
    os.write(wr, bytes(range(32, 127)))
    assert reg.run_until(lambda: len(mux.bufs[rec.fe.tag]) == 32, 2)
    assert rec.data == b""
    rec.give(10)
    assert reg.run_until(lambda: len(rec.data) == 10, 2)
    rec.give(1000)
    assert reg.run_until(lambda: len(rec.data) == 95, 2)
    assert bytes(rec.data) == bytes(range(32, 127))  # in order, nothing lost


def test_four_frontends_at_most_and_slots_are_freed(reg, muxed):
    mux, _wr, _rd = muxed
    fes = [CharBackend(mux) for _ in range(4)]
    with pytest.raises(ChardevError, match="^Device 'm' is in use$"):  # QEMU's wording
        CharBackend(mux)
    fes[1].deinit()
    CharBackend(mux)  # a freed slot is reused (QEMU never frees them)
    with pytest.raises(ChardevError, match="Chardev 'm' is busy"):
        reg.remove("m")


def test_base_events_are_broadcast(reg, muxed, recorder):
    mux, _wr, _rd = muxed
    a = recorder(CharBackend(mux))
    b = recorder(CharBackend(mux))
    reg.send_break("m-base")
    assert reg.run_until(lambda: ChardevEvent.BREAK in a.events and
                         ChardevEvent.BREAK in b.events, 2)
    reg.send_break("m")  # on the mux itself: the focused frontend only
    assert reg.run_until(lambda: b.events.count(ChardevEvent.BREAK) == 2, 2)
    assert a.events.count(ChardevEvent.BREAK) == 1


def test_hotswap_of_the_mux_base(reg, muxed, recorder, tmp_path):
    mux, _wr, rd = muxed
    a = recorder(CharBackend(mux))
    b = recorder(CharBackend(mux))
    a.fe.write_all(b"before")
    assert read_out(reg, rd, b"before") == b"before"
    assert reg.change("m", {"type": "file", "data": {"out": str(tmp_path / "new")}}) == {}
    assert reg.find("m") is mux and a.fe.chardev is mux and b.fe.chardev is mux
    assert reg.find("m-base").config.type == "file"
    a.fe.write_all(b"after a ")
    b.fe.write_all(b"after b")
    assert (tmp_path / "new").read_bytes() == b"after a after b"
    with pytest.raises(ChardevError, match="Mux device hotswap not supported yet"):
        reg.change("m", {"type": "mux", "data": {"chardev": "m-base"}})


def test_focus_switch_mid_chunk_loses_nothing(reg, muxed, recorder):
    """Ctrl-A c followed by more input in the same read: what the new focus cannot take yet
    waits in the mux (QEMU and a naive buffer drop it)."""
    mux, wr, _rd = muxed
    a = recorder(CharBackend(mux), room=0)
    b = recorder(CharBackend(mux), room=1000)  # focused, and able to take a lot at once
    assert reg.run_until(lambda: mux.focused() is b.fe, 2)
    payload = bytes(x for x in range(256) if x != 1) * 2
    os.write(wr, b"\x01c" + payload)
    assert reg.run_until(lambda: len(mux.bufs[a.fe.tag]) == 32, 2)
    assert mux.focused() is a.fe and b.data == b"" and a.data == b""
    a.give(100)
    assert reg.run_until(lambda: len(a.data) == 100, 2)
    a.give(10000)
    assert reg.run_until(lambda: len(a.data) == len(payload), 2)
    assert bytes(a.data) == payload and b.data == b""

