"""A small ELF64 loader for RISC-V guests: PT_LOAD segments only.

The headers are declared with construct in headers.py; a valid file is read with their
struct forms (headers_packed.py), so loading a guest does not import construct. A file
they refuse is parsed again with the declaration, which says what is wrong.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..devices.packedform import PackedError, check_moved
from ..errors import E2kcharError
from .headers_packed import ELF64_HEADER, ELF64_PHDR

EM_RISCV = 243
PT_LOAD = 1
PF_X = 1


def __getattr__(name: str) -> Any:
    check_moved(__name__, name, ("ElfIdent", "Elf64Header", "Elf64Phdr"))  # the declarations' old names here
    from . import headers

    return getattr(headers, name)


class ElfError(E2kcharError, ValueError):
    """The file is not a loadable RV64 ELF for this machine."""


class Segment(NamedTuple):
    addr: int
    data: bytes
    memsz: int
    executable: bool


class ElfImage(NamedTuple):
    """What parse_elf found (NamedTuples: value records, see docs/architecture.md)."""

    entry: int
    segments: list[Segment]


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def parse_elf(data: bytes, *, name: str = "image") -> ElfImage:
    """Parse the PT_LOAD segments (physical addresses) of an RV64 little-endian ELF."""
    try:
        hdr = ELF64_HEADER.parse(data)
    except PackedError:  # too short, or not ELF's magic: construct's words for what is wrong
        from construct import ConstructError

        from .headers import Elf64Header
        try:
            Elf64Header.parse(data)
        except ConstructError as exc:
            raise ElfError(f"{name}: not a valid ELF file ({exc})") from None
        raise  # the struct form disagrees with its declaration: tests/test_packed.py
    if hdr["ident.ei_class"] != 2 or hdr["ident.ei_data"] != 1:
        raise ElfError(f"{name}: not a 64-bit little-endian ELF (class {hdr['ident.ei_class']}, "
                       f"data {hdr['ident.ei_data']}); the machine's CPU is RV64")
    if hdr["e_machine"] != EM_RISCV:
        raise ElfError(f"{name}: ELF machine {hdr['e_machine']} is not RISC-V ({EM_RISCV}); "
                       "build the driver with tools/build_firmware.py")
    phentsize, phoff = hdr["e_phentsize"], hdr["e_phoff"]
    if phentsize != ELF64_PHDR.size:
        raise ElfError(f"{name}: bad program header size {phentsize}")
    end = phoff + hdr["e_phnum"] * phentsize
    if end > len(data):
        raise ElfError(f"{name}: program headers run past the end of the file")
    image = ElfImage(entry=hdr["e_entry"], segments=[])
    for at in range(phoff, end, phentsize):
        p_type, p_flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _align = \
            ELF64_PHDR.struct.unpack_from(data, at)
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz or p_offset + p_filesz > len(data):
            raise ElfError(f"{name}: PT_LOAD segment at {p_paddr:#x} has a bad size/offset")
        image.segments.append(Segment(
            addr=p_paddr, data=bytes(data[p_offset:p_offset + p_filesz]),
            memsz=p_memsz, executable=bool(p_flags & PF_X)))
    if not image.segments:
        raise ElfError(f"{name}: no PT_LOAD segments")
    return image
