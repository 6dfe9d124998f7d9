"""The E2K machine map (docs/interfaces.md) and the boot_info block, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from construct import Const, Int16ul, Int32ul, Int64ul, PaddedString, Padding, Struct

RAM_BASE = 0x8000_0000
DEFAULT_RAM_SIZE = 128 << 20
#: -kernel goes to RAM base + 2 MiB (where fw_jump jumps)
KERNEL_OFFSET = 2 << 20
PCI_MEM_BASE = 0x4000_0000
PCI_MEM_SIZE = 1 << 30
AM85C30_BAR1 = 0x4000_0000
AM85C30_BAR_SIZE = 0x1000
IO_BASE = 0x1_0100_0000
IO_SIZE = 0x1_0000
COM1_PORT = 0x3F8
LMS_PORT = 0x300
VIRTIO_BASE = 0x1_0200_0000
VIRTIO_SLOT_SIZE = 0x1000
VIRTIO_SLOTS = 8
EXIT_BASE = 0x1_1000_0000
EXIT_SIZE = 0x1000
TIMER_BASE = 0x1_1001_0000
TIMER_SIZE = 0x1_0000
TIMEBASE_HZ = 10_000_000
INTC_BASE = 0x1_2000_0000
INTC_SIZE = 64 << 20
ECAM_BASE = 0x2_0000_0000
ECAM_SIZE = 256 << 20

BOOT_INFO_OFFSET_FROM_END = 0x1000
FDT_OFFSET_FROM_END = 0x20_0000
FDT_MAX_SIZE = FDT_OFFSET_FROM_END - BOOT_INFO_OFFSET_FROM_END

IRQ_AM85C30 = 3
IRQ_COM1 = 4
IRQ_VIRTIO0 = 16
PLIC_SOURCES = 64
PLIC_CONTEXTS = 2

EXIT_PASS = 0x5555
EXIT_FAIL = 0x3333
EXIT_RESET = 0x7777

AM85C30_PCI_VENDOR = 0x1FFF
AM85C30_PCI_DEVICE = 0x8019
AM85C30_PCI_DEVFN = (2, 2)  # 00:02.2
#: 00:02.0, the IOHub's I2C/SPI + reset controller: configuration header only, there so that
#: an enumerator that stops at a missing function 0 finds 00:02.2 (docs/interfaces.md)
IOHUB_I2C_SPI_PCI_DEVICE = 0x8018
IOHUB_I2C_SPI_PCI_DEVFN = (2, 0)

CMDLINE_SIZE = 256

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
BOOT_INFO_SIZE = BootInfo.sizeof()


@dataclass(frozen=True)
class RamLayout:
    """Where the machine puts its boot blocks in a RAM of a given size."""

    ram_size: int

    @property
    def ram_end(self) -> int:
        return RAM_BASE + self.ram_size

    @property
    def boot_info_addr(self) -> int:
        return self.ram_end - BOOT_INFO_OFFSET_FROM_END

    @property
    def fdt_addr(self) -> int:
        return self.ram_end - FDT_OFFSET_FROM_END


def build_boot_info(ram_size: int, cmdline: str = "") -> bytes:
    """The boot_info block; the command line must fit with its NUL (clear error otherwise)."""
    raw = cmdline.encode("utf8")
    if len(raw) >= CMDLINE_SIZE:
        raise ValueError(f"-append command line is {len(raw)} bytes; at most "
                         f"{CMDLINE_SIZE - 1} fit in boot_info")
    return bytes(BootInfo.build(dict(
        version=1, ram_size=ram_size, serial_base=AM85C30_BAR1, io_base=IO_BASE,
        virtio_base=VIRTIO_BASE, virtio_slots=VIRTIO_SLOTS, intc_base=INTC_BASE,
        exit_base=EXIT_BASE, timer_base=TIMER_BASE, ram_base=RAM_BASE, cmdline=cmdline)))
