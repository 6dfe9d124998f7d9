"""Stock firmware nobody here wrote, on the E2K machine: Debian's U-Boot 2023.01 (M-mode) and
OpenSBI 1.1 fw_jump with U-Boot's S-mode build, talking to our 16550 at COM1.

The packages are fetched at test time with `apt-get download` (nothing third-party is
committed); when Debian's packages cannot be reached, the tests fail saying why.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import stock_firmware
from fw_support import BackgroundRun

from e2kchar import devices
from e2kchar.machine import layout as L
from e2kchar.machine.fdt import machine_dtb
from e2kchar.testing import Console

RAM_BASE = 0x8000_0000


def test_device_tree_passes_dtc_without_warnings(tmp_path):
    """Debian's dtc reads the machine's DTB back without a single warning, and what it
    prints has the nodes stock firmware looks for."""
    try:
        dtc = stock_firmware.dtc()
    except stock_firmware.FetchError as exc:
        pytest.fail(f"Debian's device-tree-compiler is needed for this test: {exc}")
    blob = tmp_path / "e2k.dtb"
    blob.write_bytes(machine_dtb(ram_size=128 << 20, cmdline="console=ttyS0"))
    proc = subprocess.run([*dtc, "-I", "dtb", "-O", "dts", str(blob)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""               # dtc's checks: no warnings at all
    dts = proc.stdout
    for text in ('stdout-path = "/soc/serial@1010003f8:115200n8"',
                 "serial@1010003f8 {", 'compatible = "ns16550a"',
                 "reg = <0x01 0x10003f8 0x00 0x08>", "clint@110010000 {",
                 "plic@120000000 {", "riscv,ndev = <0x3f>", 'riscv,isa = "rv64imac"',
                 "timebase-frequency = <0x989680>", "memory@80000000 {",
                 "reg = <0x00 0x80000000 0x00 0x8000000>", 'compatible = "syscon-poweroff"'):
        assert text in dts, text
    assert dts.count('compatible = "virtio,mmio"') == L.VIRTIO_SLOTS


class ThrRecorder:
    """Records every byte the guest writes to COM1's THR (what the device was given to
    send), as ground truth for the backends' transcript.

    Install it before the machine is built: the machine binds each port's device methods
    when it maps the I/O window, so the 16550 model it creates must already be the
    recording subclass (patching the instance's ``write`` afterwards is never called).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lcr = 0
        self.sent = bytearray()
        recorder = self

        class RecordingNs16550a(devices.Ns16550a):
            def write(self, offset: int, size: int, value: int) -> None:
                recorder.observe(offset, value)
                super().write(offset, size, value)

        monkeypatch.setattr(devices, "Ns16550a", RecordingNs16550a)

    def observe(self, offset: int, value: int) -> None:
        if offset == 3:
            self.lcr = value & 0xFF
        elif offset == 0 and not self.lcr & 0x80:
            self.sent.append(value & 0xFF)


@pytest.fixture(scope="module")
def debian():
    try:
        return {
            "uboot": stock_firmware.uboot_mmode(),
            "uboot_s": stock_firmware.uboot_smode(),
            "opensbi": stock_firmware.opensbi_fw_jump(),
        }
    except stock_firmware.FetchError as exc:
        pytest.fail(f"Debian's firmware packages are needed for these tests: {exc}")


class UnixClient:
    """A peer on the console's unix socket, collecting everything it receives."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.sock.settimeout(0.05)
        self.data = bytearray()

    def pump(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.data += chunk
        except (TimeoutError, BlockingIOError):
            pass

    def wait_for(self, text: bytes, timeout: float = 20.0, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            idx = self.data.find(text, start)
            if idx >= 0:
                return idx + len(text)
        raise AssertionError(f"{text!r} never came; got {bytes(self.data[-300:])!r}")

    def type(self, text: bytes) -> None:
        for b in text:  # a person types one key at a time
            self.sock.sendall(bytes([b]))
            time.sleep(0.002)

    def close(self) -> None:
        self.sock.close()


def _unix_server(path: Path, history: int = 0) -> dict:
    data = {"addr": {"type": "unix", "data": {"path": str(path)}}, "server": True,
            "wait": False}
    if history:
        data["history"] = history
    return {"type": "socket", "data": data}


def _run_command(client: UnixClient, command: bytes, start: int) -> int:
    client.type(command + b"\r")
    return client.wait_for(b"=> ", start=client.wait_for(command, start=start))


def test_uboot_mmode_prompt_over_a_unix_socket(debian, registry, machine, tmp_path):
    sock = tmp_path / "com1.sock"
    registry.add("com1", _unix_server(sock, history=1 << 16))
    m = machine(serial=[None, None, registry.find("com1")], clock="host")
    m.load(debian["uboot"])  # a raw image at the RAM base
    run = BackgroundRun(m, 120)
    client = UnixClient(sock)
    try:
        pos = client.wait_for(b"U-Boot 2023.01")
        pos = client.wait_for(b"Hit any key to stop autoboot", start=pos)
        client.type(b" ")
        pos = client.wait_for(b"=> ", start=pos)
        pos = _run_command(client, b"version", pos)
        assert b"U-Boot 2023.01" in client.data[pos - 200:]
        pos = _run_command(client, b"echo hello", pos)
        assert b"\r\nhello\r\n=> " in client.data
        pos = _run_command(client, b"printenv", pos)
        env = bytes(client.data)
        assert b"bootcmd=" in env and b"stdout=serial@1010003f8" in env
        assert b"Environment size:" in env
        client.type(b"poweroff\r")
        res = run.result()
        assert res.reason == "exit" and res.exit_code == 0, res
    finally:
        client.close()


def test_uboot_console_hotswap_socket_file_socket(debian, registry, machine, tmp_path,
                                                  monkeypatch):
    """The session moves socket -> file (with typed-in input from a file) -> socket; the
    pieces joined are exactly what the device sent, each byte once."""
    sock1, sock2 = tmp_path / "a.sock", tmp_path / "b.sock"
    out = tmp_path / "middle.out"
    script = tmp_path / "typed.in"
    script.write_bytes(b"printenv\recho in the file\r")
    registry.add("com1", _unix_server(sock1, history=1 << 16))
    tap = Console(registry, "com1")  # sees every byte, whichever backend has it
    thr = ThrRecorder(monkeypatch)
    m = machine(serial=[None, None, registry.find("com1")], clock="host")
    assert isinstance(m.devices["com1"], devices.Ns16550a)  # the recording model
    m.load(debian["uboot"])
    run = BackgroundRun(m, 120)
    client = UnixClient(sock1)
    client2 = None
    try:
        pos = client.wait_for(b"Hit any key to stop autoboot")
        client.type(b" ")
        pos = client.wait_for(b"=> ", start=pos)
        pos = _run_command(client, b"version", pos)
        # to a file that also types two commands in
        registry.change("com1", {"type": "file", "data": {"out": str(out), "in": str(script)}})
        assert registry.run_until(lambda: out.exists() and
                                  out.read_bytes().endswith(b"in the file\r\n=> "), 20)
        # and back to a (new) socket; output while nobody is connected is kept
        registry.change("com1", _unix_server(sock2, history=1 << 16))
        client2 = UnixClient(sock2)
        _run_command(client2, b"echo back on a socket", 0)
        assert m.pause()        # U-Boot idles at its prompt; nothing more will come
        client.pump()
        registry.find("com1").flush()
        client2.pump()
        joined = bytes(client.data) + out.read_bytes() + bytes(client2.data)
        assert joined == tap.output  # nothing lost, nothing doubled
        assert joined == bytes(thr.sent)  # ... from what U-Boot wrote to THR on
        assert joined.count(b"U-Boot 2023.01") == 2  # banner + `version`
        assert out.read_bytes().startswith(b"printenv\r\n")
        assert b"bootcmd=" in out.read_bytes()
        assert client2.data.startswith(b"echo back on a socket\r\nback on a socket\r\n=> ")
        m.stop()
        run.result()
    finally:
        client.close()
        if client2 is not None:
            client2.close()


def test_opensbi_fw_jump_then_uboot_smode(debian, registry, machine, tmp_path):
    con_chr = registry.new("com1", "ringbuf,size=1048576")
    con = Console(registry, "com1")
    m = machine(serial=[None, None, con_chr], clock="host")
    m.load(debian["opensbi"])  # an ELF
    m.load_raw(debian["uboot_s"], RAM_BASE + 0x20_0000)  # where fw_jump jumps
    run = BackgroundRun(m, 120)
    try:
        con.wait_for_line(r"OpenSBI v1\.1", timeout=30)
        con.wait_for_line(r"Platform Name\s*: E2K machine", timeout=30)
        con.wait_for_line(r"Platform Timer Device\s*: aclint-mtimer @ 10000000Hz", timeout=30)
        con.wait_for_line(r"Platform Console Device\s*: uart8250", timeout=30)
        con.wait_for_line(r"Platform Shutdown Device\s*: sifive_test", timeout=30)
        con.wait_for_line(r"Domain0 Next Address\s*: 0x0*80200000", timeout=30)
        con.wait_for_line(r"Domain0 Next Mode\s*: S-mode", timeout=30)
        con.wait_for_line(r"^U-Boot 2023\.01", timeout=30)
        con.wait_for_prompt("Hit any key to stop autoboot", timeout=30)
        con.write(" ")
        con.wait_for_prompt("=> ", timeout=30)
        con.write_line("echo from S-mode")
        con.wait_for_line(r"^from S-mode$", timeout=30)
        con.wait_for_prompt("=> ", timeout=30)
        con.write_line("poweroff")  # an SBI call from S-mode, handled by OpenSBI in M-mode
        res = run.result()
        assert res.reason == "exit" and res.exit_code == 0, res
    finally:
        m.stop()


def test_fetch_without_debian_fails_clearly(tmp_path, monkeypatch):
    """No network (an apt-get that cannot reach Debian): a FetchError that says why."""
    fake = tmp_path / "bin"
    fake.mkdir()
    apt = fake / "apt-get"
    apt.write_text("#!/bin/sh\necho 'E: Temporary failure resolving deb.debian.org' >&2\n"
                   "exit 100\n")
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr(stock_firmware, "CACHE", tmp_path / "cache")
    with pytest.raises(stock_firmware.FetchError,
                       match="cannot download Debian package 'u-boot-qemu'.*Temporary failure"):
        stock_firmware.uboot_mmode()
