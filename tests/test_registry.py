"""Registry management: add/remove/find/query/send-break with QEMU's texts, and the I/O loop."""

from __future__ import annotations

import os
import threading

import pytest

from e2kchar import CharBackend, ChardevError, ChardevEvent, ChardevRegistry


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_add_query_remove(reg, tmp_path):
    assert reg.add("r", {"type": "ringbuf", "data": {"size": 16}}) == {}
    reg.add("f", {"type": "file", "data": {"out": str(tmp_path / "o")}})
    assert reg.query() == [
        {"label": "r", "filename": "ringbuf", "frontend-open": False},
        {"label": "f", "filename": "file", "frontend-open": False},
    ]
    with pytest.raises(ChardevError,
                       match=r"attempt to add duplicate property 'r' to object \(type 'container'\)"):
        reg.add("r", {"type": "null"})
    with pytest.raises(ChardevError, match="Duplicate ID 'r' for chardev"):
        reg.new("r", "null")
    with pytest.raises(ChardevError, match="Parameter 'id' expects an identifier"):
        reg.add("not an id", {"type": "null"})
    fe = CharBackend(reg.find("r"))
    with pytest.raises(ChardevError, match="Chardev 'r' is busy"):
        reg.remove("r")
    with pytest.raises(ChardevError, match="Chardev 'zz' not found"):
        reg.remove("zz")
    fe.deinit()
    reg.remove("r")
    assert [c["label"] for c in reg.query()] == ["f"]
    names = {b["name"] for b in reg.query_backends()}
    assert {"null", "file", "pipe", "stdio", "ringbuf", "memory", "mux", "testdev"} <= names


def test_chardev_prefix_returns_existing(reg):
    chr_ = reg.new("base", "null")
    assert reg.new("x", "chardev:base") is chr_
    with pytest.raises(ChardevError, match="chardev 'nope' not found"):
        reg.new("x", "chardev:nope")


def test_send_break_reaches_the_frontend(reg, recorder):
    rec = recorder(CharBackend(reg.new("r", "ringbuf")))
    reg.send_break("r")
    assert reg.run_until(lambda: ChardevEvent.BREAK in rec.events, 2)
    with pytest.raises(ChardevError, match="Chardev 'q' not found"):
        reg.send_break("q")
    reg.new("lonely", "null")
    reg.send_break("lonely")  # succeeds with no frontend, as QEMU


def test_unavailable_backend_is_a_clear_error(reg):
    reg.register_backend("ringbuf", "e2kchar.chardev.nonexistent:Nothing")
    with pytest.raises(ChardevError, match="chardev backend 'ringbuf' is not available yet"):
        reg.new("x", "ringbuf")
    assert reg.query() == []


def test_callbacks_run_on_the_io_thread(reg):
    seen = []
    fe = CharBackend(reg.new("r", "ringbuf"))
    fe.set_handlers(lambda: 1, lambda d: None,
                    lambda ev: seen.append(threading.current_thread() is reg.ioloop.thread))
    assert reg.run_until(lambda: seen, 2) and seen == [True]
    with pytest.raises(ChardevError):
        reg.ioloop.run_sync(lambda: reg.run_until(lambda: True))


def test_run_until_times_out():
    with ChardevRegistry() as reg:
        assert reg.run_until(lambda: False, timeout=0.05) is False
        assert reg.run_until(lambda: True, timeout=0.05) is True


def test_close_leaks_no_fd_and_no_thread(tmp_path):
    base = tmp_path / "p"
    os.mkfifo(base)
    threads_before = threading.active_count()
    before = open_fds()
    reg = ChardevRegistry()
    reg.new("f", f"file,path={tmp_path / 'o'},logfile={tmp_path / 'log'}")
    reg.new("p", f"pipe,path={base}")
    reg.new("m", "ringbuf,mux=on")
    CharBackend(reg.find("p")).set_handlers(lambda: 10, lambda d: None)
    CharBackend(reg.find("m"))
    reg.close()
    assert open_fds() == before
    assert threading.active_count() == threads_before
    reg.close()  # idempotent


def test_registry_is_a_context_manager_and_refuses_after_close():
    with ChardevRegistry() as reg:
        reg.new("n", "null")
    with pytest.raises(ChardevError):
        reg.new("m", "null")
