"""`e2kchar run` as QEMU behaves: errors for a device without its chardev, the waiting
server's line on stderr, and --timeout counting during that wait."""

from __future__ import annotations


def test_cli_device_without_chardev_and_waiting_notice(tmp_path):
    """-device ns16550a with no chardev= is an error; a waiting server says so on stderr
    without -v, as QEMU does."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "e2kchar", "run", "-device", "ns16550a"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert b"-device ns16550a needs chardev=ID" in proc.stderr
    sock = tmp_path / "w.sock"
    proc2 = subprocess.Popen(
        [sys.executable, "-m", "e2kchar", "run", "--timeout", "5", "-serial",
         f"unix:{sock},server=on"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        line = proc2.stderr.readline()
        assert line == f"QEMU waiting for connection on: disconnected:unix:{sock},server\n" \
            .encode()
        # --timeout runs during the wait: nobody connects, the run ends with 124
        assert proc2.wait(30) == 124
        assert b"timed out after 5 s" in proc2.stderr.read()
    finally:
        proc2.kill()
        proc2.wait()
        proc2.stderr.close()
