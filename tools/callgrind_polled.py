#!/usr/bin/env python3
"""Instructions per polled guest byte, counted by callgrind (the hot-path regression gauge).

    tools/callgrind_polled.py                  # COM1 (NS16550A) and the Am85C30
    tools/callgrind_polled.py --devices com1

Wall time on this VM drifts by +-25%, instruction counts do not. Each device's firmware
(firmware-tests/drivers/machine_bench_tx.c) is run twice in-process under
`valgrind --tool=callgrind`, through the whole machine into a file chardev on a coalescing
registry (as the CLI uses): once with BIG bytes and once with SMALL. The difference of the two
totals divided by BIG - SMALL is the cost of one guest byte (one status read and one data
write), with start-up and tear-down cancelled out. BENCHMARKS.md keeps the history.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import bench_machine  # noqa: E402  (tools/ is not a package)

BIG = 64 * 1024
SMALL = 16 * 1024


def _child(device: str, nbytes: int) -> int:
    r = bench_machine.bench_tx(device, nbytes, bench_machine._build_module().build)
    if r["bytes"] != nbytes:
        print(f"{device}: {r['bytes']} bytes out, expected {nbytes}", file=sys.stderr)
        return 1
    return 0


def _instructions(device: str, nbytes: int) -> int:
    return collected([__file__, "--child", device, str(nbytes)])


def collected(argv: list[str]) -> int:
    """Instructions callgrind counts for `python argv...` (tools/bench_virtio_console.py too)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
               sys.executable, *argv]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"callgrind run failed ({p.returncode}):\n{p.stderr[-2000:]}")
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if not m:
        raise SystemExit(f"no 'Collected' line in callgrind's output:\n{p.stderr[-2000:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="com1,am85c30")
    ap.add_argument("--child", nargs=2, metavar=("DEVICE", "BYTES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child[0], int(args.child[1]))
    build = bench_machine._build_module().build
    for device in [d for d in args.devices.split(",") if d]:
        if device not in bench_machine.DEVICES:
            print(f"unknown device {device}; choose from {', '.join(bench_machine.DEVICES)}",
                  file=sys.stderr)
            return 2
        for n in (BIG, SMALL):  # build outside valgrind: the children find zig's cache
            build("machine_bench_tx", defines={"DEV": bench_machine.DEVICES[device], "BYTES": n})
        big, small = _instructions(device, BIG), _instructions(device, SMALL)
        print(f"{device:8s} {(big - small) / (BIG - SMALL):8.0f} instructions per polled byte "
              f"({big} - {small} over {BIG - SMALL} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
