"""Just enough RV64 decoding for the harness: integer loads/stores (to retire an MMIO access
that a stop rolled back, and to find a faulting address) and `csrr rd, time`."""

from __future__ import annotations

from typing import NamedTuple

WFI = 0x10500073


class MemInsn(NamedTuple):
    store: bool
    width: int      # bytes
    signed: bool    # loads only
    reg: int        # rd for loads, rs2 for stores
    base: int       # rs1
    imm: int
    length: int     # 2 or 4


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def sign_extend(value: int, width: int) -> int:
    """Sign-extend a width-byte value to an unsigned 64-bit register value."""
    return _sext(value, 8 * width) & ((1 << 64) - 1)


def insn_length(lo16: int) -> int:
    return 4 if lo16 & 3 == 3 else 2


def decode_mem(insn: int) -> MemInsn | None:
    """Decode an integer load/store (incl. the compressed forms); None for anything else."""
    if insn & 3 == 3:
        op, f3 = insn & 0x7F, insn >> 12 & 7
        rd, rs1, rs2 = insn >> 7 & 31, insn >> 15 & 31, insn >> 20 & 31
        if op == 0x03 and f3 != 7:
            return MemInsn(False, 1 << (f3 & 3), f3 < 4, rd, rs1, _sext(insn >> 20, 12), 4)
        if op == 0x23 and f3 < 4:
            imm = _sext((insn >> 25) << 5 | (insn >> 7 & 31), 12)
            return MemInsn(True, 1 << f3, False, rs2, rs1, imm, 4)
        return None
    c = insn & 0xFFFF
    op, f3 = c & 3, c >> 13 & 7

    def b(hi: int, lo: int) -> int:
        return c >> lo & ((1 << (hi - lo + 1)) - 1)

    if op == 0:
        rdp, rs1p = b(4, 2) + 8, b(9, 7) + 8
        imm_w = b(5, 5) << 6 | b(12, 10) << 3 | b(6, 6) << 2
        imm_d = b(6, 5) << 6 | b(12, 10) << 3
        if f3 == 2:
            return MemInsn(False, 4, True, rdp, rs1p, imm_w, 2)
        if f3 == 3:
            return MemInsn(False, 8, True, rdp, rs1p, imm_d, 2)
        if f3 == 6:
            return MemInsn(True, 4, False, rdp, rs1p, imm_w, 2)
        if f3 == 7:
            return MemInsn(True, 8, False, rdp, rs1p, imm_d, 2)
    elif op == 2:
        rd = b(11, 7)
        if f3 == 2 and rd:
            return MemInsn(False, 4, True, rd, 2, b(12, 12) << 5 | b(6, 4) << 2 | b(3, 2) << 6, 2)
        if f3 == 3 and rd:
            return MemInsn(False, 8, True, rd, 2, b(12, 12) << 5 | b(6, 5) << 3 | b(4, 2) << 6, 2)
        if f3 == 6:
            return MemInsn(True, 4, False, b(6, 2), 2, b(12, 9) << 2 | b(8, 7) << 6, 2)
        if f3 == 7:
            return MemInsn(True, 8, False, b(6, 2), 2, b(12, 10) << 3 | b(9, 7) << 6, 2)
    return None


def decode_rdtime(insn: int) -> int | None:
    """rd of `csrrs rd, time, x0` (rdtime), or None."""
    if insn & 0xFFFFF07F == 0xC0102073:
        return insn >> 7 & 31
    return None


def decode_amo_base(insn: int) -> int | None:
    """rs1 of an atomic (LR/SC/AMO*: the address is rs1, no offset), or None."""
    if insn & 0x7F == 0x2F:
        return insn >> 15 & 31
    return None


def is_amo_store(insn: int) -> bool:
    """SC or an AMO (a store/AMO fault), not LR (a load)."""
    return insn & 0x7F == 0x2F and insn >> 27 != 0b00010
