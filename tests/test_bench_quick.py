"""tools/bench --quick runs end to end and reports every workload (no speed thresholds)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "tools" / "bench"
KEYS = ["tx16550", "tx16550_big", "txzs", "virtio", "echo", "hotswap", "startup"]
TITLES = ["16550 polled -> file", "Am85C30 polled -> file", "virtio-console -> file",
          "socket -> 16550 irq echo", "QMP chardev-change", "start-up to first guest byte"]


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


@pytest.mark.timeout(180)
def test_quick_prints_every_row(tmp_path: Path) -> None:
    proc, result = _run(tmp_path)
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    for title in TITLES:
        assert any(title in ln for ln in table), f"no row for {title!r}:\n{proc.stdout}"
    assert [r["key"] for r in result["rows"]] == KEYS
    have_qemu = shutil.which("qemu-system-riscv64") is not None
    for row in result["rows"]:
        assert row["e2kchar"] is not None and row["e2kchar"] > 0, row
        assert row["lost_e2kchar"] == 0, row
        assert not row["errors"]["e2kchar"], row
        if have_qemu and row["key"] != "txzs":
            assert row["qemu"] is not None and row["ratio"] is not None, row
        else:
            assert row["qemu"] is None and row["ratio"] is None, row
    info = result["machine"]
    assert info["cpu"] and info["cores"] >= 1 and info["python"]


@pytest.mark.timeout(120)
def test_without_qemu_the_qemu_columns_say_na(tmp_path: Path) -> None:
    proc, result = _run(tmp_path, "--no-qemu", "--only", "startup,tx16550")
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and "workload" not in ln]
    assert len(rows) == 2, proc.stdout
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[3] == "n/a" and cells[4] == "n/a", ln  # QEMU median, ratio
        assert cells[2] != "n/a", ln
    assert result["machine"]["qemu"] == "n/a"
    assert [r["key"] for r in result["rows"]] == ["tx16550", "startup"]


@pytest.mark.timeout(120)
def test_instruction_counts_come_from_callgrind(tmp_path: Path) -> None:
    """The instructions column: callgrind's count of a whole process, or a clear refusal
    of --callgrind where valgrind is not installed (no silent 'n/a')."""
    if shutil.which("valgrind") is None:
        proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--callgrind",
                               "--json", str(tmp_path / "b.json")],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 2 and "--callgrind needs valgrind" in proc.stderr
        return
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import callgrind_polled
    finally:
        sys.path.remove(str(ROOT / "tools"))
    small = callgrind_polled.count(["/bin/true"], timeout=60)
    bigger = callgrind_polled.count(["/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do "
                                     "i=$((i+1)); done"], timeout=60)
    assert 0 < small < bigger
    with pytest.raises(callgrind_polled.CallgrindError):
        callgrind_polled.count(["/bin/false"], timeout=60)


@pytest.mark.timeout(300)
def test_rows_on_stock_guests_run_when_named(tmp_path: Path) -> None:
    """The stock-guest rows (tools/bench_console.py, tools/bench_idle.py) measure for real:
    the demo ROM at rest, and keystroke echo at Debian's U-Boot through rfc2217://."""
    proc, result = _run(tmp_path, "--no-qemu", "--only", "idle_demo,echo_uboot_rfc2217")
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ["idle_demo", "echo_uboot_rfc2217"], proc.stdout
    for row in rows.values():
        assert not row["errors"]["e2kchar"], row
        assert row["e2kchar"] is not None, row
    assert rows["idle_demo"]["e2kchar"] >= 0
    echo = rows["echo_uboot_rfc2217"]
    assert echo["e2kchar"] > 0
    sample = echo["samples"]["e2kchar"][0]
    assert sample["extra"]["p99_ms"] >= echo["e2kchar"]
    assert "QEMU has no RFC 2217 server" in proc.stdout
