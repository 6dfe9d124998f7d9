"""Throughput of the network and host backends (not a test: numbers depend on the host).

Measures, through a CharBackend frontend, guest->peer and peer->guest bytes per second for a
tcp server, a unix server, a websocket server and a pty, with the frontend writing in
chunks of CHUNK bytes (write_all) and reading with can_read = 4096.

    python tools/bench_net.py [--mib 32] [--chunk 4096]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import threading
import time

from e2kchar import ChardevRegistry
from e2kchar.chardev.frontend import CharBackend
from e2kchar.chardev.websocket import encode_frame


def drain(sock: socket.socket, total: int) -> None:
    got = 0
    while got < total:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return
        got += len(chunk)


def measure(reg: ChardevRegistry, label: str, spec: str, total: int, chunk: int,
            connect, reader, writer) -> None:
    chr_ = reg.new(label, spec)
    received = [0]
    done = threading.Event()

    def read(data: bytes) -> None:
        received[0] += len(data)
        if received[0] >= total:
            done.set()

    fe = CharBackend(chr_)
    fe.set_handlers(lambda: 4096, read)
    peer = connect(chr_)
    reg.run_until(lambda: chr_.be_open, 5)
    blob = b"x" * chunk
    t = threading.Thread(target=reader, args=(peer, total))
    t0 = time.perf_counter()
    t.start()
    for _ in range(total // chunk):
        fe.write_all(blob)
    t.join()
    out_rate = total / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    writer(peer, total)
    done.wait(60)
    in_rate = received[0] / (time.perf_counter() - t0)
    print(f"{label:10s} guest->peer {out_rate / 1e6:8.1f} MB/s   "
          f"peer->guest {in_rate / 1e6:8.1f} MB/s")
    if hasattr(peer, "close"):
        peer.close()
    else:
        os.close(peer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=4096)
    args = ap.parse_args()
    total = args.mib << 20
    chunk = args.chunk
    total -= total % chunk

    def tcp_connect(c):
        return socket.create_connection(("127.0.0.1", int(c.addr.port)))

    def unix_connect(c):
        s = socket.socket(socket.AF_UNIX)
        s.connect(c.addr.path)
        return s

    def sock_writer(s, n):
        block = b"y" * 65536
        for _ in range(n // len(block)):
            s.sendall(block)
        s.sendall(b"y" * (n % len(block)))

    def ws_connect(c):
        s = tcp_connect(c)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(1)
        return s

    def ws_reader(s, n):
        drain(s, n + (n // chunk) * 4)  # payload plus frame headers (approximate)

    def ws_writer(s, n):
        frame = encode_frame(0x2, b"y" * 65536, b"abcd")
        for _ in range(n // 65536):
            s.sendall(frame)

    def pty_connect(c):
        return os.open(c.pty_path, os.O_RDWR | os.O_NOCTTY)

    def pty_reader(fd, n):
        got = 0
        while got < n:
            select.select([fd], [], [], 5)
            got += len(os.read(fd, 1 << 16))

    def pty_writer(fd, n):
        block = b"y" * 4096
        sent = 0
        while sent < n:
            sent += os.write(fd, block)

    with ChardevRegistry() as reg:
        measure(reg, "tcp", "socket,host=127.0.0.1,port=0,server=on,wait=off", total, chunk,
                tcp_connect, drain, sock_writer)
        measure(reg, "unix", f"socket,path=/tmp/e2kchar-bench-{os.getpid()},server=on,wait=off",
                total, chunk, unix_connect, drain, sock_writer)
        measure(reg, "websocket", "socket,host=127.0.0.1,port=0,server=on,wait=off,websocket=on",
                total - total % 65536, chunk, ws_connect, ws_reader, ws_writer)
        measure(reg, "pty", "pty", total, chunk, pty_connect, pty_reader, pty_writer)


if __name__ == "__main__":
    main()
