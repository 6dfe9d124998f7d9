#!/usr/bin/env python3
"""CPU cost of an idle guest and the echo latency at its prompt, e2kchar against QEMU.

Each workload boots a guest to its prompt with the emulator's console on a pty (as a user's
terminal), lets it settle, then sums the CPU time of all the emulator's threads
(/proc/PID/task/*/schedstat) over a window and reports it per 10 s. Then it types one key
at a time and times each key's echo on the pty: median and p99. The pause between keys
(0.15-0.35 s) is long enough for the idle back-off to have put a polling guest to sleep
again (docs/idle.md), so the latency includes its wake-up.

    tools/bench_idle.py                          # demo ROM, U-Boot, Linux; 2 runs each
    tools/bench_idle.py --only uboot --runs 3 --window 10 --keys 200
    tools/bench_idle.py --no-qemu --json /tmp/idle.json

Workloads:
- demo: the bundled demo ROM (`e2kchar run`, Am85C30 channel A, the CPU sleeps in wfi);
  QEMU has no Am85C30, so its column is n/a.
- uboot: Debian's U-Boot 2023.01 for qemu-riscv64 (M-mode) at its `=>` prompt; it polls
  the 16550's LSR while it waits for a key. QEMU: `-M virt -bios u-boot.bin`.
- linux: the test kernel (tools/build_linux.py, cached) with Debian's OpenSBI fw_jump, at
  the test init's `# ` prompt on ttyS0. QEMU: `-M virt -bios fw_jump.elf -kernel Image`.

Runs alternate e2kchar and QEMU. Numbers only: nothing here is a pass/fail threshold.
Debian's firmware comes from firmware-tests/stock_firmware.py (apt-get download, cached).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import pty
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tty
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
E2K, QEMU = "e2kchar", "qemu"


class BenchError(Exception):
    """A run that could not be measured (no prompt, the emulator died)."""


@dataclass
class Workload:
    name: str
    #: the emulator's command line after the program, per emulator (None: not available)
    args: Callable[[], dict[str, list[str] | None]]
    prompt: bytes
    #: (text seen, keys to send) before the prompt, e.g. U-Boot's autoboot countdown
    answers: tuple[tuple[bytes, bytes], ...] = ()
    #: the key that deletes the typed one (and the echo that tells it is done)
    erase: tuple[bytes, bytes] = (b"\x7f", b"\b \b")


def _firmware_tests(module: str) -> Any:
    """A helper module of firmware-tests/ (Debian's firmware, the tools loader)."""
    sys.path.insert(0, str(ROOT / "firmware-tests"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


def _stock() -> Any:
    return _firmware_tests("stock_firmware")


_E2K_COM1 = ["-serial", "null", "-serial", "null", "-serial", "mon:stdio"]
_QEMU = ["-M", "virt", "-m", "128M", "-nographic"]


def _demo() -> dict[str, list[str] | None]:
    return {E2K: [], QEMU: None}


def _uboot() -> dict[str, list[str] | None]:
    uboot = str(_stock().uboot_mmode())
    return {E2K: [*_E2K_COM1, "-bios", uboot], QEMU: [*_QEMU, "-bios", uboot]}


def _linux() -> dict[str, list[str] | None]:
    fw = str(_stock().opensbi_fw_jump())
    image = str(_firmware_tests("fw_support").load_tool("build_linux.py").build())
    common = ["-bios", fw, "-kernel", image, "-append", "console=ttyS0"]
    return {E2K: [*_E2K_COM1, *common], QEMU: [*_QEMU, *common]}


WORKLOADS = {
    "demo": Workload("demo", _demo, b"e2k> "),
    "uboot": Workload("uboot", _uboot, b"=> ",
                      answers=((b"Hit any key to stop autoboot", b" "),),
                      erase=(b"\x08", b"\b \b")),
    "linux": Workload("linux", _linux, b"# "),
}


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of a process, from the scheduler's nanosecond counters."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    return total / 1e9


class Pty:
    """An emulator on a pty, as on a terminal."""

    def __init__(self, cmd: list[str]) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(self.master)
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, cwd=ROOT)
        os.close(slave)
        self.out = bytearray()

    def pump(self, timeout: float) -> bool:
        """Read what is there (waiting up to timeout); False if nothing came."""
        r, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:
            raise BenchError(f"the emulator closed its console: {bytes(self.out[-300:])!r}")
        self.out += data
        return True

    def expect(self, text: bytes, timeout: float, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while (idx := self.out.find(text, start)) < 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchError(f"{text!r} never came; got {bytes(self.out[-300:])!r}")
            self.pump(deadline - time.monotonic())
        return idx + len(text)

    def drain(self, quiet: float) -> None:
        while self.pump(quiet):
            pass

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        os.close(self.master)


@dataclass
class Sample:
    cpu_per_10s: float
    boot_s: float
    echo_median_ms: float | None = None
    echo_p99_ms: float | None = None


def measure(cmd: list[str], wl: Workload, settle: float, window: float, keys: int) -> Sample:
    t0 = time.monotonic()
    con = Pty(cmd)
    try:
        pos = 0
        for seen, keys_ in wl.answers:
            pos = con.expect(seen, 120, pos)
            con.send(keys_)
        pos = con.expect(wl.prompt, 120, pos)
        boot = time.monotonic() - t0
        con.drain(settle)
        c0 = cpu_seconds(con.proc.pid)
        end = time.monotonic() + window
        while (left := end - time.monotonic()) > 0:
            con.pump(left)  # a guest that prints while idle is read, not blocked
        c1 = cpu_seconds(con.proc.pid)
        sample = Sample(cpu_per_10s=(c1 - c0) * 10 / window, boot_s=boot)
        lat = []
        rng = random.Random(1)
        for _ in range(keys):
            time.sleep(rng.uniform(0.15, 0.35))  # the guest goes back to sleep
            key = b"x"
            start = len(con.out)
            t = time.perf_counter()
            con.send(key)
            con.expect(key, 10, start)
            lat.append((time.perf_counter() - t) * 1000)
            start = len(con.out)
            con.send(wl.erase[0])
            con.expect(wl.erase[1], 10, start)
        if lat:
            lat.sort()
            sample.echo_median_ms = statistics.median(lat)
            sample.echo_p99_ms = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return sample
    finally:
        con.close()


@dataclass
class Row:
    workload: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def med(self, emu: str, attr: str) -> float | None:
        vals = [getattr(s, attr) for s in self.samples.get(emu, [])]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None


def fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(rows: list[Row]) -> str:
    head = ("workload", "e2k CPU s/10s", "QEMU CPU s/10s", "e2k echo med/p99 ms",
            "QEMU echo med/p99 ms", "e2k boot s", "QEMU boot s")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(" | ".join((
            r.workload, fmt(r.med(E2K, "cpu_per_10s"), ".3f"),
            fmt(r.med(QEMU, "cpu_per_10s"), ".3f"),
            f"{fmt(r.med(E2K, 'echo_median_ms'), '.2f')} / {fmt(r.med(E2K, 'echo_p99_ms'), '.2f')}",
            f"{fmt(r.med(QEMU, 'echo_median_ms'), '.2f')} / "
            f"{fmt(r.med(QEMU, 'echo_p99_ms'), '.2f')}",
            fmt(r.med(E2K, "boot_s"), ".2f"), fmt(r.med(QEMU, "boot_s"), ".2f"))))
    return "\n".join("| " + line + " |" for line in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--runs", type=int, default=2, help="runs per emulator (alternating)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds at the prompt first")
    ap.add_argument("--window", type=float, default=10.0, help="seconds of CPU measurement")
    ap.add_argument("--keys", type=int, default=60, help="keys typed for the echo latency")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args(argv)
    qemu = None if args.no_qemu else shutil.which("qemu-system-riscv64")
    e2k = [sys.executable, "-m", "e2kchar", "run"]
    rows = []
    for name in args.only.split(","):
        wl = WORKLOADS[name]
        try:
            cmds = wl.args()
        except Exception as exc:  # a missing firmware or kernel: say so, go on
            print(f"{name}: cannot prepare: {exc}", file=sys.stderr)
            continue
        row = Row(name)
        plan: list[tuple[str, list[str]]] = []
        if cmds[E2K] is not None:
            plan.append((E2K, [*e2k, *cmds[E2K]]))
        if qemu and cmds[QEMU] is not None:
            plan.append((QEMU, [qemu, *cmds[QEMU]]))
        for _ in range(args.runs):
            for emu, cmd in plan:
                try:
                    s = measure(cmd, wl, args.settle, args.window, args.keys)
                except BenchError as exc:
                    print(f"{name} {emu}: {exc}", file=sys.stderr)
                    continue
                row.samples.setdefault(emu, []).append(s)
                print(f"{name} {emu}: {s}", file=sys.stderr, flush=True)
        rows.append(row)
    print(table(rows))
    if args.json:
        info = {"host": platform.node(), "cpus": os.cpu_count(), "load": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        Path(args.json).write_text(json.dumps(
            {"info": info, "rows": {r.workload: {e: [asdict(s) for s in ss]
                                                 for e, ss in r.samples.items()}
                                    for r in rows}}, indent=1))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
