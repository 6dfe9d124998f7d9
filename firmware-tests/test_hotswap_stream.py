"""Backend hotswap while a guest prints: the stream driver writes "line NNNNNN\\n" forever;
the console's backend goes file -> file -> socket -> file through reg.change (QMP
chardev-change semantics), on Am85C30 channel A, COM1 and virtio-console port 0. Put
together in swap order, the pieces must be exactly the stream's prefix: no line lost, none
doubled, none torn across a swap."""

from __future__ import annotations

import pytest
from fw_support import BackgroundRun, LoopbackPeer, file_backend, socket_client_backend

CHUNK = 20000         # bytes each backend should see before the next swap


def expected_stream(n_bytes: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n_bytes:
        out += b"line %06d\n" % (i % 1000000)
        i += 1
    return bytes(out[:n_bytes])


def _size(path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


STREAM_DEV = {"am85c30": 0, "com1": 1, "virtio": 2}


@pytest.mark.parametrize("device", list(STREAM_DEV))
def test_hotswap_file_file_socket_file(device, registry, machine, build_driver, tmp_path):
    paths = [tmp_path / f"part{i}.out" for i in range(3)]
    registry.add("stream", file_backend(paths[0]))
    chr_ = registry.find("stream")
    serial = {"am85c30": [chr_, None, None], "com1": [None, None, chr_]}.get(device)
    m = machine(serial=serial or [None, None, None])
    if device == "virtio":
        m.add_virtio_port(chr_, console=True)
    m.load(build_driver("hotswap_stream", defines={"STREAM_DEV": STREAM_DEV[device]}))
    run = BackgroundRun(m, 60)
    peer = LoopbackPeer()
    try:
        assert registry.run_until(lambda: _size(paths[0]) >= CHUNK, 20), "no output"
        registry.change("stream", file_backend(paths[1]))
        assert registry.run_until(lambda: _size(paths[1]) >= CHUNK, 20)
        registry.change("stream", socket_client_backend(peer.port))
        assert registry.run_until(lambda: len(peer.received()) >= CHUNK, 20)
        registry.change("stream", file_backend(paths[2]))
        assert registry.run_until(lambda: _size(paths[2]) >= CHUNK, 20)
        m.stop()
        res = run.result()
        assert res.reason == "stopped", res
        registry.find("stream").flush()
        assert peer.closed.wait(10), "the swapped-out socket was not closed"
        pieces = [paths[0].read_bytes(), paths[1].read_bytes(), peer.received(),
                  paths[2].read_bytes()]
    finally:
        if not run.done():
            m.stop()
        peer.close()
    assert all(len(p) >= CHUNK for p in pieces), [len(p) for p in pieces]
    data = b"".join(pieces)
    assert data == expected_stream(len(data))
