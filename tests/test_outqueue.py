"""OutQueue (e2kchar.chardev.outqueue) over real chardevs: a pipe whose reader stalls."""

from __future__ import annotations

import threading
import time

import pytest
from recording import drain

from e2kchar import CharBackend, ChardevRegistry
from e2kchar.chardev.outqueue import OutQueue


@pytest.fixture
def pipe(fifos):
    """A pipe chardev's path and our (non-blocking) read end of its output fifo."""
    base, _wr, rd = fifos
    return base, rd


def stall(fe: CharBackend) -> None:
    """Fill the fifo and the chardev's own output buffer: writes return 0 now."""
    for _ in range(2):
        while fe.write(b"\0" * 65536) > 0:
            pass
        time.sleep(0.05)


def read_body(rd: int, want: int, got: bytes = b"", timeout: float = 10.0) -> bytes:
    """Read until want bytes past the stall's zeros arrived (or timeout); returns them."""
    buf = bytearray(got)
    deadline = time.monotonic() + timeout
    while len(buf.lstrip(b"\0")) < want and time.monotonic() < deadline:
        buf += drain(rd)
        time.sleep(0.002)
    time.sleep(0.05)
    buf += drain(rd)  # nothing more (doubled) may follow
    return bytes(buf.lstrip(b"\0"))


def records(n: int, tag: bytes = b"") -> list[bytes]:
    return [tag + b"%06d;" % i for i in range(n)]


def test_put_on_a_stalled_pipe_keeps_every_byte_in_order(reg, pipe):
    base, rd = pipe
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    q = OutQueue(fe, name="t")
    stall(fe)
    recs = records(20000)  # 140 KB: more than the fifo and the chardev buffer hold
    for r in recs:
        assert q.put(r)
    assert q.pending > 0 and q.waiting
    want = b"".join(recs)
    assert read_body(rd, len(want)) == want  # no byte lost, none doubled, in order
    assert q.pending == 0 and not q.waiting


def test_write_once_and_retry_from_the_watch_with_the_lock_held(reg, pipe):
    base, rd = pipe
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    lock = threading.RLock()
    q = OutQueue(fe, lock, name="t")
    stall(fe)
    assert q.write(b"x") == 0  # unbuffered: the caller keeps the byte
    fired: list[bool] = []
    free = threading.Event()

    def retry() -> None:
        # runs on the I/O thread with the queue's lock held: another thread cannot take it
        t = threading.Thread(target=lambda: fired.append(lock.acquire(blocking=False)))
        t.start()
        t.join()
        free.set()

    with lock:
        assert q.wait_writable(retry)
        assert q.wait_writable(retry)  # one watch at a time
    time.sleep(0.05)
    assert not free.is_set()
    drain(rd)
    assert free.wait(5)
    time.sleep(0.05)
    assert fired == [False]  # once, and under the lock
    assert not q.waiting
    assert q.write(b"x") == 1


def test_cancelled_wait_never_calls_back(reg, pipe):
    base, rd = pipe
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    q = OutQueue(fe, name="t")
    stall(fe)
    called = threading.Event()
    assert q.wait_writable(called.set)
    q.cancel_wait()
    drain(rd)
    time.sleep(0.2)
    assert not called.is_set() and not q.waiting


def test_limit_refuses_without_queueing(reg, pipe):
    base, rd = pipe
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    q = OutQueue(fe, name="t", limit=10)
    stall(fe)
    assert q.put(b"0123456789")
    assert not q.put(b"a")
    assert q.pending == 10
    assert read_body(rd, 10) == b"0123456789"


def test_no_backend_waits_or_is_consumed():
    assert OutQueue(None).write(b"abc") == 0
    assert not OutQueue(None).wait_writable(lambda: None)
    assert OutQueue(None, drop_when_gone=True).write(b"abc") == 3
    q = OutQueue(None)
    assert q.put(b"held") and q.pending == 4  # waits for a backend


def test_destroyed_backend():
    own = ChardevRegistry()
    fe = CharBackend(own.new("r", "ringbuf"))
    keep, drop = OutQueue(fe), OutQueue(fe, drop_when_gone=True)
    own.close()  # destroys the chardev under its frontend
    assert fe.chardev is None
    assert keep.write(b"abc") == 0
    assert drop.write(b"abc") == 3


def test_hotswap_moves_the_watch_and_loses_nothing(reg, pipe, tmp_path):
    base, rd = pipe
    chr_ = reg.new("p", f"pipe,path={base}")
    fe = CharBackend(chr_)
    q = OutQueue(fe, name="t")

    def be_change() -> int:
        q.after_swap()
        return 0

    fe.set_handlers(None, None, None, be_change)
    stall(fe)
    recs = records(5000)
    for r in recs:
        q.put(r)
    assert q.pending > 0
    out = tmp_path / "new.out"
    assert reg.change("p", {"type": "file", "data": {"out": str(out)}}) == {}
    more = records(3000, b"n")
    for r in more:
        q.put(r)
    assert reg.run_until(lambda: q.pending == 0, 10)
    reg.change("p", {"type": "null", "data": {}})  # close the file: all of it is on disk
    old = drain(rd).lstrip(b"\0")
    new = out.read_bytes()
    # every record exactly once, in order, split between the old and the new backend
    assert old + new == b"".join(recs + more)


def test_threads_putting_at_once_keep_their_own_order(reg, pipe):
    base, rd = pipe
    fe = CharBackend(reg.new("p", f"pipe,path={base}"))
    q = OutQueue(fe, name="t")
    stall(fe)
    per = [records(3000, tag) for tag in (b"a", b"b", b"c")]
    threads = [threading.Thread(target=lambda rs=rs: [q.put(r) for r in rs]) for rs in per]
    for t in threads:
        t.start()
    got = bytearray()
    while any(t.is_alive() for t in threads):
        got += drain(rd)
        time.sleep(0.001)
    for t in threads:
        t.join()
    total = sum(len(r) for rs in per for r in rs)
    body = read_body(rd, total, bytes(got))
    assert len(body) == total
    recs = body.split(b";")[:-1]
    for tag, rs in zip((b"a", b"b", b"c"), per, strict=True):
        assert [r + b";" for r in recs if r.startswith(tag)] == rs
