#!/usr/bin/env python3
"""An e2kchar NS16550A in an emulator of your own: a bare unicorn RV64 machine built here.

Nothing of e2kchar.machine is used: this is what any outside emulator does to host the
device models (docs/embedding.md explains each step).

- RAM at 0x8000_0000 holds a few hand-assembled RV64 instructions (encoded below; no
  toolchain needed).
- The UART is mapped at 0x1000_0000 with ``uc.mmio_map``: the callbacks call the device's
  ``read(offset, size)`` / ``write(offset, size, value)``.
- Its ``IrqLine`` drives ``mip.SEIP`` (bit 9), the external-interrupt bit unicorn lets the
  host write, and unicorn takes the trap to ``mtvec`` itself (cause 9).
- The chardev comes from a ``ChardevRegistry``: by default a file backend whose output is
  a file and whose input is another file (``--chardev`` takes any ``-chardev`` spec).
- A write of 0x5555 to 0x0010_0000 ends the run (the SiFive test device's "pass").

The guest prints a banner by polling LSR.THRE, enables the receive interrupt (IER.RDI),
then sleeps in ``wfi``; its interrupt handler echoes each received byte in upper case and
ends the run after a newline.

Run: ``python examples/unicorn_riscv_16550.py`` prints what came out of the UART;
``python examples/unicorn_riscv_16550.py --chardev stdio`` lets you type (end with Enter).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from e2kchar.devices import IrqLine, Ns16550a
from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, UC_PROT_ALL, Uc
from unicorn import riscv_const as R

from e2kchar import Chardev, ChardevRegistry

log = logging.getLogger("unicorn_riscv_16550")

RAM_BASE, RAM_SIZE = 0x8000_0000, 0x1_0000
UART_BASE = 0x1000_0000
EXIT_BASE = 0x0010_0000
PAGE = 0x1000
MIP_SEIP = 1 << 9  # supervisor external interrupt pending: writable from the host
WFI = 0x1050_0073

BANNER = "hello from rv64 on an e2kchar ns16550a\n"

# --------------------------------------------------------------------------------------------
# a tiny RV64 assembler: enough instructions for the guest below

ZERO, T0, T1, T2, S0, S1, T3 = 0, 5, 6, 7, 8, 9, 28
CSR_MSTATUS, CSR_MIE, CSR_MTVEC = 0x300, 0x304, 0x305

Insn = Callable[[int, dict[str, int]], int]  # (its address, labels) -> encoding


def _i(op: int, f3: int, rd: int, rs1: int, imm: int) -> int:
    return (imm & 0xFFF) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op


def _s(f3: int, rs1: int, rs2: int, imm: int) -> int:
    return ((imm >> 5) & 0x7F) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1F) << 7 | 0x23


def _b(f3: int, rs1: int, rs2: int, off: int) -> int:
    return (((off >> 12) & 1) << 31 | ((off >> 5) & 0x3F) << 25 | rs2 << 20 | rs1 << 15
            | f3 << 12 | ((off >> 1) & 0xF) << 8 | ((off >> 11) & 1) << 7 | 0x63)


def _j(rd: int, off: int) -> int:
    return (((off >> 20) & 1) << 31 | ((off >> 1) & 0x3FF) << 21 | ((off >> 11) & 1) << 20
            | ((off >> 12) & 0xFF) << 12 | rd << 7 | 0x6F)


class Asm:
    """Collects instructions and labels; assemble() resolves the labels (all insns 4 bytes)."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.items: list[Insn] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = self.base + 4 * len(self.items)

    def emit(self, insn: Insn | int) -> None:
        if isinstance(insn, int):
            word = insn

            def insn(pc: int, lab: dict[str, int]) -> int:
                return word
        self.items.append(insn)

    # the instructions used
    def lui(self, rd: int, imm20: int) -> None:
        self.emit((imm20 & 0xFFFFF) << 12 | rd << 7 | 0x37)

    def addi(self, rd: int, rs1: int, imm: int) -> None:
        self.emit(_i(0x13, 0, rd, rs1, imm))

    def andi(self, rd: int, rs1: int, imm: int) -> None:
        self.emit(_i(0x13, 7, rd, rs1, imm))

    def sltiu(self, rd: int, rs1: int, imm: int) -> None:
        self.emit(_i(0x13, 3, rd, rs1, imm))

    def lbu(self, rd: int, rs1: int, imm: int) -> None:
        self.emit(_i(0x03, 4, rd, rs1, imm))

    def sb(self, rs2: int, rs1: int, imm: int) -> None:
        self.emit(_s(0, rs1, rs2, imm))

    def sw(self, rs2: int, rs1: int, imm: int) -> None:
        self.emit(_s(2, rs1, rs2, imm))

    def csrrw(self, rd: int, csr: int, rs1: int) -> None:
        self.emit(_i(0x73, 1, rd, rs1, csr))

    def csrrs(self, rd: int, csr: int, rs1: int) -> None:
        self.emit(_i(0x73, 2, rd, rs1, csr))

    def csrrsi(self, rd: int, csr: int, uimm: int) -> None:
        self.emit(_i(0x73, 6, rd, uimm, csr))

    def la(self, rd: int, name: str) -> None:
        """auipc rd, hi ; addi rd, rd, lo (pc-relative, like the assembler's `la`)."""
        def hi(pc: int, lab: dict[str, int]) -> int:
            off = lab[name] - pc
            return ((off + 0x800) >> 12 & 0xFFFFF) << 12 | rd << 7 | 0x17

        def lo(pc: int, lab: dict[str, int]) -> int:
            return _i(0x13, 0, rd, rd, lab[name] - (pc - 4))
        self.emit(hi)
        self.emit(lo)

    def beq(self, rs1: int, rs2: int, name: str) -> None:
        self.emit(lambda pc, lab: _b(0, rs1, rs2, lab[name] - pc))

    def bne(self, rs1: int, rs2: int, name: str) -> None:
        self.emit(lambda pc, lab: _b(1, rs1, rs2, lab[name] - pc))

    def j(self, name: str) -> None:
        self.emit(lambda pc, lab: _j(ZERO, lab[name] - pc))

    def assemble(self, data: bytes = b"") -> bytes:
        code = b"".join((f(self.base + 4 * i, self.labels) & 0xFFFFFFFF).to_bytes(4, "little")
                        for i, f in enumerate(self.items))
        return code + data


def guest_program() -> bytes:
    """The guest: banner by polling, then echo in upper case from the interrupt handler."""
    a = Asm(RAM_BASE)
    a.lui(S0, UART_BASE >> 12)          # s0 = UART
    a.la(T0, "trap")
    a.csrrw(ZERO, CSR_MTVEC, T0)        # mtvec = trap (direct mode)
    a.la(S1, "msg")
    a.label("puts")
    a.lbu(T1, S1, 0)
    a.beq(T1, ZERO, "puts_done")
    a.label("wait_thre")
    a.lbu(T2, S0, 5)                    # LSR
    a.andi(T2, T2, 0x20)                # THRE
    a.beq(T2, ZERO, "wait_thre")
    a.sb(T1, S0, 0)                     # THR
    a.addi(S1, S1, 1)
    a.j("puts")
    a.label("puts_done")
    a.addi(T0, ZERO, 1)
    a.sb(T0, S0, 1)                     # IER = RDI (receive interrupt)
    a.addi(T0, ZERO, MIP_SEIP)
    a.csrrs(ZERO, CSR_MIE, T0)          # mie.SEIE
    a.csrrsi(ZERO, CSR_MSTATUS, 8)      # mstatus.MIE
    a.label("idle")
    a.emit(WFI)
    a.j("idle")

    a.label("trap")                     # every trap here is the UART's interrupt
    a.lbu(T1, S0, 5)                    # LSR
    a.andi(T1, T1, 1)                   # DR
    a.beq(T1, ZERO, "trap_ret")
    a.lbu(T1, S0, 0)                    # RBR (reading the last byte lowers the line)
    a.addi(T2, T1, -ord("a"))
    a.sltiu(T2, T2, 26)                 # 'a' <= c <= 'z' ?
    a.beq(T2, ZERO, "echo")
    a.addi(T1, T1, -32)
    a.label("echo")
    a.lbu(T3, S0, 5)
    a.andi(T3, T3, 0x20)
    a.beq(T3, ZERO, "echo")
    a.sb(T1, S0, 0)
    a.addi(T2, ZERO, ord("\n"))
    a.bne(T1, T2, "trap")               # more input waiting?
    a.lui(T0, EXIT_BASE >> 12)
    a.lui(T1, 0x5)
    a.addi(T1, T1, 0x555)
    a.sw(T1, T0, 0)                     # exit device: pass
    a.label("trap_ret")
    a.emit(0x3020_0073)                 # mret
    a.label("msg")
    return a.assemble(BANNER.encode() + b"\0")


# --------------------------------------------------------------------------------------------
# the machine


class TinyMachine:
    """RAM, one UART, an exit page and a CPU loop that delivers the UART's interrupt.

    Threads: run() is the CPU thread; unicorn calls the MMIO callbacks on it. The UART's
    IrqLine may change on the CPU thread (inside a callback, during a register access) or on
    the registry's I/O thread (input arrived). Only the CPU thread touches unicorn: inside a
    callback it writes mip.SEIP at once; from elsewhere it only wakes the loop, which
    applies the line before the next emu_start.
    """

    def __init__(self, uart_chardev: Chardev | None) -> None:
        self.uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        self.uc.mem_map(RAM_BASE, RAM_SIZE, UC_PROT_ALL)
        self.wake = threading.Event()
        self.cpu_thread: int | None = None
        self.in_emu = False
        self.exited = False
        self.irq = IrqLine(on_change=self._irq_changed)
        self.uart = Ns16550a(chardev=uart_chardev, irq=self.irq)
        uart = self.uart
        self.uc.mmio_map(UART_BASE, PAGE,
                         lambda uc, off, size, ud: uart.read(off, size), None,
                         lambda uc, off, size, value, ud: uart.write(off, size, value), None)
        self.uc.mmio_map(EXIT_BASE, PAGE, lambda uc, off, size, ud: 0, None,
                         self._exit_write, None)

    def _irq_changed(self, level: bool) -> None:
        # called with the UART's lock held, on whichever thread changed the line
        if self.in_emu and threading.get_ident() == self.cpu_thread:
            self._apply_irq()          # inside an MMIO callback: the CPU is ours to touch
        else:
            self.wake.set()            # another thread: never touch unicorn, wake the loop

    def _apply_irq(self) -> None:
        mip = self.uc.reg_read(R.UC_RISCV_REG_MIP)
        want = mip | MIP_SEIP if self.irq.level else mip & ~MIP_SEIP
        if want != mip:
            self.uc.reg_write(R.UC_RISCV_REG_MIP, want)

    def _exit_write(self, uc: Uc, off: int, size: int, value: int, ud: object) -> None:
        if off == 0 and value & 0xFFFF == 0x5555:
            self.exited = True
            uc.emu_stop()   # stopping in a callback repeats the access on resume: we never resume

    def load(self, code: bytes) -> None:
        self.uc.mem_write(RAM_BASE, code)
        self.uc.reg_write(R.UC_RISCV_REG_PC, RAM_BASE)

    def run(self, timeout: float = 10.0) -> None:
        """Run until the guest exits; interrupts are applied at every emu_start boundary."""
        self.cpu_thread = threading.get_ident()
        deadline = time.monotonic() + timeout
        uc = self.uc
        while not self.exited:
            self.wake.clear()          # clear first, then look: no wake-up is lost
            self._apply_irq()
            pc = uc.reg_read(R.UC_RISCV_REG_PC)
            self.in_emu = True
            try:
                # count= stops on an exact instruction boundary, so a guest that never
                # sleeps still sees host-side interrupt changes between slices
                uc.emu_start(pc, 0, count=100_000)
            finally:
                self.in_emu = False
            if self.exited:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the guest did not exit in time")
            pc = uc.reg_read(R.UC_RISCV_REG_PC)
            slept = pc - 4 >= RAM_BASE and int.from_bytes(uc.mem_read(pc - 4, 4), "little") == WFI
            if slept and not self.irq.level:
                # the guest sleeps: wait for the line (or a slice of host time)
                self.wake.wait(max(0.0, min(0.1, deadline - time.monotonic())))

    def close(self) -> None:
        self.uart.close()


def main(argv: list[str] | None = None) -> bytes:
    """Run the guest; return (and print) what it wrote when the output is a file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chardev", help="-chardev spec for the UART (default: files)")
    parser.add_argument("--input", default="ping\n", help="guest input (default: ping)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, ChardevRegistry() as reg:
        out = Path(tmp, "uart-out.txt")
        if args.chardev is None:
            src = Path(tmp, "uart-in.txt")
            src.write_text(args.input)
            spec = f"file,path={out},input-path={src}"
        else:
            spec = args.chardev
        machine = TinyMachine(reg.new("uart", spec))
        try:
            machine.load(guest_program())
            machine.run()
        finally:
            machine.close()
        data = out.read_bytes() if args.chardev is None else b""
    sys.stdout.write(data.decode())
    return data


if __name__ == "__main__":
    main()
