"""A small ELF64 loader for RISC-V guests: PT_LOAD segments only, headers declared with construct."""

from __future__ import annotations

from dataclasses import dataclass, field

from construct import (
    Array,
    Bytes,
    Const,
    ConstructError,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Struct,
)

from ..errors import E2kcharError

EM_RISCV = 243
PT_LOAD = 1
PF_X = 1

ElfIdent = Struct(
    "magic" / Const(b"\x7fELF"),
    "ei_class" / Int8ul,    # 2 = 64-bit
    "ei_data" / Int8ul,     # 1 = little-endian
    "ei_version" / Int8ul,
    "pad" / Bytes(9),
)

Elf64Header = Struct(
    "ident" / ElfIdent,
    "e_type" / Int16ul,
    "e_machine" / Int16ul,
    "e_version" / Int32ul,
    "e_entry" / Int64ul,
    "e_phoff" / Int64ul,
    "e_shoff" / Int64ul,
    "e_flags" / Int32ul,
    "e_ehsize" / Int16ul,
    "e_phentsize" / Int16ul,
    "e_phnum" / Int16ul,
    "e_shentsize" / Int16ul,
    "e_shnum" / Int16ul,
    "e_shstrndx" / Int16ul,
)

Elf64Phdr = Struct(
    "p_type" / Int32ul,
    "p_flags" / Int32ul,
    "p_offset" / Int64ul,
    "p_vaddr" / Int64ul,
    "p_paddr" / Int64ul,
    "p_filesz" / Int64ul,
    "p_memsz" / Int64ul,
    "p_align" / Int64ul,
)


class ElfError(E2kcharError, ValueError):
    """The file is not a loadable RV64 ELF for this machine."""


@dataclass
class Segment:
    addr: int
    data: bytes
    memsz: int
    executable: bool


@dataclass
class ElfImage:
    entry: int
    segments: list[Segment] = field(default_factory=list)


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def parse_elf(data: bytes, *, name: str = "image") -> ElfImage:
    """Parse the PT_LOAD segments (physical addresses) of an RV64 little-endian ELF."""
    try:
        hdr = Elf64Header.parse(data)
    except ConstructError as exc:
        raise ElfError(f"{name}: not a valid ELF file ({exc})") from None
    if hdr.ident.ei_class != 2 or hdr.ident.ei_data != 1:
        raise ElfError(f"{name}: not a 64-bit little-endian ELF (class {hdr.ident.ei_class}, "
                       f"data {hdr.ident.ei_data}); the machine's CPU is RV64")
    if hdr.e_machine != EM_RISCV:
        raise ElfError(f"{name}: ELF machine {hdr.e_machine} is not RISC-V ({EM_RISCV}); "
                       "build the driver with tools/build_firmware.py")
    if hdr.e_phentsize != Elf64Phdr.sizeof():
        raise ElfError(f"{name}: bad program header size {hdr.e_phentsize}")
    end = hdr.e_phoff + hdr.e_phnum * hdr.e_phentsize
    if end > len(data):
        raise ElfError(f"{name}: program headers run past the end of the file")
    try:
        phdrs = Array(hdr.e_phnum, Elf64Phdr).parse(data[hdr.e_phoff:end])
    except ConstructError as exc:
        raise ElfError(f"{name}: bad program headers ({exc})") from None
    image = ElfImage(entry=hdr.e_entry)
    for ph in phdrs:
        if ph.p_type != PT_LOAD or ph.p_memsz == 0:
            continue
        if ph.p_filesz > ph.p_memsz or ph.p_offset + ph.p_filesz > len(data):
            raise ElfError(f"{name}: PT_LOAD segment at {ph.p_paddr:#x} has a bad size/offset")
        image.segments.append(Segment(
            addr=ph.p_paddr, data=bytes(data[ph.p_offset:ph.p_offset + ph.p_filesz]),
            memsz=ph.p_memsz, executable=bool(ph.p_flags & PF_X)))
    if not image.segments:
        raise ElfError(f"{name}: no PT_LOAD segments")
    return image
