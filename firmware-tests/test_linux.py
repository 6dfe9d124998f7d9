"""Linux on the E2K machine: Debian's linux-source-6.1 built here (tools/build_linux.py,
cached in ~/.cache/e2kchar/linux) booted by Debian's OpenSBI fw_jump, exactly as a user runs
it: `e2kchar run -bios fw_jump.elf -kernel Image -append ...`.

The kernel's own drivers meet our models: 8250 on PLIC interrupts (ttyS0 = COM1),
virtio_console with multiport (hvc0 and a second port), the generic ECAM PCI host finding
the Am85C30, syscon poweroff through the exit device. The kernel's /init is
firmware-tests/linux/init.c, a line shell (echo, cat, ls, poweroff).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import stock_firmware
from fw_support import load_tool
from qemu.qmp import QMPClient

E2KCHAR = [sys.executable, "-m", "e2kchar", "run"]
PROMPT = b"\n# "
READY = b"e2kchar init: shell ready\r\n# "
PCI_LINE = "pci 0000:00:02.2: [1fff:8019] type 00 class 0x070002"
BAR_LINE = "pci 0000:00:02.2: BAR 1 [mem 0x40000000-0x40000fff]: assigned"

# the first test to ask for the kernel may build it (4-8 min on 2 cores, once per machine)
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="session")
def kernel() -> Path:
    """The test kernel's Image (built once, then cached outside the checkout)."""
    mod = load_tool("build_linux.py")
    try:
        return Path(mod.build())
    except mod.LinuxBuildError as exc:
        pytest.fail(f"the Linux tests need a kernel and it cannot be built here: {exc}",
                    pytrace=False)


@pytest.fixture(scope="session")
def fw_jump() -> Path:
    try:
        return stock_firmware.opensbi_fw_jump()
    except stock_firmware.FetchError as exc:
        pytest.fail(f"the Linux tests need Debian's OpenSBI: {exc}", pytrace=False)


class Run:
    """`e2kchar run` in a subprocess with its stdio as the guest's console."""

    def __init__(self, *args: str, timeout: float = 60) -> None:
        self.proc = subprocess.Popen([*E2KCHAR, *args, "--timeout", str(timeout)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = bytearray()

    def pump(self) -> None:
        with contextlib.suppress(BlockingIOError, TypeError):
            while chunk := os.read(self.proc.stdout.fileno(), 65536):
                self.out.extend(chunk)

    def until(self, text: bytes, timeout: float = 30, start: int = 0) -> int:
        """Wait for `text` in the output after offset `start`; returns the offset after it."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            at = self.out.find(text, start)
            if at >= 0:
                return at + len(text)
            if self.proc.poll() is not None:
                self.pump()
                at = self.out.find(text, start)
                if at >= 0:
                    return at + len(text)
                raise AssertionError(f"run ended ({self.proc.returncode}) before {text!r}:\n"
                                     f"{self.text()[-3000:]}\n{self.proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.text()[-3000:]}")
            time.sleep(0.01)

    def type(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def command(self, line: str, timeout: float = 20) -> str:
        """Type a shell line; return what it printed before the next prompt."""
        start = len(self.out)
        self.type(line.encode() + b"\r")
        end = self.until(PROMPT, timeout, start)
        return self.out[start:end - len(PROMPT)].decode(errors="replace")

    def text(self) -> str:
        return self.out.decode(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.pump()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run():
    made: list[Run] = []

    def make(*args: str, **kw: Any) -> Run:
        r = Run(*args, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()


def boot_args(fw_jump: Path, kernel: Path, append: str = "console=ttyS0") -> list[str]:
    return ["-bios", str(fw_jump), "-kernel", str(kernel), "-append", append]


def test_shell_on_ttyS0_with_8250_interrupts_pci_and_poweroff(run, fw_jump, kernel):
    r = run(*boot_args(fw_jump, kernel), "-serial", "null", "-serial", "null",
            "-serial", "mon:stdio")
    r.until(READY, 30)
    log = r.text()
    assert PCI_LINE in log
    assert BAR_LINE in log
    assert r.command("echo hello from e2k").strip().endswith("hello from e2k")
    irqs = r.command("cat /proc/interrupts")
    uart = [line for line in irqs.splitlines() if line.rstrip().endswith("ttyS0")]
    assert uart, irqs
    assert int(uart[0].split()[1]) > 0, irqs   # the 8250 took interrupts (input, THRE)
    assert "sifive,plic" in irqs or "PLIC" in irqs.upper(), irqs
    r.type(b"poweroff\r")
    assert r.wait(30) == 0, r.text()[-2000:]


def test_shell_on_hvc0_with_a_second_virtio_port(run, fw_jump, kernel, tmp_path):
    port1 = tmp_path / "port1.out"
    r = run(*boot_args(fw_jump, kernel, "console=hvc0"),
            "-serial", "null", "-serial", "null", "-serial", "null",
            "-chardev", "stdio,id=con", "-device", "virtconsole,chardev=con",
            "-chardev", f"file,id=p1,path={port1}",
            "-device", "virtserialport,chardev=p1,name=org.e2kchar.port1")
    r.until(READY, 30)
    ports = r.command("ls /sys/class/virtio-ports")
    assert "vport0p0" in ports and "vport0p1" in ports, ports
    assert "org.e2kchar.port1" in r.command("cat /sys/class/virtio-ports/vport0p1/name")
    r.command("echo through the second port > /dev/vport0p1")
    irqs = r.command("cat /proc/interrupts")
    assert any("virtio0" in line for line in irqs.splitlines()), irqs
    r.type(b"poweroff\r")
    assert r.wait(30) == 0, r.text()[-2000:]
    assert port1.read_text() == "through the second port\n"


def test_ctrl_a_c_into_the_monitor_and_back_during_linux(run, fw_jump, kernel):
    r = run(*boot_args(fw_jump, kernel), "-serial", "null", "-serial", "null",
            "-serial", "mon:stdio")
    r.until(READY, 30)
    start = len(r.out)
    r.type(b"\x01c")
    r.until(b"(qemu) ", 10, start)
    start = len(r.out)
    r.type(b"info status\r")
    r.until(b"VM status: running", 10, start)
    r.until(b"(qemu) ", 10, start)
    r.type(b"\x01c")
    assert r.command("echo back in linux").strip().endswith("back in linux")
    r.type(b"poweroff\r")
    assert r.wait(30) == 0


def _cpio_newc(files: dict[str, bytes]) -> bytes:
    """A newc cpio archive (what -initrd takes) with regular files."""
    out = bytearray()
    for ino, (name, data) in enumerate([*files.items(), ("TRAILER!!!", b"")], start=1):
        mode = 0o100644 if name != "TRAILER!!!" else 0
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += bytes(-len(out) % 4) + data
        out += bytes(-len(out) % 4)
    return bytes(out)


def test_initrd_reaches_linux(run, fw_jump, kernel, tmp_path):
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(_cpio_newc({"hello.txt": b"from the initrd\n"}))
    r = run(*boot_args(fw_jump, kernel), "-initrd", str(initrd),
            "-serial", "null", "-serial", "null", "-serial", "mon:stdio")
    r.until(READY, 30)
    assert "from the initrd" in r.command("cat /hello.txt")
    r.type(b"poweroff\r")
    assert r.wait(30) == 0


# ----------------------------------------------------------------------------------------
# the boot log as a file: timestamps, and swapped between files during the boot


def _kernel_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _boot_to_file(fw_jump: Path, kernel: Path, tmp_path: Path, swaps: int) -> tuple[list[str],
                                                                                  int]:
    """Boot with COM1 on a file and, when `swaps`, move it to a new file every few ms via
    QMP chardev-change until the shell is up (at most `swaps` times); returns the log's
    lines joined in order and how many files got some of it."""
    sock = tmp_path / f"qmp{swaps}.sock"
    parts = [tmp_path / f"boot{swaps}-0.log"]
    proc = subprocess.Popen(
        [*E2KCHAR, *boot_args(fw_jump, kernel), "-serial", "null", "-serial", "null",
         "-chardev", f"file,id=log,path={parts[0]}", "-serial", "chardev:log",
         "-qmp", f"unix:{sock},server=on,wait=off", "-S", "--timeout", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def booted() -> bool:
        # a swap can split the banner between two files: look at the log joined up
        return b"shell ready" in b"".join(p.read_bytes() for p in parts if p.exists())

    async def scenario() -> None:
        qmp = QMPClient("linux-test")
        deadline = time.monotonic() + 20
        while True:
            try:
                await qmp.connect(str(sock))
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.005)
        try:
            # -S: the guest waits for 'cont', so the swaps start with the boot however
            # slowly this client connects on a loaded machine
            await qmp.execute("cont")
            deadline = time.monotonic() + 40
            while not booted():
                assert time.monotonic() < deadline, "no shell within 40 s"
                if len(parts) <= swaps:
                    parts.append(tmp_path / f"boot{swaps}-{len(parts)}.log")
                    await qmp.execute("chardev-change", {"id": "log", "backend": {
                        "type": "file", "data": {"out": str(parts[-1])}}})
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)
            with contextlib.suppress(Exception):
                await qmp.execute("quit")
        finally:
            with contextlib.suppress(Exception):
                await qmp.disconnect()

    try:
        asyncio.run(scenario())
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    joined = b"".join(p.read_bytes() for p in parts if p.exists()).decode(errors="replace")
    return _kernel_lines(joined), sum(1 for p in parts if p.exists() and p.stat().st_size)


def test_boot_log_swapped_many_times_holds_every_line_once_in_order(fw_jump, kernel, tmp_path):
    reference, _ = _boot_to_file(fw_jump, kernel, tmp_path, swaps=0)
    swapped, used = _boot_to_file(fw_jump, kernel, tmp_path, swaps=1000)
    assert used >= 5, f"only {used} files got output"
    assert any("Linux version 6.1" in line for line in reference), reference[:20]
    assert len(reference) > 50
    assert swapped == reference


def test_logtimestamp_on_a_real_boot_log(run, fw_jump, kernel, tmp_path):
    log = tmp_path / "boot.log"
    r = run(*boot_args(fw_jump, kernel), "-serial", "null", "-serial", "null",
            "-chardev", f"stdio,id=con,logfile={log},logtimestamp=on",
            "-serial", "chardev:con")
    r.until(READY, 30)
    r.type(b"poweroff\r")
    assert r.wait(30) == 0
    lines = [line for line in log.read_text(errors="replace").splitlines() if line]
    stamp = re.compile(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \+(\d+\.\d{6})\] (.*)")
    matches = [stamp.fullmatch(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches, strict=True) if not m][:5]
    texts = [m.group(2) for m in matches if m]
    assert any(t.startswith("Linux version 6.1") for t in texts)
    assert PCI_LINE in texts
    guest_times = [float(m.group(1)) for m in matches if m]
    assert guest_times == sorted(guest_times)
