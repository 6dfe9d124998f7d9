#!/usr/bin/env python3
"""An e2kchar NS16550A in a bare unicorn AArch64 machine: the ARM variant of the RISC-V example.

The same guest as examples/unicorn_riscv_16550.py, hand-assembled for AArch64 (EL1): print a
banner by polling LSR.THRE, enable IER.RDI, unmask IRQs, sleep in ``wfi``; the IRQ handler
echoes received bytes in upper case and ends the run after a newline.

The difference is the interrupt. unicorn's AArch64 CPU has no interrupt controller and no
pending bit the host can set, so the host takes the IRQ exception itself, as the CPU would,
at an exact stopping point (the guest's ``wfi`` or the end of a ``count=`` slice, never an
asynchronous ``emu_stop``): SPSR_EL1 = PSTATE, ELR_EL1 = PC, PSTATE = EL1h with DAIF masked,
PC = VBAR_EL1 + 0x280 (IRQ, current EL with SP_ELx). The handler returns with ``eret``.
See docs/embedding.md for the threads and the RISC-V recipe, where unicorn takes the trap.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from e2kchar.devices import IrqLine, Ns16550a
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn import arm64_const as A

from e2kchar import Chardev, ChardevRegistry

RAM_BASE, RAM_SIZE = 0x4000_0000, 0x1_0000
VECTORS = RAM_BASE + 0x800      # VBAR_EL1 must be 2 KiB aligned
IRQ_VECTOR = VECTORS + 0x280    # IRQ taken from the current EL, using SP_ELx
UART_BASE = 0x0900_0000
EXIT_BASE = 0x0910_0000
PAGE = 0x1000
WFI = 0xD503_207F
PSTATE_I = 1 << 7
PSTATE_DAIF = 0xF << 6
PSTATE_EL1H = 0x5
SPSR_EL1 = (4, 0, 3, 0, 0)      # (CRn, CRm, op0, op1, op2) for UC_ARM64_REG_CP_REG

BANNER = "hello from aarch64 on an e2kchar ns16550a\n"

# --------------------------------------------------------------------------------------------
# a tiny AArch64 assembler: the instructions the guest uses, branch targets by label

X0, X1, X2, X3, X4, X5, X6 = range(7)
COND_NE, COND_HS = 0x1, 0x2


class Asm:
    def __init__(self, base: int) -> None:
        self.base = base
        self.words: list[int | tuple[str, str, int]] = []   # encoding, or a branch to fix up
        self.labels: dict[str, int] = {}

    def here(self) -> int:
        return self.base + 4 * len(self.words)

    def label(self, name: str) -> None:
        self.labels[name] = self.here()

    def align(self, addr: int) -> None:
        while self.here() < addr:
            self.words.append(0xD503_201F)  # nop

    def emit(self, word: int) -> None:
        self.words.append(word)

    def movz(self, rd: int, imm16: int, shift: int = 0, w: bool = False) -> None:
        self.emit((0x5280_0000 if w else 0xD280_0000) | (shift // 16) << 21 | imm16 << 5 | rd)

    def ldrb(self, rt: int, rn: int, off: int = 0) -> None:
        self.emit(0x3940_0000 | off << 10 | rn << 5 | rt)

    def strb(self, rt: int, rn: int, off: int = 0) -> None:
        self.emit(0x3900_0000 | off << 10 | rn << 5 | rt)

    def str_w(self, rt: int, rn: int) -> None:
        self.emit(0xB900_0000 | rn << 5 | rt)

    def add(self, rd: int, rn: int, imm: int) -> None:       # 64-bit
        self.emit(0x9100_0000 | imm << 10 | rn << 5 | rd)

    def sub_w(self, rd: int, rn: int, imm: int) -> None:
        self.emit(0x5100_0000 | imm << 10 | rn << 5 | rd)

    def cmp_w(self, rn: int, imm: int) -> None:
        self.emit(0x7100_0000 | imm << 10 | rn << 5 | 31)

    def adr(self, rd: int, name: str) -> None:
        self.words.append(("adr", name, rd))

    def b(self, name: str) -> None:
        self.words.append(("b", name, 0))

    def b_cond(self, cond: int, name: str) -> None:
        self.words.append(("b.cond", name, cond))

    def cbz(self, rt: int, name: str) -> None:
        self.words.append(("cbz", name, rt))

    def tbz(self, rt: int, bit: int, name: str) -> None:
        self.words.append(("tbz", name, rt | bit << 8))

    def assemble(self, data: bytes) -> bytes:
        out = bytearray()
        for i, w in enumerate(self.words):
            if isinstance(w, tuple):
                kind, name, arg = w
                off = self.labels[name] - (self.base + 4 * i)
                if kind == "adr":
                    w = (off & 3) << 29 | 0x1000_0000 | ((off >> 2) & 0x7FFFF) << 5 | arg
                elif kind == "b":
                    w = 0x1400_0000 | ((off >> 2) & 0x3FF_FFFF)
                elif kind == "b.cond":
                    w = 0x5400_0000 | ((off >> 2) & 0x7FFFF) << 5 | arg
                elif kind == "cbz":
                    w = 0x3400_0000 | ((off >> 2) & 0x7FFFF) << 5 | arg
                else:  # tbz: arg = rt | bit << 8
                    rt, bit = arg & 0xFF, arg >> 8
                    w = 0x3600_0000 | (bit & 0x1F) << 19 | ((off >> 2) & 0x3FFF) << 5 | rt
            out += w.to_bytes(4, "little")
        return bytes(out) + data


def guest_program() -> bytes:
    a = Asm(RAM_BASE)
    a.movz(X0, UART_BASE >> 16, shift=16)       # x0 = UART
    a.adr(X1, "vectors")
    a.emit(0xD518_C000 | X1)                    # msr vbar_el1, x1
    a.adr(X1, "msg")
    a.label("puts")
    a.ldrb(X2, X1)
    a.cbz(X2, "puts_done")
    a.label("wait_thre")
    a.ldrb(X3, X0, 5)                           # LSR
    a.tbz(X3, 5, "wait_thre")                   # THRE
    a.strb(X2, X0, 0)                           # THR
    a.add(X1, X1, 1)
    a.b("puts")
    a.label("puts_done")
    a.movz(X3, 1, w=True)
    a.strb(X3, X0, 1)                           # IER = RDI
    a.emit(0xD503_42FF)                         # msr daifclr, #2: unmask IRQs
    a.label("idle")
    a.emit(WFI)
    a.b("idle")

    a.align(VECTORS)
    a.label("vectors")
    a.align(IRQ_VECTOR)
    a.label("irq")                              # the UART's interrupt
    a.ldrb(X3, X0, 5)                           # LSR
    a.tbz(X3, 0, "irq_ret")                     # DR
    a.ldrb(X2, X0, 0)                           # RBR (reading the last byte lowers the line)
    a.sub_w(X4, X2, ord("a"))
    a.cmp_w(X4, 26)
    a.b_cond(COND_HS, "echo")                   # not 'a'..'z'
    a.sub_w(X2, X2, 32)
    a.label("echo")
    a.ldrb(X3, X0, 5)
    a.tbz(X3, 5, "echo")
    a.strb(X2, X0, 0)
    a.cmp_w(X2, ord("\n"))
    a.b_cond(COND_NE, "irq")                    # more input waiting?
    a.movz(X5, 0x5555, w=True)
    a.movz(X6, EXIT_BASE >> 16, shift=16)
    a.str_w(X5, X6)                             # exit device: pass
    a.label("irq_ret")
    a.emit(0xD69F_03E0)                         # eret
    a.label("msg")
    return a.assemble(BANNER.encode() + b"\0")


# --------------------------------------------------------------------------------------------
# the machine


class TinyArmMachine:
    """RAM, one UART, an exit page, and a CPU loop that takes the UART's IRQ for the CPU.

    The IrqLine's on_change only records and wakes (it may run on any thread, with the
    UART's lock held); the loop, on the CPU thread between two emu_starts, delivers it.
    """

    def __init__(self, uart_chardev: Chardev | None) -> None:
        self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        self.uc.mem_map(RAM_BASE, RAM_SIZE, UC_PROT_ALL)
        self.wake = threading.Event()
        self.exited = False
        self.irqs_taken = 0
        self.irq = IrqLine(on_change=lambda level: self.wake.set())
        self.uart = Ns16550a(chardev=uart_chardev, irq=self.irq)
        uart = self.uart
        self.uc.mmio_map(UART_BASE, PAGE,
                         lambda uc, off, size, ud: uart.read(off, size), None,
                         lambda uc, off, size, value, ud: uart.write(off, size, value), None)
        self.uc.mmio_map(EXIT_BASE, PAGE, lambda uc, off, size, ud: 0, None,
                         self._exit_write, None)

    def _exit_write(self, uc: Uc, off: int, size: int, value: int, ud: object) -> None:
        if off == 0 and value & 0xFFFF == 0x5555:
            self.exited = True
            uc.emu_stop()   # stopping in a callback repeats the access on resume: we never resume

    def load(self, code: bytes) -> None:
        self.uc.mem_write(RAM_BASE, code)
        self.uc.reg_write(A.UC_ARM64_REG_PC, RAM_BASE)

    def _take_irq(self) -> bool:
        """The IRQ exception, as the CPU takes it, if the line is high and PSTATE.I clear."""
        uc = self.uc
        pstate = uc.reg_read(A.UC_ARM64_REG_PSTATE)
        if not self.irq.level or pstate & PSTATE_I:
            return False
        uc.reg_write(A.UC_ARM64_REG_CP_REG, (*SPSR_EL1, pstate))
        uc.reg_write(A.UC_ARM64_REG_ELR_EL1, uc.reg_read(A.UC_ARM64_REG_PC))
        uc.reg_write(A.UC_ARM64_REG_PSTATE, (pstate & ~0xF) | PSTATE_DAIF | PSTATE_EL1H)
        uc.reg_write(A.UC_ARM64_REG_PC, uc.reg_read(A.UC_ARM64_REG_VBAR_EL1) + 0x280)
        self.irqs_taken += 1
        return True

    def run(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        uc = self.uc
        while not self.exited:
            self.wake.clear()          # clear first, then look: no wake-up is lost
            self._take_irq()
            pc = uc.reg_read(A.UC_ARM64_REG_PC)
            uc.emu_start(pc, 0, count=100_000)   # exact stop: a guest that never sleeps
            if self.exited:                       # still sees the line between slices
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the guest did not exit in time")
            pc = uc.reg_read(A.UC_ARM64_REG_PC)
            slept = pc - 4 >= RAM_BASE and int.from_bytes(uc.mem_read(pc - 4, 4), "little") == WFI
            if slept and not self.irq.level:
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
        machine = TinyArmMachine(reg.new("uart", spec))
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
