#!/usr/bin/env python3
"""Benchmark virtio-console guest->host throughput through virtio-mmio, in-process.

    tools/bench_virtio_console.py [--seconds N]     # MB/s per backend and descriptor size
    tools/bench_virtio_console.py --callgrind        # instructions per 64 KiB chain

A Python stand-in guest posts whole transmit rings of one-descriptor chains and kicks once
per ring; the device hands the chains of a kick to the backend in vectored writes of up to
4 MiB (views of guest RAM, one writev(2) each on these backends). The registry
coalesces output as the CLI's does. Backends: a file (/dev/null, never pushes back; and a
real file in a temporary directory) and a FIFO drained by a reader thread (the
throttle/watch path). Numbers compare changes on one machine only (BENCHMARKS.md).

--callgrind runs the 64 KiB /dev/null case twice under `valgrind --tool=callgrind`, with
BIG and SMALL rings of chains, and prints the difference of the two totals over the chains
between them: the cost of one chain (pop, hand-off to the backend, push), start-up cancelled.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import threading
import time

from e2kchar.devices import BytearrayMemory, IrqLine, VirtioConsole, VirtioMmio

from e2kchar import ChardevRegistry

RAM = 0x8000_0000
QNUM = 128
CHAIN = 65536
BIG, SMALL = 40, 8   # rings of QNUM chains for --callgrind


def _w(m: VirtioMmio, off: int, v: int) -> None:
    m.write(off, 4, v)


def _setup(reg: ChardevRegistry, spec: str, size: int):
    chr_ = reg.new(f"b{len(reg.labels())}", spec)
    con = VirtioConsole(max_ports=1)
    con.add_port(chr_)
    mem = BytearrayMemory(size + (1 << 20), RAM)
    m = VirtioMmio(device=con, memory=mem, irq=IrqLine())
    _w(m, 0x70, 0)
    _w(m, 0x70, 3)
    _w(m, 0x24, 1)
    _w(m, 0x20, 1)  # VERSION_1
    _w(m, 0x70, 11)
    desc, avail, used = RAM + 0x1000, RAM + 0x2000, RAM + 0x3000
    _w(m, 0x30, 1)
    _w(m, 0x38, QNUM)
    for off, addr in ((0x80, desc), (0x90, avail), (0xA0, used)):
        _w(m, off, addr & 0xFFFFFFFF)
        _w(m, off + 4, addr >> 32)
    _w(m, 0x44, 1)
    _w(m, 0x70, 15)
    buf = RAM + (1 << 20)
    mem.write(buf, os.urandom(size))
    for i in range(QNUM):
        mem.write(desc + 16 * i, struct.pack("<QIHH", buf, size, 0, 0))
        mem.write(avail + 4 + 2 * i, struct.pack("<H", i))
    return m, mem, avail, used, chr_


def run(reg: ChardevRegistry, spec: str, size: int, seconds: float = 0.0,
        rings: int = 0) -> float:
    """MB/s for `seconds`, or for exactly `rings` rings of QNUM chains."""
    m, mem, avail, used, _ = _setup(reg, spec, size)
    idx = 0
    total = 0
    done = 0
    t0 = time.perf_counter()
    while (done < rings) if rings else (time.perf_counter() - t0 < seconds):
        idx = (idx + QNUM) & 0xFFFF
        mem.write(avail + 2, struct.pack("<H", idx))
        _w(m, 0x50, 1)
        deadline = time.monotonic() + 30
        while struct.unpack("<H", mem.read(used + 2, 2))[0] != idx:
            if time.monotonic() > deadline:
                raise RuntimeError("device stopped completing buffers")
            reg.run_until(lambda: False, 0.0005)
        total += QNUM * size
        done += 1
    dt = time.perf_counter() - t0
    return total / dt / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per 64 KiB chain (valgrind)")
    ap.add_argument("--rings", type=int, help=argparse.SUPPRESS)  # --callgrind's child
    args = ap.parse_args()
    if args.rings:
        with ChardevRegistry(coalesce_output=True) as reg:
            run(reg, "file,path=/dev/null", CHAIN, rings=args.rings)
        return
    if args.callgrind:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from callgrind_polled import count  # tools/ is not a package

        big, small = (count([sys.executable, __file__, "--rings", str(n)]) for n in (BIG, SMALL))
        chains = (BIG - SMALL) * QNUM
        print(f"{(big - small) / chains:8.0f} instructions per {CHAIN >> 10} KiB chain "
              f"({big} - {small} over {chains} chains)")
        return
    with ChardevRegistry(coalesce_output=True) as reg, tempfile.TemporaryDirectory() as tmp:
        for size in (4096, 65536, 1 << 20):
            print(f"file /dev/null,  {size:>8} B descriptors: "
                  f"{run(reg, 'file,path=/dev/null', size, args.seconds):8.1f} MB/s")
        path = os.path.join(tmp, "out")
        print(f"file in {tmp[:5]}..., {CHAIN:>8} B descriptors: "
              f"{run(reg, f'file,path={path}', CHAIN, args.seconds):8.1f} MB/s")
        os.unlink(path)
        for size in (4096, 65536, 1 << 20):
            base = os.path.join(tmp, f"p{size}")
            os.mkfifo(base + ".in")
            os.mkfifo(base + ".out")
            stop = threading.Event()
            rfd = os.open(base + ".out", os.O_RDONLY | os.O_NONBLOCK)

            def drain(fd: int = rfd, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    try:
                        os.read(fd, 1 << 16)
                    except BlockingIOError:
                        time.sleep(0.0002)

            t = threading.Thread(target=drain, daemon=True)
            t.start()
            try:
                print(f"fifo + reader,   {size:>8} B descriptors: "
                      f"{run(reg, f'pipe,path={base}', size, args.seconds):8.1f} MB/s")
            finally:
                stop.set()
                t.join()
                os.close(rfd)


if __name__ == "__main__":
    main()
