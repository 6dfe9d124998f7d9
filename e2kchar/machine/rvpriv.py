"""RISC-V privileged-architecture numbers the CPU side uses (mstatus, mip/mie bits, causes)."""

from __future__ import annotations

U64 = (1 << 64) - 1
PRIV_U, PRIV_S, PRIV_M = 0, 1, 3
MSTATUS_SIE, MSTATUS_MIE, MSTATUS_SPIE, MSTATUS_MPIE = 1 << 1, 1 << 3, 1 << 5, 1 << 7
MSTATUS_SPP, MSTATUS_MPP = 1 << 8, 3 << 11
MIP_MSIP, MIP_MTIP, MIP_SEIP, MIP_MEIP = 1 << 3, 1 << 7, 1 << 9, 1 << 11
CAUSE_INSN_ACCESS, CAUSE_ILLEGAL, CAUSE_BREAKPOINT = 1, 2, 3
CAUSE_LOAD_MISALIGNED, CAUSE_LOAD_ACCESS = 4, 5
CAUSE_STORE_MISALIGNED, CAUSE_STORE_ACCESS = 6, 7
CAUSE_ECALL_U, CAUSE_ECALL_S, CAUSE_ECALL_M = 8, 9, 11
CAUSE_FETCH_PAGE, CAUSE_LOAD_PAGE, CAUSE_STORE_PAGE = 12, 13, 15
IRQ_MSI, IRQ_MTI, IRQ_MEI = 3, 7, 11
EBREAK, C_EBREAK = 0x00100073, 0x9002
CAUSE_NAMES = {0: "instruction address misaligned", 1: "instruction access fault",
               2: "illegal instruction", 3: "breakpoint", 4: "load address misaligned",
               5: "load access fault", 6: "store address misaligned", 7: "store access fault",
               8: "ecall from U-mode", 9: "ecall from S-mode", 11: "ecall from M-mode",
               12: "instruction page fault", 13: "load page fault", 15: "store page fault"}
INTERRUPT_NAMES = {1: "supervisor software interrupt", 3: "machine software interrupt",
                   5: "supervisor timer interrupt", 7: "machine timer interrupt",
                   9: "supervisor external interrupt", 11: "machine external interrupt"}
