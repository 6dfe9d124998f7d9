#!/usr/bin/env python3
"""Console benchmarks on stock guests: Linux boot times, keystroke echo, a swapped boot log.

The guests are the ones the firmware tests use: Debian's OpenSBI fw_jump with the kernel that
tools/build_linux.py builds (cached in ~/.cache/e2kchar/linux), and Debian's M-mode U-Boot for
QEMU's riscv `virt` board. e2kchar and qemu-system-riscv64 (`-M virt`) run the same binaries,
alternating run by run.

    python tools/bench_console.py                    # every row, 3 runs each
    python tools/bench_console.py --only echo_linux_pty,boot_ttyS0 --runs 5

Rows (each returns a number per run; tools/bench runs the same functions in its table):
- boot_ttyS0 / boot_hvc0: process start to the init's shell prompt on ttyS0 / hvc0 (ms;
  hvc0 is e2kchar only: on QEMU's virt board this kernel's /init finds no console yet);
- poweroff: `poweroff` typed at the prompt to the process's exit (ms);
- echo_{uboot,linux}_{pty,rfc2217}: one keystroke to its echo, the guest idle in between
  (median ms; p99 in the extras). rfc2217 is e2kchar only (QEMU has no RFC 2217 server);
- swapped_bootlog: the Linux boot log on a file chardev, moved to a new file by QMP
  `chardev-change` every 10 ms until the shell is up; lines lost and doubled against a
  boot without swaps of the same emulator (the value is the number of swaps done).
Numbers only: nothing here is a pass/fail threshold, except that a wrong console stream
(lost or doubled lines) is counted and reported.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
E2K, QEMU = "e2kchar", "qemu"
READY = b"e2kchar init: shell ready\r\n# "
UBOOT_PROMPT = b"=> "
PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")
KEYSTROKES = 60        # echo samples per run
KEY_GAP = 0.02         # seconds between keystrokes: the guest goes idle in between


class BenchError(Exception):
    """A run that could not be measured (no guest, crash, timeout, wrong output)."""


@dataclass
class Result:
    """One run of one row on one emulator: the value, plus lost/doubled counts if any."""

    value: float
    lost: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Guests:
    """The stock binaries (fetched or built once, then cached) and the emulator commands."""

    def __init__(self, qemu: str | None, tmp: Path) -> None:
        self.qemu = qemu
        self.tmp = tmp
        self._n = 0
        sys.path.insert(0, str(ROOT / "firmware-tests"))
        stock = _load(ROOT / "firmware-tests" / "stock_firmware.py", "stock_firmware")
        self.fw_jump = stock.opensbi_fw_jump()
        self.uboot = stock.uboot_mmode()
        self._linux = _load(ROOT / "tools" / "build_linux.py", "e2kchar_build_linux")
        self._kernel: Path | None = None

    @property
    def kernel(self) -> Path:
        if self._kernel is None:
            self._kernel = Path(self._linux.build())
        return self._kernel

    def path(self, stem: str) -> Path:
        self._n += 1
        return self.tmp / f"{self._n:04d}-{stem}"

    def linux(self, emu: str, append: str = "console=ttyS0") -> list[str]:
        args = ["-bios", str(self.fw_jump), "-kernel", str(self.kernel), "-append", append]
        if emu == E2K:
            return [sys.executable, "-m", "e2kchar", "run", *args, "--timeout", "120"]
        assert self.qemu is not None
        return [self.qemu, "-M", "virt", "-display", "none", "-monitor", "none", *args]

    def firmware(self, emu: str, image: Path) -> list[str]:
        if emu == E2K:
            return [sys.executable, "-m", "e2kchar", "run", "-bios", str(image),
                    "--timeout", "120"]
        assert self.qemu is not None
        return [self.qemu, "-M", "virt", "-display", "none", "-monitor", "none",
                "-bios", str(image)]


def com1(emu: str, spec: str) -> list[str]:
    """The 16550 console on `spec`: e2kchar's serial0/1 are the Am85C30's two channels."""
    return ["-serial", "null", "-serial", "null", "-serial", spec] if emu == E2K else \
        ["-serial", spec]


@contextlib.contextmanager
def spawn(cmd: list[str], stdin: int | None = subprocess.DEVNULL,
          stderr: int = subprocess.PIPE) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()


class Stream:
    """Non-blocking reads from one fd into a buffer, with waits for a pattern."""

    def __init__(self, fd: int, proc: subprocess.Popen) -> None:
        self.fd = fd
        self.proc = proc
        self.buf = bytearray()
        os.set_blocking(fd, False)

    def until(self, text: bytes, timeout: float, start: int = 0) -> int:
        """Offset just past `text` (searched from `start`), reading as it arrives."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.buf.find(text, start)
            if at >= 0:
                return at + len(text)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no {text!r} within {timeout:g} s: {bytes(self.buf[-200:])!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    raise BenchError(f"the console closed before {text!r} "
                                     f"(exit {self.proc.poll()}): {bytes(self.buf[-200:])!r}")
                self.buf.extend(chunk)
            elif self.proc.poll() is not None:
                raise BenchError(f"the emulator exited ({self.proc.returncode}) before "
                                 f"{text!r}: {bytes(self.buf[-200:])!r}")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)


# ----------------------------------------------------------------------------------------
# Linux boot to the prompt, and poweroff


def boot(g: Guests, emu: str, console: str) -> Result:
    """Process start to the shell prompt on ttyS0 or hvc0 (stdio), then `poweroff`."""
    if console == "ttyS0":
        args = com1(emu, "stdio")
    elif emu == E2K:
        args = ["-serial", "null", "-serial", "null", "-serial", "null",
                "-chardev", "stdio,id=con", "-device", "virtconsole,chardev=con"]
    else:
        args = ["-serial", "null", "-global", "virtio-mmio.force-legacy=false",
                "-device", "virtio-serial-device", "-chardev", "stdio,id=con",
                "-device", "virtconsole,chardev=con"]
    t0 = time.perf_counter()
    with spawn(g.linux(emu, f"console={console}") + args, stdin=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        out = Stream(proc.stdout.fileno(), proc)
        out.until(READY, 60)
        t_ready = time.perf_counter() - t0
        t1 = time.perf_counter()
        proc.stdin.write(b"poweroff\r")
        proc.stdin.flush()
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise BenchError("no exit within 60 s of poweroff") from None
        t_off = time.perf_counter() - t1
        if status != 0:
            raise BenchError(f"exit status {status} after poweroff")
    return Result(1000 * t_ready, extra={"poweroff_ms": 1000 * t_off})


# ----------------------------------------------------------------------------------------
# keystroke echo


def _raw(fd: int) -> None:
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _echo_samples(con: Stream, prompt: bytes) -> list[float]:
    """Type a key, time its echo, erase it (DEL; the guest echoes backspace-space-backspace);
    the guest is left idle for KEY_GAP between keystrokes, as a person typing leaves it."""
    lat = []
    for i in range(KEYSTROKES):
        key = bytes([ord("a") + i % 26])
        start = len(con.buf)
        t0 = time.perf_counter()
        con.send(key)
        con.until(key, 5, start)
        lat.append(time.perf_counter() - t0)
        start = len(con.buf)
        con.send(b"\x7f")
        con.until(b"\b", 5, start)
        time.sleep(KEY_GAP)
    # the line is empty again: Enter gives the next prompt
    start = len(con.buf)
    con.send(b"\r")
    con.until(prompt, 10, start)
    return lat


def _summary(lat: list[float]) -> Result:
    lat = sorted(lat)
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    return Result(1000 * statistics.median(lat), extra={"p99_ms": 1000 * p99,
                                                        "max_ms": 1000 * lat[-1]})


def echo_pty(g: Guests, emu: str, guest: str) -> Result:
    """Keystroke echo through `-serial pty` at the U-Boot prompt or the Linux shell."""
    cmd = (g.linux(emu) if guest == "linux" else g.firmware(emu, g.uboot)) + com1(emu, "pty")
    prompt = READY if guest == "linux" else UBOOT_PROMPT
    # QEMU prints the redirect line on stdout, e2kchar (as QEMU 9.2+) on stderr
    with spawn(cmd, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        err = Stream(proc.stdout.fileno(), proc)
        m = PTY_LINE.search(err.buf)
        while m is None:
            err.until(b"\n", 30, len(err.buf))
            m = PTY_LINE.search(err.buf)
        fd = os.open(m.group(1), os.O_RDWR | os.O_NOCTTY)
        try:
            _raw(fd)
            con = Stream(fd, proc)
            con.until(prompt, 60)
            if guest == "uboot":   # past the autoboot countdown: a quiet prompt
                time.sleep(0.2)
            return _summary(_echo_samples(con, b"# " if guest == "linux" else UBOOT_PROMPT))
        finally:
            os.close(fd)


def echo_rfc2217(g: Guests, emu: str, guest: str) -> Result:
    """Keystroke echo through pyserial's rfc2217:// client (e2kchar's RFC 2217 server)."""
    import serial  # pyserial: the client users have

    if emu != E2K:
        raise BenchError("QEMU has no RFC 2217 server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = (g.linux(emu) if guest == "linux" else g.firmware(emu, g.uboot)) + [
        "-chardev", f"rfc2217,id=con,host=127.0.0.1,port={port}", *com1(emu, "chardev:con")]
    prompt = READY if guest == "linux" else UBOOT_PROMPT
    with spawn(cmd) as proc:
        deadline = time.monotonic() + 30
        while True:
            try:
                port_ = serial.serial_for_url(f"rfc2217://127.0.0.1:{port}", timeout=0.0005)
                break
            except serial.SerialException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the RFC 2217 server never answered") from None
                time.sleep(0.02)
        with port_:
            con = _SerialStream(port_, proc)
            con.until(prompt, 60)
            if guest == "uboot":
                time.sleep(0.2)
            return _summary(_echo_samples(con, b"# " if guest == "linux" else UBOOT_PROMPT))


class _SerialStream(Stream):
    """A Stream over a pyserial port (rfc2217:// has no fd to select on)."""

    def __init__(self, port: Any, proc: subprocess.Popen) -> None:
        self.port = port
        self.proc = proc
        self.buf = bytearray()

    def until(self, text: bytes, timeout: float, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            at = self.buf.find(text, start)
            if at >= 0:
                return at + len(text)
            if time.monotonic() > deadline:
                raise BenchError(f"no {text!r} within {timeout:g} s: {bytes(self.buf[-200:])!r}")
            if self.proc.poll() is not None:
                raise BenchError(f"the emulator exited ({self.proc.returncode})")
            self.buf.extend(self.port.read(65536) or b"")

    def send(self, data: bytes) -> None:
        self.port.write(data)


# ----------------------------------------------------------------------------------------
# the boot log while the console is swapped every 10 ms


def _kernel_lines(data: bytes) -> list[str]:
    return [line for line in data.decode(errors="replace").splitlines() if line.strip()]


def _qmp_connect(path: Path, proc: subprocess.Popen) -> Any:
    from qemu.qmp.legacy import QEMUMonitorProtocol

    deadline = time.monotonic() + 30
    while True:
        qmp = QEMUMonitorProtocol(str(path))
        try:
            qmp.connect()
            return qmp
        except Exception:
            qmp.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("no QMP socket") from None
            time.sleep(0.01)


def bootlog(g: Guests, emu: str, interval: float | None) -> tuple[list[str], int]:
    """The boot log's lines (all files joined in order) and the number of swaps done."""
    sock = g.path("qmp.sock")
    parts = [g.path("boot0.log")]
    cmd = g.linux(emu) + ["-chardev", f"file,id=log,path={parts[0]}",
                          *com1(emu, "chardev:log"),
                          "-qmp", f"unix:{sock},server=on,wait=off", "-S"]

    def booted() -> bool:
        return b"shell ready" in b"".join(p.read_bytes() for p in parts if p.exists())

    with spawn(cmd) as proc:
        qmp = _qmp_connect(sock, proc)
        try:
            qmp.cmd("cont")
            deadline = time.monotonic() + 60
            next_swap = time.monotonic() + (interval or 0)
            while not booted():
                if time.monotonic() > deadline:
                    raise BenchError("no shell within 60 s")
                if interval is not None and time.monotonic() >= next_swap:
                    parts.append(g.path(f"boot{len(parts)}.log"))
                    reply = qmp.cmd_raw("chardev-change", {"id": "log", "backend": {
                        "type": "file", "data": {"out": str(parts[-1])}}})
                    if "error" in reply:
                        raise BenchError(f"chardev-change: {reply['error'].get('desc')}")
                    next_swap += interval
                time.sleep(0.001)
            time.sleep(0.2)
            with contextlib.suppress(Exception):
                qmp.cmd("quit")
        finally:
            with contextlib.suppress(Exception):   # after quit, the peer has gone
                qmp.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    data = b"".join(p.read_bytes() for p in parts if p.exists())
    for p in parts:
        p.unlink(missing_ok=True)
    return _kernel_lines(data), len(parts) - 1


def swapped_bootlog(g: Guests, emu: str) -> Result:
    """Swaps every 10 ms during a Linux boot: swaps done; lines lost and doubled."""
    reference, _ = bootlog(g, emu, None)
    lines, swaps = bootlog(g, emu, 0.010)
    want, got = collections.Counter(reference), collections.Counter(lines)
    lost = sum((want - got).values())
    doubled = sum((got - want).values())
    return Result(float(swaps), lost, {"doubled": doubled, "lines": len(reference),
                                       "in_order": lines == reference})


# ----------------------------------------------------------------------------------------
# the rows


@dataclass
class Row:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    run: Callable[[Guests, str], Result]
    qemu_capable: bool = True


ROWS = [
    Row("boot_ttyS0", "Linux: start to the shell on ttyS0", "ms", False,
        lambda g, e: boot(g, e, "ttyS0")),
    # QEMU's virt board probes virtio-mmio after this kernel's /init has looked for a console
    # ("Warning: unable to open an initial console."), so its init never prints on hvc0
    Row("boot_hvc0", "Linux: start to the shell on hvc0", "ms", False,
        lambda g, e: boot(g, e, "hvc0"), qemu_capable=False),
    Row("echo_uboot_pty", "echo at U-Boot's prompt via pty, median", "ms", False,
        lambda g, e: echo_pty(g, e, "uboot")),
    Row("echo_linux_pty", "echo at the Linux shell via pty, median", "ms", False,
        lambda g, e: echo_pty(g, e, "linux")),
    Row("echo_uboot_rfc2217", "echo at U-Boot's prompt via rfc2217://, median", "ms", False,
        lambda g, e: echo_rfc2217(g, e, "uboot"), qemu_capable=False),
    Row("echo_linux_rfc2217", "echo at the Linux shell via rfc2217://, median", "ms", False,
        lambda g, e: echo_rfc2217(g, e, "linux"), qemu_capable=False),
    Row("swapped_bootlog", "Linux boot log, console swapped every 10 ms: swaps", "swaps",
        True, swapped_bootlog),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", help="comma-separated row keys: " + ",".join(r.key for r in ROWS))
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args(argv)
    rows = ROWS
    if args.only:
        keys = {k.strip() for k in args.only.split(",")}
        if keys - {r.key for r in ROWS}:
            ap.error(f"unknown row(s): {', '.join(sorted(keys - {r.key for r in ROWS}))}")
        rows = [r for r in ROWS if r.key in keys]
    qemu = None if args.no_qemu else shutil.which("qemu-system-riscv64")
    with tempfile.TemporaryDirectory(prefix="e2kchar-bench-console-") as tmp:
        g = Guests(qemu, Path(tmp))
        for row in rows:
            emus = [E2K] + ([QEMU] if qemu and row.qemu_capable else [])
            res: dict[str, list[Result]] = {e: [] for e in emus}
            for i in range(args.runs):
                for emu in emus if i % 2 == 0 else emus[::-1]:
                    try:
                        res[emu].append(row.run(g, emu))
                    except BenchError as exc:
                        print(f"{row.key} {emu}: FAILED: {exc}", flush=True)
            parts = []
            for emu in emus:
                if res[emu]:
                    med = statistics.median(r.value for r in res[emu])
                    extra = {k: statistics.median(r.extra[k] for r in res[emu])
                             for k in res[emu][0].extra if isinstance(res[emu][0].extra[k],
                                                                       (int, float))}
                    lost = [r.lost for r in res[emu] if r.lost is not None]
                    parts.append(f"{emu} {med:.1f} {row.unit} {extra}"
                                 + (f" lost {sum(lost)}" if lost else ""))
            print(f"{row.title}: " + "; ".join(parts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
