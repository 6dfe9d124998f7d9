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


class CallgrindError(RuntimeError):
    """valgrind failed, or printed no instruction count."""


def count(cmd: list[str], timeout: float | None = None) -> int:
    """Instructions callgrind counts for one whole process (cmd run under valgrind)."""
    with tempfile.TemporaryDirectory() as tmp:
        full = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", *cmd]
        p = subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
    if p.returncode != 0:
        raise CallgrindError(f"callgrind run failed ({p.returncode}):\n{p.stderr[-2000:]}")
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if not m:
        raise CallgrindError(f"no 'Collected' line in callgrind's output:\n{p.stderr[-2000:]}")
    return int(m.group(1))


def _instructions(device: str, nbytes: int) -> int:
    return count([sys.executable, __file__, "--child", device, str(nbytes)])


def per_byte(device: str, big: int = BIG, small: int = SMALL) -> tuple[float, int, int]:
    """(instructions per polled byte, total with big bytes, total with small bytes)."""
    build = bench_machine._build_module().build
    for n in (big, small):  # build outside valgrind: the children find zig's cache
        build("machine_bench_tx", defines={"DEV": bench_machine.DEVICES[device], "BYTES": n})
    b, s = _instructions(device, big), _instructions(device, small)
    return (b - s) / (big - small), b, s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="com1,am85c30")
    ap.add_argument("--child", nargs=2, metavar=("DEVICE", "BYTES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child[0], int(args.child[1]))
    for device in [d for d in args.devices.split(",") if d]:
        if device not in bench_machine.DEVICES:
            print(f"unknown device {device}; choose from {', '.join(bench_machine.DEVICES)}",
                  file=sys.stderr)
            return 2
        try:
            instr, big, small = per_byte(device)
        except CallgrindError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{device:8s} {instr:8.0f} instructions per polled byte "
              f"({big} - {small} over {BIG - SMALL} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
