"""Polled-output throughput of the serial models through their register interface.

Measures the hot paths alone (no CPU emulation): per byte, the 16550 does an LSR read and a
THR write, the Am85C30 an RR0 read and a data write, the LMS console a 32-bit busy read and
two byte writes (character and strobe). Usage: python tools/bench_serial_devices.py [BYTES]
"""

from __future__ import annotations

import sys
import time

from e2kchar.devices import Am85C30, IrqLine, LmsConsole, Ns16550a, VirtualClock

from e2kchar import ChardevRegistry


def bench_16550(chr_, n: int) -> float:
    u = Ns16550a(chardev=chr_, irq=IrqLine(), clock=VirtualClock())
    read, write = u.read, u.write
    t0 = time.perf_counter()
    for i in range(n):
        while not read(5, 1) & 0x20:
            pass
        write(0, 1, i & 0x7F)
    dt = time.perf_counter() - t0
    u.close()
    return dt


def bench_am85c30(chr_, n: int) -> float:
    scc = Am85C30(chardev_a=chr_, chardev_b=None, irq=IrqLine(), clock=VirtualClock())
    read, write = scc.read, scc.write
    t0 = time.perf_counter()
    for i in range(n):
        while not read(0, 1) & 0x04:
            pass
        write(1, 1, i & 0x7F)
    dt = time.perf_counter() - t0
    scc.close()
    return dt


def bench_lms(chr_, n: int) -> float:
    dev = LmsConsole(chardev=chr_)
    read, write = dev.read, dev.write
    t0 = time.perf_counter()
    for i in range(n):
        while read(0, 4):
            pass
        write(0, 1, (i & 0x7F) | 1)
        write(0, 1, 0)
    dt = time.perf_counter() - t0
    dev.close()
    return dt


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with ChardevRegistry() as reg:
        for backend in ("null", "ringbuf,size=1048576"):
            for name, fn in (("ns16550a", bench_16550), ("am85c30", bench_am85c30),
                             ("lms", bench_lms)):
                label = f"{name}-{backend.split(',')[0]}"
                chr_ = reg.new(label, backend)
                dt = fn(chr_, n)
                print(f"{name:9s} -> {backend.split(',')[0]:8s}: {n / dt / 1e3:8.1f} kB/s "
                      f"({dt / n * 1e6:.2f} us/byte)")


if __name__ == "__main__":
    main()
