"""The bundled default firmware (e2kchar/machine/firmware/e2k-demo.elf): it is a
reproducible build of firmware-tests/drivers/e2k_demo.c, boots to its banner, mirrors the
boot log to the virtio-console, and answers its prompt on Am85C30 channel A."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fw_support import BackgroundRun, ConsoleSet, wait_output, wait_until

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "e2kchar" / "machine" / "firmware" / "e2k-demo.elf"
PROMPT = b"e2k> "


def info_lines(cmdline: str = "", ports: int = 0) -> list[bytes]:
    return [
        b"boot_info: signature 0x8086 version 1, ram 128 MiB at 0x80000000",
        b"am85c30: pci 00:02.2 [1fff:8019] bar1 0x40000000, boot_info serial_base 0x40000000",
        b"virtio-console: slot 0, irq 16, ports %d" % ports,
        b"cmdline: " + cmdline.encode(),
    ]


def boot_log(cmdline: str = "", ports: int = 0, nl: bytes = b"\r\n") -> bytes:
    lines = [b"E2K boot ROM (e2kchar demo)", *info_lines(cmdline, ports),
             b"console: am85c30 channel A, type help"]
    return b"".join(line + nl for line in lines)


@pytest.fixture
def consoles(registry, tmp_path):
    with ConsoleSet(registry, tmp_path) as made:
        yield made


def test_bundled_binary_matches_its_source():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_firmware.py"),
                           "--check-bundled"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "matches" in proc.stdout


def test_bundled_binary_has_no_debug_info():
    data = BUNDLED.read_bytes()
    assert data[:4] == b"\x7fELF"
    assert b".debug_info" not in data


class Session:
    def __init__(self, registry, con):
        self.registry = registry
        self.con = con
        self.mark = 0

    def expect(self, tail: bytes, timeout: float = 10.0) -> bytes:
        """Wait until the output after the last mark ends with `tail`; return that part."""
        wait_until(self.registry, lambda: self.con.data()[self.mark:].endswith(tail), timeout,
                   f"{tail!r} after {self.con.data()[self.mark:]!r}")
        out = self.con.data()[self.mark:]
        self.mark += len(out)
        return out

    def command(self, line: bytes) -> bytes:
        self.con.feed(line + b"\r")
        return self.expect(PROMPT)


@pytest.mark.parametrize("kind", ["ringbuf", "socket"])
def test_boot_banner_echo_and_exit_code(kind, registry, machine, consoles):
    con = consoles(kind, "cha")
    m = machine(serial=[con.chr, None, None])
    m.load(BUNDLED)
    run = BackgroundRun(m, 60)
    s = Session(registry, con)
    first = s.expect(PROMPT)
    assert first == boot_log() + PROMPT
    assert s.command(b"echo hello") == b"echo hello\r\nhello\r\n" + PROMPT
    con.feed(b"exit 3\r")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 3), res
    tail = b"exit 3\r\nhalting, exit code 3\r\n"
    registry.run_until(lambda: con.data().endswith(tail), 5)
    assert con.data()[s.mark:] == tail
    assert m.stats["irqs"] >= 1      # input came in through the Am85C30 Rx interrupt
    assert m.stats["wfi_sleeps"] >= 1  # and the ROM waited for it in wfi, not spinning


def test_prompt_commands(registry, machine, consoles):
    con = consoles("ringbuf", "cha")
    m = machine(serial=[con.chr, None, None], append="console=ttyS0 quiet")
    m.load(BUNDLED)
    run = BackgroundRun(m, 60)
    s = Session(registry, con)
    assert s.expect(PROMPT) == boot_log("console=ttyS0 quiet") + PROMPT
    assert s.command(b"help") == (b"help\r\ncommands: help, echo TEXT, info, exit [N]\r\n"
                                  + PROMPT)
    info = s.command(b"info")
    body = b"".join(line + b"\r\n" for line in info_lines("console=ttyS0 quiet"))
    assert re.fullmatch(re.escape(b"info\r\n" + body) + rb"interrupts: \d+\r\n"
                        + re.escape(PROMPT), info), info
    assert s.command(b"frobnicate") == (b"frobnicate\r\nunknown command: frobnicate "
                                        b"(try help)\r\n" + PROMPT)
    # backspace editing and CR LF line ends
    con.feed(b"echo abX\x7fc\r\n")
    assert s.expect(PROMPT) == b"echo abX\b \bc\r\nabc\r\n" + PROMPT
    assert s.command(b"") == b"\r\n" + PROMPT
    assert s.command(b"exit nope") == (b"exit nope\r\nexit: N must be a number from 0 to "
                                       b"65535\r\n" + PROMPT)
    con.feed(b"exit\r")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res


def test_boot_log_mirrored_to_virtio_console(registry, machine, consoles):
    con = consoles("ringbuf", "cha")
    vcon = consoles("ringbuf", "vcon")
    m = machine(serial=[con.chr, None, None])
    m.add_virtio_port(vcon.chr, console=True)
    m.load(BUNDLED)
    run = BackgroundRun(m, 60)
    s = Session(registry, con)
    assert s.expect(PROMPT) == boot_log(ports=1) + PROMPT
    expected = boot_log(ports=1, nl=b"\n")
    assert wait_output(registry, vcon, expected) == expected
    con.feed(b"exit 7\r")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 7), res
    assert vcon.data() == expected          # the prompt stays on channel A


def test_cli_boots_the_bundled_firmware_by_default():
    """`e2kchar run` with no firmware boots the demo; input piped to -serial stdio reaches
    the prompt (the receiver holds it back until the ROM has set channel A up) and the
    guest's exit code becomes the process status."""
    proc = subprocess.run([sys.executable, "-m", "e2kchar", "run", "-serial", "stdio",
                           "--timeout", "30"], input=b"echo hello\rexit 3\r",
                          capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 3, proc.stderr.decode(errors="replace")
    assert proc.stdout == (boot_log() + PROMPT + b"echo hello\r\nhello\r\n" + PROMPT
                           + b"exit 3\r\nhalting, exit code 3\r\n")
