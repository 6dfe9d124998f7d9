"""`e2kchar run` as users run it: a subprocess with QEMU-style options, driven through stdin,
files and the real qemu.qmp client (hotswap under load, ringbufs, errors)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qemu.qmp import ExecuteError, QMPClient

E2KCHAR = [sys.executable, "-m", "e2kchar", "run"]


def run_cli(*args: str, input: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*E2KCHAR, *args], input=input, capture_output=True, timeout=timeout)


def test_bundled_firmware_boots_on_stdio():
    proc = run_cli("--timeout", "30", input=b"echo hello\rinfo\rexit 3\r")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 3, (out, proc.stderr)
    assert "E2K boot ROM (e2kchar demo)" in out
    assert "\nhello" in out.replace("\r", "")
    assert "interrupts:" in out


def test_timeout_exits_124(build_driver):
    elf = build_driver("hotswap_stream")
    proc = run_cli(str(elf), "-serial", "null", "--timeout", "0.5")
    assert proc.returncode == 124
    assert b"timed out after 0.5 s" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["-device", "nosuch,chardev=x"], "unknown device 'nosuch'"),
    (["-serial", "bogus:thing"], "'bogus:thing' is not a valid char driver"),
    (["-chardev", "ringbuf,id=r,size=3"], "size of ringbuf chardev must be power of two"),
    (["-device", "virtconsole,chardev=missing"], "chardev 'missing' not found"),
    (["/nonexistent.elf"], "cannot read '/nonexistent.elf'"),
    (["-m", "lots"], "invalid RAM size 'lots'"),
    (["-qmp", "tcp:127.0.0.1:1,server=off"], "-qmp"),
])
def test_bad_options_are_clear_errors(args, message):
    proc = run_cli(*args, "--timeout", "5")
    assert proc.returncode != 0
    assert message in proc.stderr.decode(), proc.stderr


def test_capture_and_logtimestamp(tmp_path):
    cap = tmp_path / "capture.log"
    log = tmp_path / "serial.log"
    proc = run_cli("-chardev", f"pipe,id=con,path={tmp_path / 'p'}", "-serial", "null",
                   "-serial", "null", "--timeout", "10", input=b"")
    assert proc.returncode != 0  # the pipe does not exist: a clear error, nothing runs
    os.mkfifo(tmp_path / "in")
    # channel A: a file with a timestamped logfile; input typed through a fifo
    writer = os.open(tmp_path / "in", os.O_RDWR)
    try:
        os.write(writer, b"exit 5\r")
        proc = run_cli("-chardev",
                       f"file,id=con,path={tmp_path / 'out'},input-path={tmp_path / 'in'},"
                       f"logfile={log},logtimestamp=on",
                       "-serial", "chardev:con", "--capture", str(cap), "--timeout", "20")
    finally:
        os.close(writer)
    assert proc.returncode == 5, proc.stderr
    lines = log.read_text().splitlines()
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \+\d+\.\d{6}\] "
                        r"E2K boot ROM \(e2kchar demo\)", lines[0]), lines[0]
    captured = cap.read_text().splitlines()
    assert captured[0] == "[con] E2K boot ROM (e2kchar demo)"
    assert "[con] halting, exit code 5" in captured


async def _qmp(sock: Path, proc: subprocess.Popen) -> QMPClient:
    client = QMPClient("test")
    deadline = time.monotonic() + 20
    while True:
        try:
            await client.connect(str(sock))
            return client
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _lines_ok(data: bytes) -> int:
    """The stream driver's output is 'line NNNNNN\\n' counting up from 0: check, return n."""
    lines = data.decode().split("\n")
    tail = lines.pop()  # the guest was stopped mid-line: a prefix of the next line
    for i, line in enumerate(lines):
        assert line == f"line {i % 1000000:06d}", f"line {i}: {line!r}"
    assert f"line {len(lines) % 1000000:06d}".startswith(tail), tail
    return len(lines)


def test_qmp_hotswap_under_load_is_exactly_once(build_driver, tmp_path):
    """file -> file -> file -> ringbuf -> (stop, read the ring, swap, cont) -> file -> file,
    all through QMP while the guest prints as fast as it can."""
    elf = build_driver("hotswap_stream")
    sock = tmp_path / "qmp.sock"
    parts = [tmp_path / f"part{i}" for i in range(6)]
    proc = subprocess.Popen([*E2KCHAR, str(elf), "-serial", f"file:{parts[0]}",
                             "-qmp", f"unix:{sock},server=on,wait=off", "--timeout", "60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def file_(i: int) -> dict:
        return {"type": "file", "data": {"out": str(parts[i])}}

    async def scenario() -> bytes:
        qmp = await _qmp(sock, proc)
        try:
            chardevs = await qmp.execute("query-chardev")
            assert {"label": "serial0", "filename": "file", "frontend-open": True} in chardevs
            with pytest.raises(ExecuteError) as err:
                await qmp.execute("chardev-change", {"id": "nope", "backend": {"type": "null"}})
            assert err.value.error_class == "GenericError"
            assert "Chardev 'nope' does not exist" in str(err.value)
            for i in (1, 2):
                await asyncio.sleep(0.1)
                assert await qmp.execute("chardev-change",
                                         {"id": "serial0", "backend": file_(i)}) == {}
            await asyncio.sleep(0.1)
            await qmp.execute("chardev-change", {"id": "serial0", "backend": {
                "type": "ringbuf", "data": {"size": 1 << 22}}})
            await asyncio.sleep(0.1)
            await qmp.execute("stop")
            assert (await qmp.execute("query-status"))["status"] == "paused"
            ring = await qmp.execute("ringbuf-read", {"device": "serial0", "size": 1 << 22})
            await qmp.execute("chardev-change", {"id": "serial0", "backend": file_(4)})
            await qmp.execute("cont")
            await asyncio.sleep(0.1)
            await qmp.execute("chardev-change", {"id": "serial0", "backend": file_(5)})
            await asyncio.sleep(0.1)
            await qmp.execute("stop")
            await qmp.execute("quit")
        finally:
            await qmp.disconnect()
        return ring.encode()

    try:
        ring = asyncio.run(scenario())
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    pieces = [parts[0].read_bytes(), parts[1].read_bytes(), parts[2].read_bytes(), ring,
              parts[4].read_bytes(), parts[5].read_bytes()]
    assert all(pieces), [len(p) for p in pieces]
    total = _lines_ok(b"".join(pieces))
    assert total > 100
