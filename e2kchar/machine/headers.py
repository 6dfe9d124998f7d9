"""The machine's binary layouts, declared once with construct: the ELF64 file and program
headers, boot_info (docs/interfaces.md), the device tree header and the PCI type-0 header.

Nothing imports this module on the way to the first guest byte: the loader and the board
use the `struct` forms tools/gen_packed.py derives from these declarations into
e2kchar/machine/headers_packed.py (checked by tests/test_packed.py). The constants the
declarations use are declared here too and reach the machine through that module.
"""

from __future__ import annotations

from construct import (
    Bytes,
    Const,
    Int8ul,
    Int16ul,
    Int32ub,
    Int32ul,
    Int64ul,
    PaddedString,
    Padding,
    Struct,
)

#: boot_info's command line field, with its NUL
CMDLINE_SIZE = 256
FDT_MAGIC = 0xD00DFEED

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

#: boot_info (little-endian), exactly the table in docs/interfaces.md
BootInfo = Struct(
    "signature" / Const(0x8086, Int16ul),
    "version" / Int16ul,
    Padding(4),
    "ram_size" / Int64ul,
    "serial_base" / Int64ul,
    "io_base" / Int64ul,
    "virtio_base" / Int64ul,
    "virtio_slots" / Int32ul,
    Padding(4),
    "intc_base" / Int64ul,
    "exit_base" / Int64ul,
    "timer_base" / Int64ul,
    "ram_base" / Int64ul,
    "cmdline" / PaddedString(CMDLINE_SIZE, "utf8"),
)

FdtHeader = Struct(
    "magic" / Const(FDT_MAGIC, Int32ub),
    "totalsize" / Int32ub,
    "off_dt_struct" / Int32ub,
    "off_dt_strings" / Int32ub,
    "off_mem_rsvmap" / Int32ub,
    "version" / Int32ub,
    "last_comp_version" / Int32ub,
    "boot_cpuid_phys" / Int32ub,
    "size_dt_strings" / Int32ub,
    "size_dt_struct" / Int32ub,
)

#: the type-0 header fields the machine sets (the rest of the 4 KiB reads 0)
Type0Header = Struct(
    "vendor_id" / Int16ul, "device_id" / Int16ul, "command" / Int16ul, "status" / Int16ul,
    "revision" / Int8ul, "prog_if" / Int8ul, "subclass" / Int8ul, "class_code" / Int8ul,
    "cache_line" / Int8ul, "latency" / Int8ul, "header_type" / Int8ul, "bist" / Int8ul,
    "bars" / Int32ul[6], "cardbus_cis" / Int32ul, "subsys_vendor" / Int16ul,
    "subsys_id" / Int16ul, "rom_base" / Int32ul, "cap_ptr" / Int8ul, "reserved" / Int8ul[7],
    "int_line" / Int8ul, "int_pin" / Int8ul, "min_gnt" / Int8ul, "max_lat" / Int8ul,
)

#: declaration name -> name of its struct form in e2kchar/machine/headers_packed.py
PACKED = {"Elf64Header": "ELF64_HEADER", "Elf64Phdr": "ELF64_PHDR", "BootInfo": "BOOT_INFO",
          "FdtHeader": "FDT_HEADER", "Type0Header": "PCI_TYPE0"}
#: constants the generated module carries for the machine
CONSTANTS = ("CMDLINE_SIZE", "FDT_MAGIC")
