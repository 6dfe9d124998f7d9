"""The examples under examples/ run and print exactly what they promise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BANNER = b"hello from rv64 on an e2kchar ns16550a\n"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unicorn_riscv_16550_runs_as_a_script() -> None:
    res = subprocess.run([sys.executable, str(EXAMPLES / "unicorn_riscv_16550.py")],
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == BANNER + b"PING\n"


def test_unicorn_riscv_16550_echo_goes_through_the_interrupt(reg, tmp_path, capsys) -> None:
    ex = _load("unicorn_riscv_16550")
    assert ex.main(["--input", "Echo, 2 lines?\nnot this\n"]) == BANNER + b"ECHO, 2 LINES?\n"
    assert capsys.readouterr().out == (BANNER + b"ECHO, 2 LINES?\n").decode()

    # the same guest on a machine built here: the echo exists only in the trap handler,
    # and every received byte raised the UART's line (no FIFO: one byte at a time)
    out, src = tmp_path / "out", tmp_path / "in"
    src.write_bytes(b"abc\n")
    machine = ex.TinyMachine(reg.new("u", f"file,path={out},input-path={src}"))
    try:
        machine.load(ex.guest_program())
        machine.run()
        assert machine.irq.raises == 4
        assert not machine.irq.level
        assert machine.uc.reg_read(ex.R.UC_RISCV_REG_MCAUSE) == (1 << 63) | 9
    finally:
        machine.close()
    assert out.read_bytes() == BANNER + b"ABC\n"


def test_unicorn_aarch64_16550_takes_the_irq_for_the_cpu(reg, tmp_path, capsys) -> None:
    ex = _load("unicorn_aarch64_16550")
    banner = b"hello from aarch64 on an e2kchar ns16550a\n"
    assert ex.main([]) == banner + b"PING\n"
    assert capsys.readouterr().out == (banner + b"PING\n").decode()

    out, src = tmp_path / "out", tmp_path / "in"
    src.write_bytes(b"Arm 64\n")
    machine = ex.TinyArmMachine(reg.new("u", f"file,path={out},input-path={src}"))
    try:
        machine.load(ex.guest_program())
        machine.run()
        # the echo exists only in the IRQ handler: the host took the exception at least
        # once, and each of the seven bytes raised the line
        assert machine.irqs_taken >= 1
        assert machine.irq.raises == 7
        assert not machine.irq.level
    finally:
        machine.close()
    assert out.read_bytes() == banner + b"ARM 64\n"
