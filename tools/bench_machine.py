#!/usr/bin/env python3
"""Machine harness benchmarks: guest output bytes/s through each serial model (polled
NS16550A, Am85C30, virtio-console), compute speed with the virtual and the CPU TLB, and
host-interrupt latency into a computing guest.

    tools/bench_machine.py                 # 1 MiB per device, output to a temp file
    tools/bench_machine.py --bytes 262144 --devices com1,virtio

Numbers only; nothing here is a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _build_module():
    spec = importlib.util.spec_from_file_location("build_firmware", ROOT / "tools" / "build_firmware.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader
    spec.loader.exec_module(mod)
    return mod


DEVICES = {"com1": 0, "am85c30": 1, "virtio": 2}


def bench_tx(name: str, nbytes: int, build) -> dict:
    from e2kchar import ChardevRegistry
    from e2kchar.machine import Machine

    elf = build("machine_bench_tx", defines={"DEV": DEVICES[name], "BYTES": nbytes})
    with tempfile.TemporaryDirectory() as tmp, ChardevRegistry(coalesce_output=True) as reg:
        out = Path(tmp) / "out.txt"
        chr_ = reg.new("out", f"file,path={out}")
        serial: list = [None, None, None]
        if name == "com1":
            serial[2] = chr_
        elif name == "am85c30":
            serial[0] = chr_
        m = Machine(reg, serial=serial)
        try:
            if name == "virtio":
                m.add_virtio_port(chr_, console=True)
            m.load(elf)
            t0 = time.perf_counter()
            res = m.run(timeout=600)
            dt = time.perf_counter() - t0
            stats = m.stats
        finally:
            m.close()
        reg.remove("out")
        got = out.stat().st_size
    return dict(device=name, result=f"{res.reason}/{res.exit_code}", bytes=got, seconds=dt,
                bytes_per_s=got / dt, mmio_per_s=(stats["mmio_reads"] + stats["mmio_writes"]) / dt)


def bench_compute(build) -> list[dict]:
    from e2kchar.machine import Machine

    elf = build("machine_bench_compute", defines={"N": 4096, "REPEAT": 4})
    out = []
    for tlb in ("virtual", "cpu"):
        with Machine(tlb=tlb) as m:
            m.load(elf)
            t0 = time.perf_counter()
            res = m.run(timeout=600)
            out.append(dict(tlb=tlb, result=f"{res.reason}/{res.exit_code}",
                            seconds=time.perf_counter() - t0))
    return out


def bench_irq_latency(n: int, build) -> dict:
    from e2kchar.machine import Machine

    elf = build("machine_irq_compute", defines={"NIRQ": n})

    class Ack:
        irq = None
        acks = 0
        ready = threading.Event()
        last = 0.0

        def read(self, off, size):
            return 0

        def write(self, off, size, value):
            if off == 0xC:
                self.acks += 1
                self.last = time.perf_counter()
                self.irq.set(False)
            elif off == 0x14:
                self.ready.set()

    lat: list[float] = []
    with Machine() as m:
        dev = Ack()
        dev.irq = m.map_device("ack", 0x1_3000_0000, 0x1000, dev, irq=20)
        m.load(elf)

        def host():
            dev.ready.wait(10)
            for _ in range(n):
                time.sleep(0.005)
                k = dev.acks
                t0 = time.perf_counter()
                dev.irq.set(True)
                while dev.acks == k and time.perf_counter() - t0 < 5:
                    time.sleep(0.00005)
                lat.append(dev.last - t0)

        t = threading.Thread(target=host)
        t.start()
        res = m.run(timeout=120)
        t.join()
    return dict(result=f"{res.reason}/{res.exit_code}", n=len(lat),
                median_ms=1000 * statistics.median(lat), max_ms=1000 * max(lat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=1 << 20)
    ap.add_argument("--devices", default="com1,am85c30,virtio")
    ap.add_argument("--irqs", type=int, default=50, help="interrupts for the latency test")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    build = _build_module().build
    for name in [d for d in args.devices.split(",") if d]:
        if name not in DEVICES:
            print(f"unknown device {name}; choose from {', '.join(DEVICES)}", file=sys.stderr)
            return 2
        r = bench_tx(name, args.bytes, build)
        print(f"{r['device']:8s} {r['result']:8s} {r['bytes']:9d} B in {r['seconds']:.3f} s = "
              f"{r['bytes_per_s'] / 1e6:.3f} MB/s ({r['mmio_per_s'] / 1e6:.2f} M MMIO/s)")
    for r in bench_compute(build):
        print(f"sort 4x4096 words, {r['tlb']:7s} TLB: {r['seconds']:.3f} s ({r['result']})")
    if args.irqs:
        r = bench_irq_latency(args.irqs, build)
        print(f"irq into a computing guest: {r['n']} irqs, median {r['median_ms']:.2f} ms, "
              f"max {r['max_ms']:.2f} ms ({r['result']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
